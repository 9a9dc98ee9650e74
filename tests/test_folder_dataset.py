"""Bring your own data: a data set folder (classes.txt, images/, labels/, optional split lists)
through the registry, the proposal cache and every command — check, proposals, train, and, in
a fresh process that has only the run folder, evaluate and predict."""

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rpl.__main__ import main
from rpl.data import ImageFolder, check_dataset, open_dataset
from rpl.proposals import ProposalCache, ProposalConfig

CLASSES = ["ground", "wall", "sky"]
SIZES = {"a": (48, 64), "b": (64, 40), "c": (48, 64), "d": (64, 40), "e": (48, 64), "f": (64, 40)}


def write_folder(root: Path, names=SIZES, splits=True) -> Path:
    """Images of two sizes, each a sky band over a wall over the ground, labelled likewise."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    for name in names:
        h, w = SIZES.get(name, (48, 64))
        label = np.ones((h, w), np.uint8)
        label[: h // 3], label[2 * h // 3 :] = 3, 1
        label[h // 3 : 2 * h // 3] = 2
        colours = np.array([[0, 0, 0], [90, 60, 30], [180, 180, 170], [90, 150, 230]], np.uint8)
        image = np.clip(colours[label] + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{name}.png")
        Image.fromarray(label).save(root / "labels" / f"{name}.png")
    if splits:
        (root / "train.txt").write_text("a\nb\nc\nd\n")
        (root / "test.txt").write_text("e\nf\n")
    return root


def train_args(root: Path, run: Path, cache: Path, *settings: str) -> list[str]:
    """``python -m rpl train`` on the quick preset and a data set folder, with ``--set`` pairs."""
    sets = [a for s in settings for a in ("--set", s)]
    return ["train", "--preset", "quick", "--dataset", str(root), *sets, "--out", str(run), "--cache", str(cache)]


def test_a_folder_reads_its_classes_splits_and_proposal_settings(tmp_path):
    root = write_folder(tmp_path / "scenes")
    (root / "proposals.json").write_text(json.dumps({"k": 50, "min_region_size": 20}))
    train, test = ImageFolder.from_dir(root, "train"), ImageFolder.from_dir(root, "test")
    assert (train.names, test.names, train.classes) == (["a", "b", "c", "d"], ["e", "f"], CLASSES)
    assert ImageFolder.from_dir(root).names == sorted(SIZES) and train.split == "train"
    assert ProposalConfig.of(train) == ProposalConfig(k=50, min_region_size=20)
    assert open_dataset(str(root), "test").names == ["e", "f"] and check_dataset(str(root)) == str(root.resolve())
    (root / "test.txt").unlink()  # the test split is what train.txt leaves
    assert ImageFolder.from_dir(root, "test").names == ["e", "f"]
    (root / "train.txt").unlink()  # no lists: a fifth of the names by their SHA-1, the same everywhere
    assert [n for n in sorted(SIZES) if int(hashlib.sha1(n.encode()).hexdigest(), 16) % 5 == 0] == ["b"]
    assert ImageFolder.from_dir(root, "test").names == ["b"]
    assert ImageFolder.from_dir(root, "train").names == ["a", "c", "d", "e", "f"]


def test_bad_folders_are_named(tmp_path):
    root = write_folder(tmp_path / "scenes")
    with pytest.raises(FileNotFoundError, match=r"is not a data set folder: expected .*classes\.txt"):
        ImageFolder.from_dir(tmp_path)
    with pytest.raises(ValueError, match="or a data set folder"):
        check_dataset("nowhere")
    with pytest.raises(FileNotFoundError, match=r"nowhere is not a data set folder: expected .*classes\.txt"):
        open_dataset(str(tmp_path / "nowhere"))  # a trained run may name a folder that is gone
    (root / "train.txt").write_text("a\nzzz\n")
    with pytest.raises(FileNotFoundError, match=r"train\.txt names 1 images not in .*images.*'zzz'"):
        ImageFolder.from_dir(root, "train")
    (root / "proposals.json").write_text('{"k": 50, "colour": 1}')
    with pytest.raises(ValueError, match=r"proposals\.json: expected an object with keys among"):
        ImageFolder.from_dir(root, "test")
    (root / "proposals.json").write_text('{"k": "400"}')
    with pytest.raises(ValueError, match=r"proposals\.json: k must be a non-negative number, got '400'"):
        ImageFolder.from_dir(root, "test")


def test_check_decodes_every_image_and_compares_its_size_with_its_label_map(tmp_path, capsys):
    """A truncated image (its header still opens), a file that is no image at all, and a label
    map of another size than its image: each one line naming the file, from `check` too."""
    root = write_folder(tmp_path / "scenes")
    assert ImageFolder.from_dir(root, "train").problems() == []
    png = (root / "images" / "a.png").read_bytes()
    (root / "images" / "a.png").write_bytes(png[: len(png) // 2])
    (root / "images" / "e.png").write_bytes(b"not an image")
    Image.fromarray(np.ones((48, 60), np.uint8)).save(root / "labels" / "c.png")  # its image is 64 wide
    found = ImageFolder.from_dir(root, "train").problems()
    assert len(found) == 2
    assert re.fullmatch(r"cannot read image .*images/a\.png: image file is truncated", found[0])
    assert re.fullmatch(
        r"label map .*labels/c\.png is 60x48 pixels, but its image .*images/c\.png is 64x48 \(width x height\): "
        r"expected the image's size",
        found[1],
    )
    assert main(["check", str(root)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and err[-1].startswith("rpl check: 3 bad files")
    for name, what in (("images/a.png", "truncated"), ("images/e.png", "cannot read image"), ("labels/c.png", "64x48")):
        assert any(name in line and what in line for line in err), (name, err)


def test_an_image_in_both_split_lists_is_refused_when_the_folder_opens(tmp_path, capsys):
    root = write_folder(tmp_path / "scenes")
    (root / "test.txt").write_text("e\nd\nf\na\n")
    for split in ("train", "test", "all"):
        with pytest.raises(ValueError, match=r"train\.txt and .*test\.txt both name 2 images, e\.g\. 'a', 'd'"):
            ImageFolder.from_dir(root, split)
    assert main(["check", str(root)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "both name 2 images, e.g. 'a', 'd'" in err


def test_dataset_json_declares_the_void_value(tmp_path):
    """255 marks unlabelled pixels: refused, with how to declare it, until dataset.json says so;
    then read as 0, the classes 1..C as they were, and the key (its caches) unchanged."""
    root = write_folder(tmp_path / "scenes")
    label = np.asarray(Image.open(root / "labels" / "a.png")).copy()
    label[:5] = 255
    Image.fromarray(label).save(root / "labels" / "a.png")
    hint = '; if 255 marks unlabelled pixels (PASCAL VOC, Cityscapes train ids), declare it: {"void": 255} in '
    with pytest.raises(ValueError) as e:
        ImageFolder.from_dir(root, "train")[0]
    assert re.fullmatch(r"label map .*a\.png holds values \[255\] outside 0\.\.3 .*", str(e.value))
    assert str(e.value).endswith(hint + str(root / "dataset.json"))
    assert any(p.endswith(hint + str(root / "dataset.json")) for p in ImageFolder.from_dir(root, "train").problems())
    key = ImageFolder.from_dir(root).key
    (root / "dataset.json").write_text(json.dumps({"void": 255}))
    train = ImageFolder.from_dir(root, "train")
    expected = label.astype(np.int64)
    expected[:5] = 0
    np.testing.assert_array_equal(train[0].label, expected)
    assert train.void == 255 and train.problems() == [] and train.key == key


@pytest.mark.parametrize(
    "text, error",
    [
        ('{"void": 2}', r"void: 2 is the label value of class 2, 'wall'; void must be 0 or above 3"),
        ('{"void": 256}', r"void: expected an integer label value in 0\.\.255, got 256"),
        ('{"void": "255"}', r"void: expected an integer label value in 0\.\.255, got '255'"),
        ('{"void": true}', r"void: expected an integer label value in 0\.\.255, got True"),
        ('{"ignore": 255}', r"expected an object with keys among \('void',\), got \{'ignore': 255\}"),
        ("void = 255", r"not JSON"),
    ],
)
def test_a_bad_dataset_json_is_named(tmp_path, text, error):
    root = write_folder(tmp_path / "scenes")
    (root / "dataset.json").write_text(text)
    with pytest.raises(ValueError, match=r"^" + re.escape(str(root / "dataset.json")) + ": " + error):
        ImageFolder.from_dir(root, "train")


def test_a_run_refuses_a_data_set_whose_classes_changed(tmp_path):
    from rpl.runs import PRESETS, evaluate, train

    root = write_folder(tmp_path / "scenes")
    cfg = PRESETS["quick"].with_overrides(["weights=none", f"dataset={root}", "train_images=2"])
    train(cfg, tmp_path / "run", cache_root=tmp_path / "cache", progress=False)
    (root / "classes.txt").write_text("ground\nwall\nsky\nsea\n")
    with pytest.raises(ValueError, match=r"trained on the classes \['ground', 'wall', 'sky'\], but its data set now"):
        evaluate(tmp_path / "run", cache_root=tmp_path / "cache", progress=False)


def test_train_takes_a_data_set_object(tmp_path):
    """A data set built in Python (no classes.txt, no split lists): trained on, evaluated on the
    images one passes, refused where the run's configuration would open another data set (before
    opening it: SIFT Flow is not under the data root here) and when resumed on other images."""
    from rpl.runs import PRESETS, evaluate, open_run, predict_image, train

    root = write_folder(tmp_path / "scenes", splits=False)
    (root / "classes.txt").unlink()
    scenes = ImageFolder(root / "images", root / "labels", CLASSES)
    cfg = PRESETS["quick"].with_overrides(["weights=none", "train_images=0"])
    summary = train(cfg, tmp_path / "run", cache_root=tmp_path / "cache", progress=False, dataset=scenes)
    assert summary["train_images"] == len(SIZES) and len(scenes.names) == len(SIZES)  # the object is not cut
    run = open_run(tmp_path / "run")
    assert run.classes == CLASSES and run.dataset_key == scenes.key and run.model.num_classes == 3
    common = dict(cache_root=tmp_path / "cache", progress=False)
    metrics = evaluate(tmp_path / "run", dataset=scenes, images=2, **common)
    assert metrics["images"] == 2 and metrics["all"]["pixels"] > 0 and not (tmp_path / "run" / "metrics.json").exists()
    with pytest.raises(ValueError, match=r"trained on the data set 'folder-scenes-.*', not on 'siftflow'"):
        evaluate(tmp_path / "run", data_root=tmp_path / "no-data", **common)  # the config names siftflow
    other = write_folder(tmp_path / "other", splits=False)
    with pytest.raises(ValueError, match=r"trained on the data set 'folder-scenes-.*', not on 'folder-other-.*'"):
        train(
            cfg,
            tmp_path / "run",
            resume=True,
            dataset=ImageFolder(other / "images", other / "labels", CLASSES),
            **common,
        )
    image = scenes[1].image[:, :37]  # any size: labels of the image's own
    for size in (None, 24):
        labels = predict_image(run, image, size=size)
        assert labels.shape == image.shape[:2] and 1 <= labels.min() and labels.max() <= len(CLASSES)
    with pytest.raises(ValueError, match=r"image must be uint8\[H, W, 3\] RGB, got float64\[5, 5\]"):
        predict_image(run, np.zeros((5, 5)))
    with pytest.raises(ValueError, match="size 0: give the longer side"):
        predict_image(run, image, size=0)


def test_two_folders_with_the_same_image_names_never_share_proposals(tmp_path):
    one, two = write_folder(tmp_path / "one"), write_folder(tmp_path / "two")
    caches = [ProposalCache(ImageFolder.from_dir(r, "train"), root=tmp_path / "cache") for r in (one, two)]
    assert caches[0].folder != caches[1].folder
    assert caches[0].folder == ProposalCache(ImageFolder.from_dir(one, "test"), root=tmp_path / "cache").folder


def test_every_command_works_on_a_folder_and_a_run_works_without_it(tmp_path, capsys):
    root, cache, run = write_folder(tmp_path / "scenes"), tmp_path / "cache", tmp_path / "run"
    assert main(["check", str(root)]) == 0
    assert "4 train / 2 test images, 3 classes" in capsys.readouterr().out
    assert (
        main(["proposals", "--dataset", str(root), "--workers", "1", "--color-spaces", "rgb", "--cache", str(cache)])
        == 0
    )
    assert "4 computed" in capsys.readouterr().out
    assert main(train_args(root, run, cache, "weights=none")) == 0
    moved = root.rename(tmp_path / "elsewhere")  # predict needs the run alone
    env = {**os.environ, "RPL_CACHE": str(cache), "PYTHONPATH": os.pathsep.join(sys.path)}
    image = moved / "images" / "b.png"
    done = subprocess.run(
        [sys.executable, "-m", "rpl", "predict", str(run), str(image), "-o", str(tmp_path / "b.png"), "--size", "32"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "classes found:" in done.stdout and any(c in done.stdout.split("classes found:")[1] for c in CLASSES)
    labels = np.asarray(Image.open(tmp_path / "b.png"))
    assert labels.shape == SIZES["b"] and labels.max() <= len(CLASSES)
    assert (tmp_path / "b_overlay.png").is_file()
    done = subprocess.run([sys.executable, "-m", "rpl", "evaluate", str(run)], env=env, capture_output=True, text=True)
    assert done.returncode == 1 and "scenes is not a data set folder" in done.stderr  # the run's folder has moved
    evaluate = [sys.executable, "-m", "rpl", "evaluate", str(run), "--dataset", str(moved)]
    done = subprocess.run(evaluate, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "all: global" in done.stdout


def test_the_frozen_preset_takes_images_of_several_sizes(tmp_path):
    """Cached backbone features of a folder with two image sizes: each image's own grid, equal
    to the backbone's output on it, plain and flipped; and a frozen run trains on them."""
    import torch

    from rpl.runs import PRESETS, FrozenFeatures, build_model, prepare

    root = write_folder(tmp_path / "scenes")
    cfg = PRESETS["quick"].with_overrides(["freeze_backbone=true", f"dataset={root}"])  # ImageNet weights
    model = build_model(cfg, len(CLASSES)).eval()
    train = ImageFolder.from_dir(root, "train")
    frozen = FrozenFeatures(model, train, cfg, cache_root=tmp_path / "cache", progress=False)
    assert frozen.grids[0] is not None and len({tuple(g) for g in frozen.grids[0]}) == 2
    again = FrozenFeatures(model, train, cfg, cache_root=tmp_path / "cache", progress=False)  # read back
    for index in range(len(train)):
        for flip in (False, True):
            with torch.no_grad():
                expected = model.backbone(prepare(train[index], None, cfg, flip, training=False)[0])
            torch.testing.assert_close(frozen[index, flip], (expected,))
            torch.testing.assert_close(again[index, flip], (expected,))
    run = tmp_path / "run"
    assert main(train_args(root, run, tmp_path / "cache", "freeze_backbone=true")) == 0
