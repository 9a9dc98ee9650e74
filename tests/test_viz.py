import numpy as np
import pytest

from rpl.data import SIFTFLOW_CLASSES
from rpl.report.viz import SIFTFLOW_PALETTE, colorize, legend, overlay, palette


def test_palettes_are_distinct():
    assert SIFTFLOW_PALETTE.shape == (len(SIFTFLOW_CLASSES) + 1, 3)
    for colours in (SIFTFLOW_PALETTE, palette(59), palette(255)):
        assert len({tuple(c) for c in colours}) == len(colours)
        assert tuple(colours[0]) == (0, 0, 0)
    assert palette(33) is SIFTFLOW_PALETTE


def test_colorize_and_overlay():
    label = np.array([[0, 28], [32, 6]])
    rgb = colorize(label)
    assert rgb.dtype == np.uint8 and tuple(rgb[0, 1]) == tuple(SIFTFLOW_PALETTE[28])
    image = np.full((2, 2, 3), 100, np.uint8)
    out = overlay(image, label, alpha=1.0)
    assert tuple(out[0, 0]) == (100, 100, 100)  # void: the image shows through
    assert tuple(out[1, 1]) == tuple(SIFTFLOW_PALETTE[6])
    with pytest.raises(ValueError, match=r"0\.\.33"):
        colorize(np.array([[34]]))
    with pytest.raises(ValueError, match="image is"):
        overlay(image, label[:1])


def test_legend_lists_present_classes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    leg = legend(ax, SIFTFLOW_CLASSES, labels=np.array([[0, 28, 28, 32]]))
    assert [t.get_text() for t in leg.get_texts()] == ["sky", "tree"]
    plt.close(fig)
