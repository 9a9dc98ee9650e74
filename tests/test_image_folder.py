import numpy as np
import pytest
from PIL import Image

from rpl.data import ImageFolder


def make(tmp_path, n=2, label_mode="L"):
    images, labels = tmp_path / "img", tmp_path / "lab"
    images.mkdir()
    labels.mkdir()
    for i in range(n):
        Image.fromarray(np.full((5, 6, 3), i, np.uint8)).save(images / f"im{i}.PNG")
        label = np.full((5, 6), i % 3, np.uint8)
        Image.fromarray(label).convert(label_mode).save(labels / f"im{i}.png")
    return images, labels


def test_reads_pairs(tmp_path):
    ds = ImageFolder(*make(tmp_path, 3), classes=["a", "b"])
    assert ds.names == ["im0", "im1", "im2"] and ds.num_classes == 2
    assert ds[2].label.tolist() == np.full((5, 6), 2).tolist() and ds[2].image.shape == (5, 6, 3)


def test_palette_png_keeps_indices(tmp_path):
    images, labels = make(tmp_path, 1)
    im = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(images / "im0.PNG")
    im.save(labels / "im0.png")
    assert ImageFolder(images, labels, ["a", "b"])[0].label.tolist() == [[0, 1], [2, 1]]


def test_errors_name_the_file(tmp_path):
    images, labels = make(tmp_path, 2)
    (labels / "im1.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"im1\.PNG: expected .*lab/im1\.png"):
        ImageFolder(images, labels, ["a", "b"])
    with pytest.raises(FileNotFoundError, match="labels_dir: .* is not a folder"):
        ImageFolder(images, tmp_path / "nope", ["a"])
    with pytest.raises(ValueError, match="duplicate"):
        ImageFolder(images, labels, ["a", "a"])


def test_label_out_of_range_and_rgb_label(tmp_path):
    images, labels = make(tmp_path, 3)
    with pytest.raises(ValueError, match=r"im2\.png holds values \[2\] outside 0\.\.1"):
        ImageFolder(images, labels, ["a"])[2]
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(labels / "im0.png")
    with pytest.raises(ValueError, match=r"im0\.png is a RGB image"):
        ImageFolder(images, labels, ["a", "b"])[0]
