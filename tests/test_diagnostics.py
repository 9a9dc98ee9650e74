import json

import numpy as np
import pytest
import torch

from rpl.__main__ import main
from rpl.data.base import Sample
from rpl.report.diagnostics import (
    HEADS,
    WATCHED,
    head_table,
    recipe_table,
    region_majorities,
    upper_bounds,
    winning_regions,
)
from rpl.proposals import RegionSet
from rpl.runs import evaluate


class _Data:
    """A data set of given samples, with a proposal cache that hands out given regions."""

    def __init__(self, samples, regions, classes=("a", "b")):
        self.samples, self.regions = samples, regions
        self.names = [s.name for s in samples]
        self.classes, self.num_classes = list(classes), len(classes)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]

    def get(self, name, color_space="rgb"):
        return self.regions[self.names.index(name)]


def mixed_superpixel():
    """Superpixel A: 6 px of class 1 and 4 of class 2; superpixel B: 10 px of class 2;
    regions A, B and A + B (majority 2)."""
    cells = np.array([[0] * 10, [1] * 10])
    label = np.array([[1] * 6 + [2] * 4, [2] * 10])
    regions = RegionSet.from_cells(cells, [np.array([0]), np.array([1]), np.array([0, 1])])
    image = np.zeros((2, 10, 3), np.uint8)
    return _Data([Sample(image=image, label=label, name="x")], [regions]), regions, label


def test_region_majorities_ignore_void():
    data, regions, label = mixed_superpixel()
    np.testing.assert_array_equal(region_majorities(regions, label, 2), [1, 2, 2])
    label = label.copy()
    label[0] = 0
    np.testing.assert_array_equal(region_majorities(regions, label, 2), [0, 2, 2])


def test_upper_bounds_by_hand():
    data, _, _ = mixed_superpixel()
    bounds = upper_bounds(data, data, progress=False)
    sup, best = bounds["superpixels"], bounds["proposals"]
    # superpixel A takes class 1: its 4 class-2 pixels are wrong
    assert sup["per_class_accuracy"] == {"a": 1.0, "b": 10 / 14} and sup["global_accuracy"] == 16 / 20
    # A + B has majority 2 and contains those pixels: every pixel reachable
    assert best["global_accuracy"] == 1.0


def test_winning_regions_match_a_brute_force_reading_of_eq3(real_siftflow):
    """Per class, the accuracy and how often a ground-truth region wins the true class, from
    dense masks and plain maxima over the regions containing each pixel."""
    from rpl.data import SiftFlow
    from rpl.proposals import selective_search
    from rpl.runs import PRESETS, build_model, prepare

    cfg = PRESETS["quick"]
    dataset = SiftFlow("train", real_siftflow.parent)
    dataset.names = dataset.names[:2]
    proposals = [selective_search(dataset[i].image) for i in range(2)]
    data = _Data([dataset[i] for i in range(2)], proposals, dataset.classes)
    torch.manual_seed(0)
    model = build_model(cfg, dataset.num_classes, pretrained=False).eval()
    got = winning_regions(model, cfg, data, data, progress=False)
    total, right, truth_gt = (np.zeros(dataset.num_classes + 1) for _ in range(3))
    for i in range(2):
        image, label, regions = prepare(data[i], proposals[i], cfg, False, training=True)
        with torch.no_grad():
            features = model.features(image)
            scores = model.region_scores(features, model.region_batch(regions, features.shape[-2:])).numpy()
        masks = regions.masks()
        for y, x in zip(*np.nonzero(label > 0)):
            inside = np.flatnonzero(masks[:, y, x])
            pixel = scores[inside].max(0)
            c = label[y, x]
            total[c] += 1
            right[c] += pixel.argmax() + 1 == c
            truth_gt[c] += regions.is_ground_truth[inside[scores[inside, c - 1].argmax()]]
    assert sum(v["pixels"] for v in got.values()) == total.sum()
    for k, name in enumerate(dataset.classes, 1):
        if total[k]:
            assert got[name]["accuracy"] == pytest.approx(right[k] / total[k])
            assert got[name]["truth_won_by_ground_truth"] == pytest.approx(truth_gt[k] / total[k])
        else:
            assert name not in got


def test_diagnose_cli(env, capsys):
    assert (
        main(
            [
                "train",
                "--preset",
                "quick",
                "--set",
                "train_images=3",
                "--set",
                "test_images=2",
                "--out",
                str(env / "run"),
            ]
        )
        == 0
    )
    out = env / "diagnosis.json"
    assert main(["diagnose", str(env / "run"), "--train-images", "2", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["train"]["images"] == 2 and payload["train"]["split"] == "train"
    assert payload["test_with_ground_truth_regions"]["ground_truth_regions"] is True
    assert payload["git_commit"] and payload["winning_regions_train"]
    assert "test_with_ground_truth_regions: global" in capsys.readouterr().out
    assert main(["diagnose"]) == 2


def test_learning_curve_evaluates_every_kept_epoch(env, capsys):
    run = env / "run"
    assert (
        main(
            [
                "train",
                "--preset",
                "quick",
                "--set",
                "epochs=2",
                "--set",
                "train_images=3",
                "--set",
                "test_images=2",
                "--keep-epochs",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch001.pt", "epoch002.pt"]
    out = env / "curve.json"
    assert main(["diagnose", str(run), "--curve", "--train-images", "2", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert [e["epoch"] for e in payload["epochs"]] == [1, 2] and payload["git_commit"]
    assert payload["missing_epochs"] == []
    last = evaluate(run, progress=False)  # the last kept epoch is the run's checkpoint
    assert payload["epochs"][-1]["test"]["class_accuracy"] == last["all"]["class_accuracy"]
    assert payload["epochs"][-1]["test"]["pole"] == last["all"]["per_class_accuracy"].get("pole")
    assert "epoch   2: test class" in capsys.readouterr().out
    first = evaluate(run, progress=False, checkpoint=run / "epochs" / "epoch001.pt")
    assert payload["epochs"][0]["test"]["global_accuracy"] == first["all"]["global_accuracy"]
    assert first["config"] == last["config"]
    # a run without kept epochs says how to get them
    assert main(["train", "--preset", "quick", "--set", "train_images=3", "--out", str(env / "plain")]) == 0
    assert main(["diagnose", str(env / "plain"), "--curve"]) == 1
    assert "--keep-epochs" in capsys.readouterr().err
    assert main(["diagnose", "--bounds", "--curve"]) == 2


def test_diagnose_an_fcn_measures_the_fit_only(env):
    assert (
        main(
            [
                "train",
                "--preset",
                "quick",
                "--set",
                "model=fcn",
                "--set",
                "train_images=3",
                "--set",
                "test_images=2",
                "--out",
                str(env / "fcn"),
            ]
        )
        == 0
    )
    out = env / "diagnosis.json"
    assert main(["diagnose", str(env / "fcn"), "--train-images", "2", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["train"]["images"] == 2
    assert "test_with_ground_truth_regions" not in payload and "winning_regions_train" not in payload


def _result(preset, epochs, accuracy):
    per_class = {c: accuracy for c in WATCHED}
    part = {"class_accuracy": accuracy, "global_accuracy": 0.7, "per_class_accuracy": per_class}
    return {"config": {"preset": preset, "epochs": epochs}, "all": part, "boundary": {"class_accuracy": 0.4}}


def test_recipe_table_reads_results_and_diagnostics(tmp_path):
    (tmp_path / "e2s2_cpu.json").write_text(json.dumps(_result("cpu", 5, 0.5)))
    (tmp_path / "fcn_cpu.json").write_text(json.dumps(_result("cpu", 5, 0.6)))
    (tmp_path / "recipe3_bins.json").write_text(json.dumps(_result("ablation", 10, 0.25)))
    (tmp_path / "diagnostics_fcn_cpu.json").write_text(json.dumps({"train": {"all": {"class_accuracy": 0.8}}}))
    (tmp_path / "diagnostics_recipe3_bins.json").write_text(
        json.dumps(
            {
                "train": {"all": {"class_accuracy": 0.3}},
                "test_with_ground_truth_regions": {"all": {"class_accuracy": 0.35}},
            }
        )
    )
    table = recipe_table(tmp_path)
    assert list(table.index) == ["e2s2_cpu", "fcn_cpu", "recipe3_bins"]  # references, then the chain; no file no row
    assert table.loc["fcn_cpu", "class"] == 60.0 and table.loc["fcn_cpu", "train class"] == 80.0
    assert np.isnan(table.loc["fcn_cpu", "test + GT regions class"]) and np.isnan(table.loc["e2s2_cpu", "train class"])
    assert table.loc["recipe3_bins", "test + GT regions class"] == 35.0
    assert (table.loc["recipe3_bins", "preset"], table.loc["recipe3_bins", "epochs"]) == ("ablation", 10)
    assert table.loc["recipe3_bins", WATCHED[0]] == 25.0


def test_the_head_table_puts_each_model_on_its_three_backbones_with_seed_means(tmp_path):
    """head_table: one row per HEADS entry; frozen ImageNet, the FCN's tuned backbone frozen, and
    fine-tuned, means over seeds; "–" seeds and NaN where a run is missing or not defined."""

    def result(name, class_accuracy, boundary):
        payload = {
            "all": {"class_accuracy": class_accuracy, "global_accuracy": 0.7},
            "boundary": {"class_accuracy": boundary, "global_accuracy": 0.6},
            "config": {"preset": "cpu"},
        }
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))

    result("frozen_fcn", 0.50, 0.40)
    result("transfer_fcn", 0.58, 0.45)
    result("fcn_cpu", 0.60, 0.50)
    result("fcn_cpu_seed1", 0.70, 0.60)
    result("frozen_linear-1x1", 0.52, 0.42)
    table = head_table(tmp_path).set_index("after the backbone")
    assert list(table.index) == [what for what, *_ in HEADS]
    fcn = table.loc[HEADS[0][0]]
    assert fcn["ImageNet, frozen: class"] == pytest.approx(50)
    assert fcn["the fine-tuned FCN's, frozen: boundary class"] == pytest.approx(45)
    assert fcn["fine-tuned: class"] == pytest.approx(65) and fcn["fine-tuned: boundary class"] == pytest.approx(55)
    assert fcn["seeds (frozen / transfer / tuned)"] == "1 / 1 / 2" and fcn[
        "fine-tuning gives (class)"
    ] == pytest.approx(15)
    no_skip = table.loc[HEADS[1][0]]  # no transfer run defined, none run
    assert no_skip["seeds (frozen / transfer / tuned)"] == "– / – / –" and np.isnan(no_skip["fine-tuned: class"])
    linear = table.loc[next(what for what, frozen, *_ in HEADS if frozen == "frozen_linear-1x1")]
    assert (
        linear["ImageNet, frozen: class"] == pytest.approx(52)
        and linear["seeds (frozen / transfer / tuned)"] == "1 / – / –"
    )
