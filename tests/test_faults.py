"""Fault tests (issue 15): bad input through the command line, fuzzing of the public API, kill -9
during proposal extraction and training, and two processes racing on one cache or run folder."""

import dataclasses
import json
import os
import random
import signal
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
from conftest import SIFTFLOW_SUBDIR, write_siftflow_tree
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import random_boxes
from PIL import Image

from rpl.__main__ import main
from rpl.data import ImageFolder, SiftFlow
from rpl.data.folder import IMAGE_SUFFIXES
from rpl.ops import free_form_roi_pool, reference, region_to_pixel
from rpl.proposals import COLOR_SPACES, ProposalCache, RegionSet, selective_search
from rpl.runs import PRESETS, TrainConfig

CHILD_ENV = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}


def _files(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# --- bad input through the command line ------------------------------------------------------


def _set(pair, culprit):
    argv = ["train", "--preset", "quick", "--set", pair, "--out", "{tmp}/run"]
    return pytest.param(argv, culprit, id=f"train --set {pair}")


def _case(argv, culprit, marks=()):
    return pytest.param(argv, culprit, marks=marks, id=" ".join(a.replace("{tmp}/", "") for a in argv))


NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason="the message of a machine without a GPU")
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")

CLI_CASES = [
    _set("epochs=-1", "epochs must be an integer >= 1, got -1"),
    _set("images_per_step=-3", "images_per_step must be an integer >= 1, got -3"),
    _set("train_images=-5", "train_images must be an integer >= 0, got -5"),
    _set("head=-1", "head must be an integer >= 0, got -1"),
    _set("lr=nan", "lr must be a finite number > 0, got nan"),
    _set("lr=inf", "lr must be a finite number > 0, got inf"),
    _set("color_spaces=", "color_spaces must be a comma-separated subset"),
    _set("backbone=resnet", "backbone must be one of"),
    _set("images_per_step=0", "images_per_step must be an integer >= 1, got 0"),
    _set("flip=maybe", "flip takes true or false"),
    _set("preset=bogus", "preset must be one of"),
    _set("epochs=abc", "epochs takes an integer, got 'abc'"),
    _set("nonsense=1", "--set 'nonsense=1': expected key=value"),
    _set("epochs", "--set 'epochs': expected key=value"),
    _case(["train", "--preset", "bogus", "--out", "{tmp}/run"], "argument --preset: invalid choice: 'bogus'"),
    _case(["train", "--preset", "quick", "--root", "{tmp}/nowhere", "--out", "{tmp}/run"], "SIFT Flow not found"),
    _case(
        ["train", "--preset", "paper", "--set", "train_images=2", "--root", "{tmp}/data", "--out", "{tmp}/run"],
        "`--set weights=none`",
    ),
    _case(["evaluate", "{tmp}/run", "--device", "cuda"], "argument --device: cuda: no CUDA GPU is visible", NO_GPU),
    _case(["train", "--out", "{tmp}/run", "--device", "tpu"], "expected cpu, cuda or cuda:<index>, got 'tpu'"),
    _case(["evaluate", "{tmp}/nothing"], "nothing/checkpoint.pt not found"),
    _case(["proposals", "--workers", "-2"], "argument --workers: need at least 1 process, got -2"),
    _case(["proposals", "--workers", "two"], "argument --workers: expected a number of processes, got 'two'"),
    _case(["proposals", "--shard", "2/2"], "argument --shard: shard 2/2: need 0 <= i < n"),
    _case(["proposals", "--shard", "half"], "argument --shard: expected i/n"),
    _case(["proposals", "--color-spaces", "rgb,xyz"], "--color-spaces takes a list from"),
    _case(["proposals", "--color-spaces", "rgb", "--root", "{tmp}/nowhere"], "SIFT Flow not found"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/x.png"], "nothing/checkpoint.pt not found"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/x.jpg"], "x.jpg: a label map is written"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/x"], "x: a label map is written losslessly"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/folder"], "folder: a label map is written"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/image.png/x.png"], "cannot create the folder"),
    _case(["predict", "{tmp}/nothing", "{tmp}/image.png", "-o", "{tmp}/locked/x.png"], "is not writable", AS_ROOT),
    _case(["diagnose"], "give a run folder"),
]


@pytest.fixture
def cli_tmp(tmp_path, monkeypatch):
    """A scratch folder as the working directory and cache, a tiny SIFT Flow tree, no weights and
    no network (so that the paper preset cannot fetch VGG-16)."""
    import torchvision.models._api

    def offline(*args, **kwargs):
        raise OSError("no network in this test")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RPL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("RPL_DATA", str(tmp_path / "nowhere"))
    monkeypatch.setenv("RPL_WEIGHTS", str(tmp_path / "no-weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-home"))
    write_siftflow_tree(tmp_path / "data")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "image.png")
    (tmp_path / "folder").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0o500)
    return tmp_path


@pytest.mark.parametrize("argv, culprit", CLI_CASES)
def test_bad_input_fails_with_one_line_naming_it(cli_tmp, capsys, argv, culprit):
    """rc != 0; one line, ``rpl <command>: ...`` (argparse's: its usage, then one
    ``python -m rpl <command>: error: ...`` line), naming the culprit; no traceback; no file."""
    before = _files(cli_tmp)
    argv = [a.format(tmp=cli_tmp) for a in argv]
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert rc != 0 and not out, (rc, out)
    assert "Traceback" not in err
    if lines and lines[0].startswith("usage: "):
        assert rc == 2 and all(line.startswith(("usage: ", " ")) for line in lines[:-1]), err
        assert lines[-1].startswith(f"python -m rpl {argv[0]}: error: "), err
    else:
        assert len(lines) == 1 and lines[0].startswith(f"rpl {argv[0]}: "), err
    assert culprit in lines[-1], err
    assert _files(cli_tmp) == before, "files left behind"


# --- fuzzing the public API --------------------------------------------------------------------


@st.composite
def images(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    block = draw(st.sampled_from([1, 3, 8]))
    colours = rng.integers(0, 256, (-(-h // block), -(-w // block), 3))
    image = np.kron(colours, np.ones((block, block, 1)))[:h, :w].astype(np.uint8)
    return image[..., 0].copy() if draw(st.booleans()) and block == 8 else image


WILD = [float("nan"), float("inf"), float("-inf"), 0.0, -1.0]


@settings(max_examples=40, deadline=None)
@given(
    images(),
    st.sampled_from(COLOR_SPACES),
    st.one_of(st.floats(0.5, 500), st.sampled_from(WILD)),
    st.one_of(st.floats(0, 3), st.sampled_from(WILD)),
    st.one_of(st.none(), st.integers(-1, 30)),
    st.integers(0, 100),
)
def test_fuzz_selective_search(image, color_space, k, sigma, min_size, min_region_size):
    """Bad parameters raise a ValueError naming them; good ones always give a valid RegionSet
    holding the whole image."""
    bad = [
        name
        for name, wrong in (
            ("scale (k)", not (np.isfinite(k) and k > 0)),
            ("sigma", not (np.isfinite(sigma) and sigma >= 0)),
            ("min_size", min_size is not None and min_size < 1),
        )
        if wrong
    ]
    if bad:
        with pytest.raises(ValueError, match=r"^(scale \(k\)|sigma|min_size) must be"):
            selective_search(image, color_space, k=k, sigma=sigma, min_size=min_size)
        return
    regions = selective_search(image, color_space, k=k, sigma=sigma, min_size=min_size, min_region_size=min_region_size)
    h, w = image.shape[:2]
    masks = regions.masks()
    assert regions.shape == (h, w) and masks.any(axis=(1, 2)).all()
    assert (regions.areas == h * w).sum() == 1 and ((regions.areas >= min_region_size) | (regions.areas == h * w)).all()
    assert (regions.boxes[:, :2] >= 0).all() and (regions.boxes[:, 2] < w).all() and (regions.boxes[:, 3] < h).all()
    assert len({m.tobytes() for m in masks}) == len(regions)
    assert regions.params["color_space"] == color_space and regions.params["k"] == k


@st.composite
def memberships(draw):
    """(superpixels, membership as given, dense membership): the membership dense, or CSR with
    explicitly stored False entries, some regions perhaps empty."""
    h, w = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    _, cells = np.unique(rng.integers(0, draw(st.integers(1, 10)), (h, w)), return_inverse=True)
    cells = cells.reshape(h, w)
    r, s = draw(st.integers(1, 8)), int(cells.max()) + 1
    dense = rng.random((r, s)) < draw(st.floats(0, 1))
    if draw(st.booleans()):
        stored = dense | (rng.random((r, s)) < 0.5)
        rows, cols = np.nonzero(stored)
        return cells, scipy.sparse.csr_array((dense[rows, cols], (rows, cols)), shape=(r, s)), dense
    return cells, dense, dense


@settings(max_examples=50, deadline=None)
@given(memberships())
def test_fuzz_region_set(case):
    """A region is the cells it holds (a stored False is no member): masks, areas and boxes
    follow from them, a region without a cell is refused, and a saved set loads as it was."""
    cells, membership, dense = case
    if not dense.any(axis=1).all():
        with pytest.raises(ValueError, match="every region must contain at least one cell"):
            RegionSet(cells, membership)
        return
    regions = RegionSet(cells, membership)
    masks = regions.masks()
    np.testing.assert_array_equal(masks, dense[:, cells])
    np.testing.assert_array_equal(regions.areas, masks.sum(axis=(1, 2)))
    for mask, (x1, y1, x2, y2) in zip(masks, regions.boxes):
        ys, xs = np.nonzero(mask)
        assert (x1, y1, x2, y2) == (xs.min(), ys.min(), xs.max(), ys.max())
    np.testing.assert_array_equal(RegionSet.from_masks(masks).masks(), masks)
    with tempfile.TemporaryDirectory() as folder:
        regions.save(Path(folder) / "r.npz")
        np.testing.assert_array_equal(RegionSet.load(Path(folder) / "r.npz").masks(), masks)
        assert os.listdir(folder) == ["r.npz"]


def _identical(a, b) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(((a == b) | (a.isnan() & b.isnan())).all())


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([torch.float32, torch.float64]),
    st.sampled_from([None, float("nan"), float("inf"), float("-inf")]),
    st.sampled_from([1, 2, 8, 16]),
    st.integers(1, 4),
    st.integers(1, 4),
)
def test_fuzz_free_form_roi_pool_equals_reference(seed, dtype, special, stride, oh, ow):
    """Random boxes (some outside the image or inverted), masks, ties, NaN and infinities."""
    rng = np.random.default_rng(seed)
    n, c, h, w, k = (int(rng.integers(1, top)) for top in (3, 4, 10, 10, 13))
    features = torch.tensor(rng.integers(-3, 4, (n, c, h, w)), dtype=dtype)
    if special is not None:
        features[torch.tensor(rng.random((n, c, h, w)) < 0.2)] = special
    features.requires_grad_()
    boxes = random_boxes(k, n, h, w, rng, scale=stride).to(dtype)
    masks = torch.tensor(rng.random((k, h, w)) < rng.random())
    ours = free_form_roi_pool(features, boxes, masks, (oh, ow), 1 / stride)
    ref = reference.free_form_roi_pool(features, boxes, masks, (oh, ow), 1 / stride)
    assert _identical(ours, ref)
    grad = torch.randn_like(ours)
    (g1,) = torch.autograd.grad(ours, features, grad)
    if not ref.requires_grad:  # every bin empty: the reference's zeros are constants
        assert not ours.any() and not g1.any()
        return
    (g2,) = torch.autograd.grad(ref, features, grad)
    torch.testing.assert_close(g1, g2, equal_nan=True)


@settings(max_examples=50, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([torch.float32, torch.float64]),
    st.sampled_from([None, float("nan"), float("inf"), float("-inf")]),
    st.booleans(),
)
def test_fuzz_region_to_pixel_equals_reference(seed, dtype, special, sparse):
    """Random scores (ties, NaN, infinities) and memberships, dense or CSR with stored False."""
    rng = np.random.default_rng(seed)
    a, r, c = rng.integers(1, 30), rng.integers(1, 12), rng.integers(1, 5)
    scores = torch.tensor(rng.integers(-2, 3, (r, c)), dtype=dtype)
    if special is not None:
        scores[torch.tensor(rng.random((r, c)) < 0.2)] = special
    scores.requires_grad_()
    member = rng.random((a, r)) < rng.random()
    given_member = torch.tensor(member)
    if sparse:
        rows, cols = np.nonzero(member | (rng.random((a, r)) < 0.3))
        csr = scipy.sparse.csr_array((member[rows, cols], (rows, cols)), shape=(a, r))
        given_member = torch.sparse_csr_tensor(
            torch.tensor(csr.indptr, dtype=torch.int64),
            torch.tensor(csr.indices, dtype=torch.int64),
            torch.tensor(csr.data),
            (a, r),
            check_invariants=True,
        )
    out, winners = region_to_pixel(scores, given_member, return_winners=True)
    ref, ref_winners = reference.region_to_pixel(scores, torch.tensor(member), return_winners=True)
    assert _identical(out, ref) and torch.equal(winners, ref_winners)
    grad = torch.randn_like(out)
    (g1,) = torch.autograd.grad(out, scores, grad)
    (g2,) = torch.autograd.grad(ref, scores, grad)
    torch.testing.assert_close(g1, g2, equal_nan=True)


NAME = st.text(string.ascii_letters[:4] + string.digits[:2] + "_-", min_size=1, max_size=3)
SUFFIX = st.sampled_from([*IMAGE_SUFFIXES, ".JPG", ".Png", ".txt", ".mat", ""])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(NAME, SUFFIX), max_size=6, unique=True),
    st.lists(NAME, max_size=4),
    st.one_of(st.lists(NAME, max_size=3), NAME),
    st.integers(0, 2**32 - 1),
)
def test_fuzz_image_folder(files, unlabelled, classes, seed):
    """Names, extensions (any case, not images too), missing labels, classes: a data set of
    exactly the image files, or the error the case calls for."""
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as folder:
        images, labels = Path(folder) / "images", Path(folder) / "labels"
        images.mkdir()
        labels.mkdir()
        for stem, suffix in files:
            path = images / f"{stem}{suffix}"
            if suffix.lower() in IMAGE_SUFFIXES:
                Image.fromarray(rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)).save(path, format="PNG")
            else:
                path.write_bytes(b"not an image")
        stems = sorted({stem for stem, suffix in files if suffix.lower() in IMAGE_SUFFIXES})
        ncls = len(classes) if isinstance(classes, list) else 1
        for stem in set(stems) - set(unlabelled):
            Image.fromarray(rng.integers(0, ncls + 1, (3, 4), dtype=np.uint8)).save(labels / f"{stem}.png")
        image_files = [s for s, suffix in files if suffix.lower() in IMAGE_SUFFIXES]
        if isinstance(classes, str):
            expected, match = TypeError, "list of names, got the string"
        elif not classes:
            expected, match = ValueError, "at least one class"
        elif len(set(classes)) < len(classes):
            expected, match = ValueError, "duplicate names"
        elif len(image_files) > len(stems):
            expected, match = ValueError, "share the name"
        elif not stems:
            expected, match = FileNotFoundError, "holds no images"
        elif set(stems) & set(unlabelled):
            expected, match = FileNotFoundError, "label file missing for image"
        else:
            ds = ImageFolder(images, labels, classes)
            assert ds.names == stems and ds.num_classes == len(classes)
            for i in range(len(ds)):
                assert ds[i].image.shape == (3, 4, 3) and ds[i].label.max() <= len(classes)
            return
        with pytest.raises(expected, match=match):
            ImageFolder(images, labels, classes)


FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
VALUES = [
    "",
    "0",
    "1",
    "-1",
    "2",
    "3",
    "8",
    "16",
    "0.5",
    "1e-3",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    "maybe",
    "rgb",
    "rgb,lab",
    "hsv,xyz",
    ",",
    "none",
    "imagenet",
    "fcn",
    "baseline",
    "e2s2",
    "vgg16",
    "resnet",
    "box",
    "both",
    "free-form",
    "separate",
    "tied",
    "rectangles",
    "superpixels",
    "boxes",
    "exact",
    "bf16",
    "fp16",
    "pascal-context",
    "cells",
    "bins",
    "legacy",
    "quick",
    "paper",
    "unbalanced",
    "1=2",
]
PAIR = st.one_of(
    st.tuples(
        st.sampled_from(FIELDS),
        st.one_of(st.sampled_from(VALUES), st.text(max_size=6), st.integers(-3, 40).map(str), st.floats().map(str)),
    ),
    st.tuples(st.sampled_from(["nonsense", "Epochs", "", " lr"]), st.sampled_from(VALUES)),
)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(list(PRESETS)), st.lists(PAIR, min_size=1, max_size=3), st.booleans())
def test_fuzz_config_overrides(preset, pairs, drop_sep):
    """Any ``--set`` strings on any preset: a valid TrainConfig (that its saved form rebuilds), or
    a ValueError naming one of the keys given; never another exception."""
    texts = [f"{k}{'' if drop_sep and i == 0 else '='}{v}" for i, (k, v) in enumerate(pairs)]
    try:
        cfg = PRESETS[preset].with_overrides(texts)
    except ValueError as e:
        named = str(e).split(" with key in ")[0]  # a bad key's message goes on to list the good ones
        assert any(k and k in named for k, _ in pairs) or any(repr(t) in named for t in texts), (texts, str(e))
        return
    assert TrainConfig(**json.loads(json.dumps(dataclasses.asdict(cfg)))) == cfg


# --- kill -9 and races -------------------------------------------------------------------------


def _rpl(*argv, **kwargs):
    """``python -m rpl ...`` started in a process group of its own, single-threaded."""
    return subprocess.Popen(
        [sys.executable, "-m", "rpl", *map(str, argv)], env=CHILD_ENV, start_new_session=True, text=True, **kwargs
    )


def _kill_when(proc, ready, delay: float) -> bool:
    """SIGKILL ``proc`` and its children ``delay`` s after ``ready()`` first holds; False when it
    had exited before."""
    deadline = time.monotonic() + 300
    while proc.poll() is None and not ready() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


@pytest.fixture(scope="module")
def real_tree(real_siftflow, tmp_path_factory):
    """40 real SIFT Flow training images (links), one test image; and their proposals in RGB,
    Lab and HSV from an uninterrupted in-process build (the reference)."""
    root = tmp_path_factory.mktemp("faults")
    images = root / "data" / "siftflow" / "Images" / SIFTFLOW_SUBDIR
    images.mkdir(parents=True)
    names = sorted(p.name for p in (real_siftflow / "Images" / SIFTFLOW_SUBDIR).glob("*.jpg"))[::60][:41]
    for name in names:
        (images / name).symlink_to(real_siftflow / "Images" / SIFTFLOW_SUBDIR / name)
    (root / "data" / "siftflow" / "TestSet1.txt").write_text(f"{SIFTFLOW_SUBDIR}\\{names[-1]}\n")
    cache = ProposalCache(SiftFlow("train", root / "data"), root=root / "reference")
    cache.build(("rgb", "lab", "hsv"), workers=1, progress=False)
    return root, cache


def _same_proposals(folder: Path, reference_cache: ProposalCache, color_spaces) -> None:
    files = sorted(folder.glob("*/*.npz"))
    assert len(files) == 40 * len(color_spaces) and sorted({f.parent.name for f in files}) == sorted(color_spaces)
    for f in files:
        ours, ref = RegionSet.load(f), RegionSet.load(reference_cache.path(f.stem, f.parent.name))
        np.testing.assert_array_equal(ours.superpixels, ref.superpixels)
        assert (ours.membership != ref.membership).nnz == 0 and ours.params == ref.params


@pytest.mark.faults
def test_proposals_killed_at_three_random_points_resume_to_the_uninterrupted_result(real_tree, tmp_path):
    """kill -9 after a seeded number of files plus a seeded delay, three times, rerunning after
    each; the final rerun computes only what is missing and the cache equals an uninterrupted
    build. A file being written at a kill is a temporary file of the dead process, left until it
    is ABANDONED_AFTER_S old (another machine's job cannot be asked whether it lives), then removed."""
    root, reference_cache = real_tree
    argv = [
        "proposals",
        "--split",
        "train",
        "--color-spaces",
        "rgb",
        "--workers",
        "1",
        "--root",
        root / "data",
        "--cache",
        tmp_path,
    ]
    folder = tmp_path / "proposals" / "siftflow" / reference_cache.folder.name / "rgb"
    rng = random.Random(15)
    killed = []
    for at in sorted(rng.sample(range(3, 37), 3)):
        proc = _rpl(*argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _kill_when(proc, lambda: len(list(folder.glob("*.npz"))) >= at, rng.uniform(0, 0.05)), "finished"
        killed.append(proc.pid)
    done = len(list(folder.glob("*.npz")))
    assert 3 <= done < 40
    out = subprocess.run(
        [sys.executable, "-m", "rpl", *map(str, argv)], env=CHILD_ENV, capture_output=True, text=True, check=True
    ).stdout
    assert f"{40 - done} computed, {done} already cached" in out
    _same_proposals(folder.parent, reference_cache, ["rgb"])
    left = list(folder.glob(".*"))
    assert all(int(p.name.split(".")[-2]) in killed for p in left), left
    for p in left:
        os.utime(p, (time.time() - 3600,) * 2)
    ProposalCache(SiftFlow("train", root / "data"), root=tmp_path).build(("rgb",), workers=1, progress=False)
    assert not list(folder.glob(".*"))


@pytest.mark.faults
def test_two_processes_build_one_proposal_cache(real_tree, tmp_path):
    """Both started together on one cache: both finish, each having computed some of it, no
    FileNotFoundError (neither removes the other's temporary files), every file as an
    uninterrupted build writes it, no temporary file left."""
    root, reference_cache = real_tree
    argv = [
        "proposals",
        "--split",
        "train",
        "--color-spaces",
        "rgb,lab,hsv",
        "--workers",
        "1",
        "--root",
        root / "data",
        "--cache",
        tmp_path,
    ]
    procs = [_rpl(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0 and "Traceback" not in err and "Error" not in err, err
        assert int(out.split(" computed")[0].split()[-1]) > 0, f"the two did not overlap: {out}"
    _same_proposals(
        tmp_path / "proposals" / "siftflow" / reference_cache.folder.name, reference_cache, ["rgb", "lab", "hsv"]
    )
    assert not list(tmp_path.rglob(".*.tmp"))


TRAIN = [
    "train",
    "--preset",
    "quick",
    "--set",
    "epochs=2",
    "--set",
    "lr_drop_epoch=1",
    "--set",
    "train_images=4",
    "--set",
    "images_per_step=2",
    "--set",
    "test_images=1",
]


def _log(run: Path, partial: bool = False) -> list:
    """The run's log entries; ``partial``: of a live run, whose last line may be half-written."""
    path = run / "log.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    if partial and lines:
        try:
            json.loads(lines[-1])
        except json.JSONDecodeError:
            lines = lines[:-1]
    return [json.loads(line) for line in lines]


@pytest.mark.faults
def test_training_killed_at_three_points_resumes_to_the_uninterrupted_run(env):
    """Two epochs of two steps; kill -9 (seeded delays) in the middle of epoch 1 (no checkpoint
    yet: the resume starts over), the moment the epoch-1 checkpoint is being written, and in the
    middle of epoch 2, resuming after each. Resumption goes back to the last epoch's checkpoint
    and every epoch is seeded, so the kills inside epochs compare exactly: the final checkpoint
    (parameters, momentum buffers) and the logged losses equal an uninterrupted run's, bit for
    bit, and the folders hold the same files (no temporary one)."""
    straight_err = (env / "straight.err").open("w")
    straight = _rpl(*TRAIN, "--out", env / "straight", stdout=subprocess.DEVNULL, stderr=straight_err)
    run = env / "killed"
    rng = random.Random(15)
    points = [
        (lambda: len(_log(run, partial=True)) >= 1, rng.uniform(0, 0.05)),
        (lambda: any(p.name.startswith(("checkpoint.pt", ".checkpoint.pt")) for p in run.iterdir()), 0.0),
        (lambda: any(e["epoch"] == 1 for e in _log(run, partial=True)), rng.uniform(0, 0.05)),
    ]
    epochs_at_kill = []
    for i, (ready, delay) in enumerate(points):
        proc = _rpl(
            *TRAIN, "--out", run, *(["--resume"] if i else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert _kill_when(proc, lambda: run.is_dir() and ready(), delay), f"kill {i + 1}: finished first"
        checkpoint = run / "checkpoint.pt"
        epochs_at_kill.append(torch.load(checkpoint, weights_only=True)["epoch"] if checkpoint.exists() else 0)
    assert epochs_at_kill[0] == 0 and epochs_at_kill[2] == 1, epochs_at_kill
    (run / ".checkpoint.pt.99999.tmp").write_bytes(b"torn")  # a killed save's, whatever the kills left
    subprocess.run(
        [sys.executable, "-m", "rpl", *map(str, TRAIN), "--out", run, "--resume"],
        env=CHILD_ENV,
        check=True,
        capture_output=True,
    )
    assert straight.wait(timeout=600) == 0, (env / "straight.err").read_text()
    straight_err.close()
    a = torch.load(env / "straight" / "checkpoint.pt", weights_only=True)
    b = torch.load(run / "checkpoint.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2 and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for k, state in a["optimizer"]["state"].items():
        assert torch.equal(state["momentum_buffer"], b["optimizer"]["state"][k]["momentum_buffer"]), k
    assert [(e["epoch"], e["step"], e["loss"]) for e in _log(env / "straight")] == [
        (e["epoch"], e["step"], e["loss"]) for e in _log(run)
    ]
    assert (
        _files(env / "straight")
        == _files(run)
        == {".train.lock", "config.json", "log.jsonl", "checkpoint.pt", "train.json"}
    )


@pytest.mark.faults
def test_two_trainings_into_one_folder(env):
    """Both started together with --resume (so that only the lock keeps them apart): one trains,
    the other fails at once with one line naming it; the run is the first's alone."""
    run = env / "run"
    argv = [*TRAIN, "--set", "epochs=1", "--set", "lr_drop_epoch=1", "--out", run, "--resume"]
    procs = [_rpl(*argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], results
    winner = next(p for p in procs if p.returncode == 0)
    err = next(r[1] for p, r in zip(procs, results) if p.returncode == 1)
    assert err.strip() == (
        f"rpl train: {run}: another process (pid {winner.pid}) is training this run; wait for it "
        "to finish, or choose another --out"
    ), err
    assert [(e["epoch"], e["step"]) for e in _log(run)] == [(0, 0), (0, 1)]
    assert torch.load(run / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert json.loads((run / "config.json").read_text())["epochs"] == 1
    assert _files(run) == {".train.lock", "config.json", "log.jsonl", "checkpoint.pt", "train.json"}
