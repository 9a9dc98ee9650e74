"""The region explorer: winners and runner-ups against a brute-force reading of Eq. 3."""

import numpy as np
import pytest
import torch

from rpl.data import SiftFlow
from rpl.report.explorer import Explanation, region_explorer
from rpl.models import E2S2, ModelConfig, mobilenet_v2
from rpl.proposals import ProposalCache


@pytest.fixture(scope="module")
def case(real_siftflow, tmp_path_factory):
    torch.manual_seed(0)
    model = E2S2(mobilenet_v2(None), 33, ModelConfig(neck=16, head=32)).eval()
    test = SiftFlow("test", real_siftflow.parent)
    sample = test[7]
    regions = ProposalCache(test, root=tmp_path_factory.mktemp("cache")).get(sample.name, "rgb")
    return model, test, sample, regions


def test_winner_and_runner_ups_are_the_best_regions_holding_the_pixel(case):
    model, test, sample, regions = case
    exp = Explanation.compute(model, sample.image, regions, test.classes)
    masks = regions.masks()
    for row, col in [(0, 0), (128, 128), (255, 17), (40, 200)]:
        for label in (None, "sky", 5):
            info = exp.at(row, col, label, runner_ups=3)
            c = info["label"]
            holding = np.flatnonzero(masks[:, row, col])
            scores = exp.scores[holding, c - 1]
            assert info["regions_containing"] == len(holding)
            assert info["winner"] == holding[np.argmax(scores)]  # ties: lowest index, like the layer
            assert info["score"] == pytest.approx(scores.max())
            ranked = sorted(scores, reverse=True)
            assert [s for _, s in info["runner_ups"]] == pytest.approx(ranked[1:4])
            assert info["predicted"] == exp.prediction[row, col]
            assert info["predicted"] == np.argmax(exp.atom_scores[info["atom"]]) + 1
    assert exp.prediction.shape == sample.label.shape and not exp.probabilities


def test_bad_pixel_and_class_are_named(case):
    model, test, sample, regions = case
    exp = Explanation.compute(model, sample.image, regions, test.classes)
    with pytest.raises(ValueError, match=r"pixel \(256, 0\) is outside the 256x256 image"):
        exp.at(256, 0)
    with pytest.raises(ValueError, match="'unicorn' is not one of the classes"):
        exp.at(0, 0, "unicorn")
    with pytest.raises(ValueError, match="regions cover"):
        Explanation.compute(model, sample.image[:100], regions, test.classes)


def test_explorer_widget_redraws_for_every_control(case, capsys):
    model, test, sample, regions = case
    box = region_explorer(model, {sample.name: sample}, lambda name: regions, test.classes)
    (_, label), (row, col) = box.children[0].children, box.children[1].children
    capsys.readouterr()
    row.value, col.value, label.value = 10, 250, 3  # outside a kernel the Output widget prints
    lines = capsys.readouterr().out.splitlines()
    info = Explanation.compute(model, sample.image, regions, test.classes).at(10, 250, 3)
    assert [line for line in lines if line.startswith("pixel")][-1].endswith(
        f"{test.classes[2]}: region {info['winner']} wins with {info['score']:.3f} among "
        f"{int(regions.masks()[:, 10, 250].sum())} regions"
    )
    label.value = 0  # back to the predicted class: the control keeps a label (ipywidgets blanks None)
    assert label.label == "predicted"
    line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("pixel")][-1]
    assert f"final label {info['predicted_name']}; {info['predicted_name']}: region" in line


def test_a_click_on_the_image_picks_the_pixel(case):
    """With an interactive backend (ipympl) a click on a panel moves the sliders to that pixel;
    here the click is sent to the figure's canvas as matplotlib would."""
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import MouseEvent

    model, test, sample, regions = case
    plt.close("all")
    box = region_explorer(model, {sample.name: sample}, lambda name: regions, test.classes)
    row, col = box.children[1].children
    (fig,) = map(plt.figure, plt.get_fignums())  # the figure on display
    x, y = fig.axes[-1].transData.transform((200.2, 30.4))  # column 200, row 30 of the final-label panel
    fig.canvas.callbacks.process("button_press_event", MouseEvent("button_press_event", fig.canvas, x, y, button=1))
    assert (row.value, col.value) == (30, 200)
    assert len(plt.get_fignums()) == 1  # each redraw closes the figure it replaces
