import os
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import SIFTFLOW_SUBDIR, write_siftflow_tree
from PIL import Image

from rpl.__main__ import main
from rpl.data import SiftFlow
from rpl.proposals import ProposalCache, ProposalConfig, as_kind, selective_search


@pytest.fixture
def small(tmp_path):
    """A SIFT Flow tree of 6 small, real-looking images (smooth random colour fields)."""
    names = [f"coast_{i}" for i in range(5)]
    base = write_siftflow_tree(tmp_path / "data", train=names, test=("street_x",), size=48)
    rng = np.random.default_rng(0)
    for name in (*names, "street_x"):
        field = np.kron(rng.integers(0, 256, (6, 6, 3)), np.ones((8, 8, 1))).astype(np.uint8)
        Image.fromarray(field).save(base / "Images" / SIFTFLOW_SUBDIR / f"{name}.jpg", quality=95)
    return tmp_path


def test_get_computes_then_reads(small):
    ds = SiftFlow("train", small / "data")
    cache = ProposalCache(ds, root=small / "cache")
    assert "k100-sigma0.8-min100-region100-ctsf+tsf" in str(cache.folder)
    regions = cache.get("coast_1", "hsv")
    path = cache.path("coast_1", "hsv")
    assert path.is_file() and regions.params["color_space"] == "hsv"
    again = cache.get("coast_1", "hsv")
    assert (again.membership != regions.membership).nnz == 0
    expected = selective_search(ds[1].image, "hsv")
    assert (expected.membership != regions.membership).nnz == 0


@pytest.mark.parametrize("kind, tag", [("superpixels", "superpixels"), ("rectangles", "boxes")])
def test_derived_kinds_are_cached_beside_the_proposals(small, kind, tag):
    ds = SiftFlow("train", small / "data")
    proposals = ProposalCache(ds, root=small / "cache")
    derived = ProposalCache(ds, root=small / "cache", kind=kind)
    assert derived.folder == proposals.folder / kind
    regions = derived.get("coast_2", "lab")
    assert derived.path("coast_2", "lab").is_file() and proposals.path("coast_2", "lab").is_file()
    expected = as_kind(proposals.get("coast_2", "lab"), kind)
    assert regions.params["kind"] == tag and (expected.membership != regions.membership).nnz == 0
    assert np.array_equal(expected.superpixels, regions.superpixels)
    assert as_kind(regions, kind) is regions  # already of its kind: prepare leaves it alone
    assert derived.build(("lab",), workers=1, progress=False)["computed"] == 4
    with pytest.raises(ValueError, match="kind must be one of"):
        ProposalCache(ds, root=small / "cache", kind="boxes")


def test_parameters_change_the_folder(small):
    ds = SiftFlow("train", small / "data")
    a = ProposalCache(ds, root=small / "cache")
    b = ProposalCache(ds, ProposalConfig(k=200), root=small / "cache")
    assert a.folder != b.folder


def test_build_shards_and_resume(small):
    ds = SiftFlow("train", small / "data")
    cache = ProposalCache(ds, root=small / "cache")
    shards = [cache.missing(("rgb", "lab"), (i, 3)) for i in range(3)]
    flat = [t for s in shards for t in s]
    assert len(flat) == 10 and len(set(flat)) == 10
    stats = cache.build(("rgb", "lab"), shard=(1, 3), workers=1, progress=False)
    assert stats["computed"] == len(shards[1]) and stats["cached"] == 0
    stats = cache.build(("rgb", "lab"), workers=1, progress=False)
    assert stats["computed"] == 10 - len(shards[1]) and stats["cached"] == len(shards[1])
    cache.path("coast_0", "rgb").unlink()
    abandoned = cache.folder / "rgb" / ".coast_0.npz.123.tmp"  # a killed writer's, an hour old
    abandoned.write_bytes(b"half")
    os.utime(abandoned, (time.time() - 3600,) * 2)
    live = cache.folder / "rgb" / ".coast_1.npz.456.tmp"  # another job's, being written now
    live.write_bytes(b"half")
    assert cache.build(("rgb", "lab"), workers=2, progress=False)["computed"] == 1
    assert [p.name for p in (cache.folder / "rgb").glob(".*")] == [live.name]
    with pytest.raises(ValueError, match="shard"):
        cache.missing(("rgb",), (3, 3))
    with pytest.raises(ValueError, match="colour space"):
        cache.missing(("xyz",))


def test_a_damaged_cached_file_is_computed_again(small):
    ds = SiftFlow("train", small / "data")
    cache = ProposalCache(ds, root=small / "cache")
    good = cache.get("coast_0")
    path = cache.path("coast_0", "rgb")
    for damaged in (path.read_bytes()[:100], b""):  # truncated, as a full disk leaves it; empty, as a crash
        path.write_bytes(damaged)
        with pytest.warns(UserWarning, match="cannot read a RegionSet from .*coast_0.npz.*; computing the proposals"):
            again = cache.get("coast_0")
        np.testing.assert_array_equal(again.masks(), good.masks())
    np.testing.assert_array_equal(type(good).load(path).masks(), good.masks())  # replaced on disk


def test_workers_in_an_unguarded_script_fail_with_the_fix_instead_of_respawning(small, tmp_path):
    """Spawned workers import the calling script; without a __main__ guard each would call
    build again. The call fails within seconds, saying what to do."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from rpl.data import SiftFlow\nfrom rpl.proposals import ProposalCache\n"
        f"cache = ProposalCache(SiftFlow('train', {str(small / 'data')!r}), root={str(tmp_path / 'cache')!r})\n"
        "cache.build(('rgb',), workers=2, progress=False)\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode != 0
    assert "if __name__ == '__main__':" in done.stderr and "RuntimeError: proposal workers died" in done.stderr


def test_cli(small, capsys):
    args = ["proposals", "--root", str(small / "data"), "--cache", str(small / "cache")]
    assert main(args + ["--split", "test", "--color-spaces", "rgb", "--workers", "1"]) == 0
    assert "siftflow test: 1 computed, 0 already cached" in capsys.readouterr().out
    assert main(args + ["--color-spaces", "rgb", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "siftflow train: 5 computed" in out and "siftflow test: 0 computed, 1 already cached" in out
