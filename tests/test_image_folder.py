import numpy as np
import pytest
from PIL import Image

from rpl.data import ImageFolder
from rpl.data.base import read_image


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


def test_wide_greyscale_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit PNG read as 8-bit RGB: values divided by 257 (it used to come out almost white)."""
    values = np.linspace(0, 65535, 64 * 48).reshape(48, 64)
    path = tmp_path / "wide.png"
    Image.fromarray(values.astype(np.uint16)).save(path)
    assert Image.open(path).mode == "I;16"
    rgb = read_image(path)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[..., 0], np.round(values.astype(np.uint16) / 257).astype(np.uint8))
    assert abs(rgb.mean() - 127.5) < 1
    wide = tmp_path / "wide.tiff"  # 32-bit integers: 16-bit values scaled, 8-bit ones kept
    Image.fromarray(values.astype(np.int32)).save(wide)
    np.testing.assert_array_equal(read_image(wide), rgb)
    small = tmp_path / "small.tiff"
    Image.fromarray(np.full((4, 4), 200, np.int32)).save(small)
    assert (read_image(small) == 200).all()
    tiff = tmp_path / "float.tiff"
    Image.fromarray(np.zeros((4, 4), np.float32)).save(tiff)
    with pytest.raises(ValueError, match="floating-point image"):
        read_image(tiff)


def test_ambiguous_images_and_a_string_of_classes_are_refused(tmp_path):
    images, labels = make(tmp_path, 2)
    with pytest.raises(TypeError, match="list of names, got the string 'road'"):
        ImageFolder(images, labels, classes="road")
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(images / "im0.jpg")  # beside im0.PNG
    with pytest.raises(ValueError, match="share the name 'im0'"):
        ImageFolder(images, labels, classes=["a", "b"])


def test_a_void_value_is_read_as_void(tmp_path):
    """Without a folder's dataset.json: ``void=``; refused where it is a class's value."""
    images, labels = make(tmp_path, 3)
    with pytest.raises(
        ValueError, match=r"im2\.png holds values \[2\] outside 0\.\.1 .*; if 2 marks unlabelled pixels, pass void=2$"
    ):
        ImageFolder(images, labels, ["a"])[2]
    assert ImageFolder(images, labels, ["a"], void=2)[2].label.tolist() == np.zeros((5, 6)).tolist()
    assert ImageFolder(images, labels, ["a"], void=np.uint8(2))[1].label.tolist() == np.ones((5, 6)).tolist()
    with pytest.raises(ValueError, match="^void: 1 is the label value of class 1, 'a'; void must be 0 or above 1$"):
        ImageFolder(images, labels, ["a"], void=1)
