import numpy as np
import pytest
import scipy.io
from conftest import SIFTFLOW_SUBDIR, write_siftflow_tree
from PIL import Image

import rpl
from rpl.data import SIFTFLOW_CLASSES, SiftFlow

# --- the real data -----------------------------------------------------------------------


def test_real_split_sizes_and_classes(real_siftflow):
    root = real_siftflow.parent
    train, test = SiftFlow("train", root), SiftFlow("test", root)
    assert (len(train), len(test)) == (2488, 200)
    assert test.classes[:3] == ["awning", "balcony", "bird"]
    assert len(test.classes) == 33 and test.classes[-1] == "window"
    assert not set(train.names) & set(test.names)


def test_real_data_found_through_env(real_siftflow, monkeypatch):
    monkeypatch.setenv("RPL_DATA", str(real_siftflow.parent))
    assert len(rpl.data.SiftFlow("test")) == 200


def test_real_class_names_match_label_files(real_siftflow):
    ds = SiftFlow("test", real_siftflow.parent)
    mat = scipy.io.loadmat(ds.label_path(ds.names[0]))
    assert [str(n[0]) for n in mat["names"][0]] == SIFTFLOW_CLASSES


def test_real_samples(real_siftflow):
    ds = SiftFlow("test", real_siftflow.parent)
    for index in (0, 57, -1):
        s = ds[index]
        assert s.image.shape == (256, 256, 3) and s.image.dtype == np.uint8
        assert s.label.shape == (256, 256) and s.label.dtype == np.int64
        assert 0 <= s.label.min() and s.label.max() <= 33
        assert s.name == ds.names[index]
    # the test set has no cow (9), desert (11) or moon (16) pixels
    counts = ds.class_pixel_counts()
    absent = [ds.classes[k - 1] for k in range(1, 34) if counts[k] == 0]
    assert absent == ["cow", "desert", "moon"]


def test_real_fully_unlabelled_image(real_siftflow):
    ds = SiftFlow("train", real_siftflow.parent)
    assert ds.read_label("highway_bost181").max() == 0


# --- layout and errors on small trees written here -----------------------------------------


def test_small_tree(tmp_path):
    write_siftflow_tree(tmp_path)
    assert SiftFlow("train", tmp_path).names == ["coast_a", "forest_b"]
    assert SiftFlow("test", tmp_path).names == ["street_c"]


def test_greyscale_image_expanded(tmp_path):
    base = write_siftflow_tree(tmp_path)
    Image.fromarray(np.full((8, 8), 77, np.uint8)).save(base / "Images" / SIFTFLOW_SUBDIR / "coast_a.jpg")
    image = SiftFlow("train", tmp_path)[0].image
    assert image.shape == (8, 8, 3) and np.all(image[..., 0] == image[..., 2])


def test_missing_root_names_path_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("RPL_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError) as e:
        SiftFlow("test")
    msg = str(e.value)
    assert str(tmp_path / "nowhere" / "siftflow") in msg and "$RPL_DATA" in msg
    assert "python -m rpl fetch siftflow" in msg


def test_missing_label_file(tmp_path):
    base = write_siftflow_tree(tmp_path)
    (base / "SemanticLabels" / SIFTFLOW_SUBDIR / "forest_b.mat").unlink()
    ds = SiftFlow("train", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"label file missing .*forest_b\.jpg.*forest_b\.mat"):
        ds[1]


def test_unreadable_image(tmp_path):
    base = write_siftflow_tree(tmp_path)
    (base / "Images" / SIFTFLOW_SUBDIR / "coast_a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"cannot read image .*coast_a\.jpg"):
        SiftFlow("train", tmp_path)[0]


@pytest.mark.parametrize("bad", [34.0, -1.0, 2.5, np.nan])
def test_label_values_out_of_range(tmp_path, bad):
    base = write_siftflow_tree(tmp_path)
    path = base / "SemanticLabels" / SIFTFLOW_SUBDIR / "coast_a.mat"
    S = np.ones((8, 8))
    S[3, 4] = bad
    scipy.io.savemat(path, {"S": S})
    with pytest.raises(ValueError, match=r"coast_a\.mat"):
        SiftFlow("train", tmp_path)[0]


def test_label_shape_must_match_image(tmp_path):
    base = write_siftflow_tree(tmp_path)
    scipy.io.savemat(base / "SemanticLabels" / SIFTFLOW_SUBDIR / "coast_a.mat", {"S": np.ones((4, 8))})
    with pytest.raises(ValueError, match=r"coast_a\.mat is \(4, 8\), but its image is \(8, 8\)"):
        SiftFlow("train", tmp_path)[0]


def test_test_list_naming_missing_image(tmp_path):
    base = write_siftflow_tree(tmp_path)
    (base / "TestSet1.txt").write_text(f"{SIFTFLOW_SUBDIR}\\street_c.jpg\n{SIFTFLOW_SUBDIR}\\gone.jpg\n")
    with pytest.raises(FileNotFoundError, match=r"TestSet1\.txt:2 .*gone\.jpg"):
        SiftFlow("test", tmp_path)


def test_bad_split_and_index(tmp_path):
    write_siftflow_tree(tmp_path)
    with pytest.raises(ValueError, match="split"):
        SiftFlow("val", tmp_path)
    ds = SiftFlow("train", tmp_path)
    with pytest.raises(IndexError):
        ds[2]
    with pytest.raises(TypeError):
        ds["coast_a"]


def test_cli_check(tmp_path, capsys):
    from rpl.__main__ import main

    write_siftflow_tree(tmp_path)
    assert main(["check", "siftflow", "--root", str(tmp_path)]) == 0
    assert "siftflow: 2 train / 1 test images, 33 classes" in capsys.readouterr().out
    assert main(["check", "siftflow", "--root", str(tmp_path / "none")]) == 1
    assert "rpl check: SIFT Flow not found" in capsys.readouterr().err


def test_check_reads_every_label_file_and_lists_the_bad_ones(tmp_path, capsys):
    from rpl.__main__ import main

    names = ("coast_a", "forest_b", "coast_c", "forest_d", "coast_e", "forest_f")
    base = write_siftflow_tree(tmp_path, train=names)
    argv = ["check", "siftflow", "--root", str(tmp_path)]
    assert main(argv) == 0 and "every label file read and checked" in capsys.readouterr().out
    labels, images = base / "SemanticLabels" / SIFTFLOW_SUBDIR, base / "Images" / SIFTFLOW_SUBDIR
    (labels / "coast_a.mat").unlink()  # missing
    (labels / "forest_b.mat").write_bytes(b"")  # empty
    (labels / "coast_c.mat").write_bytes(np.random.default_rng(0).bytes(500))  # corrupt
    scipy.io.savemat(labels / "forest_d.mat", {"S": np.full((8, 8), 40.0)})  # classes out of range
    scipy.io.savemat(labels / "coast_e.mat", {"T": np.zeros((8, 8))})  # no label map
    (images / "forest_f.jpg").unlink()  # a training image gone: its label remains
    assert main(argv) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 7 and err[-1].startswith("rpl check: 6 bad files")
    for name, what in (
        ("coast_a", "label file missing"),
        ("forest_b", "cannot read label file"),
        ("coast_c", "cannot read label file"),
        ("forest_d", "outside 0..33"),
        ("coast_e", "no variable 'S'"),
        ("forest_f", "image file missing for label file"),
    ):
        assert any(name in line and what in line for line in err), (name, err)
