import numpy as np
import pytest
import scipy.io
from PIL import Image

from rpl.data import PASCAL_CONTEXT_CLASSES, PascalContext
from rpl.data.pascal_context import read_class_list


def write_official_tree(root, full_classes, label_maps, splits):
    """PASCAL Context in the official form: VOC2010 images and split lists, trainval/*.mat."""
    base = root / "pascal-context"
    voc = base / "VOCdevkit" / "VOC2010"
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    (base / "trainval").mkdir()
    (base / "labels.txt").write_text("".join(f"{i}: {n}\n" for i, n in enumerate(full_classes, 1)))
    for name, label_map in label_maps.items():
        h, w = label_map.shape
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(voc / "JPEGImages" / f"{name}.jpg")
        scipy.io.savemat(base / "trainval" / f"{name}.mat", {"LabelMap": label_map.astype(np.uint16)})
    for split, ids in splits.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return base


FULL = ["accordion", "aeroplane", "wool", "sky", "table", "bedclothes", "cloth"] + [
    n for n in PASCAL_CONTEXT_CLASSES if n not in ("aeroplane", "sky", "table", "bedclothes", "cloth")
]


def test_official_mat_form_maps_459_to_59_by_name(tmp_path):
    full_map = np.array([[1, 2, 3], [4, 5, 0], [6, 7, 2]])  # accordion aeroplane wool / sky table 0 / ...
    write_official_tree(tmp_path, FULL, {"2008_000001": full_map}, {"train": ["2008_000001"], "val": []})
    ds = PascalContext("train", tmp_path)
    label = ds[0].label
    k = PASCAL_CONTEXT_CLASSES.index
    expected = [
        [0, k("aeroplane") + 1, 0],
        [k("sky") + 1, k("table") + 1, 0],
        [k("bedclothes") + 1, k("cloth") + 1, k("aeroplane") + 1],
    ]
    np.testing.assert_array_equal(label, expected)
    assert ds.num_classes == 59 and len(PascalContext("val", tmp_path)) == 0


def test_official_form_rejects_out_of_range_labelmap(tmp_path):
    write_official_tree(tmp_path, FULL, {"a": np.array([[len(FULL) + 1]])}, {"train": ["a"]})
    with pytest.raises(ValueError, match=r"a\.mat .*LabelMap values outside 0\.\.%d" % len(FULL)):
        PascalContext("train", tmp_path)[0]


def test_official_form_missing_class_in_list(tmp_path):
    write_official_tree(tmp_path, ["accordion", "aeroplane"], {"a": np.ones((2, 2))}, {"train": ["a"]})
    with pytest.raises(ValueError, match="labels.txt lacks the PASCAL Context class 'bicycle'"):
        PascalContext("train", tmp_path)


def test_class_list_parsing_errors(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("1: a\n3: b\n")
    with pytest.raises(ValueError, match=r"labels\.txt:2: expected '2: <name>'"):
        read_class_list(path)


def test_missing_images_raise_unless_allowed(tmp_path):
    write_official_tree(tmp_path, FULL, {"a": np.ones((2, 2))}, {"val": ["a", "b"]})
    with pytest.raises(FileNotFoundError, match=r"1 of the 2 ids in .*val\.txt have no image .*b\.jpg"):
        PascalContext("val", tmp_path)
    with pytest.warns(UserWarning, match="using the 1 present"):
        assert PascalContext("val", tmp_path, allow_missing=True).names == ["a"]


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"PASCAL Context not found: .*pascal-context"):
        PascalContext("val", tmp_path)


def test_real_png_sample(real_pascal_context):
    with pytest.warns(UserWarning, match="have no image"):
        ds = PascalContext("val", real_pascal_context.parent, allow_missing=True)
    assert len(ds) == 50 and ds.classes == PASCAL_CONTEXT_CLASSES
    assert read_class_list(real_pascal_context / "59_labels.txt") == PASCAL_CONTEXT_CLASSES
    s = ds[0]
    assert s.name == "2008_000002" and s.image.shape[:2] == s.label.shape
    assert s.label.max() <= 59
    counts = ds.class_pixel_counts()
    assert (counts > 0).sum() == 52  # PROVENANCE counts 52 label values: 51 classes + background
    assert 0.05 < counts[0] / counts.sum() < 0.08  # background is 6.6% of pixels
