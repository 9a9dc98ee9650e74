"""Shared fixtures: the real data (required in CI), and small data trees in the official layouts."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from hypothesis import settings
from PIL import Image

from rpl.data.siftflow import SIFTFLOW_CLASSES

# Fuzz tests draw the same examples on every run (CI results do not depend on luck) and keep
# no example database.
settings.register_profile("rpl", derandomize=True, database=None)
settings.load_profile("rpl")

SIFTFLOW_SUBDIR = "spatial_envelope_256x256_static_8outdoorcategories"


def pytest_ignore_collect(collection_path, config):
    """tests/cuda runs where CUDA kernels can: under Numba's simulator (its own process,
    ``NUMBA_ENABLE_CUDASIM=1``, as ``make test`` runs it) or on a GPU."""
    if collection_path.name == "cuda" and collection_path.parent == Path(__file__).parent:
        import torch

        return not (os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or torch.cuda.is_available())
    return None


def _real_data_dir(name: str) -> Path:
    """``$RPL_DATA/<name>``; skip without it, fail instead when RPL_REQUIRE_DATA=1 (CI)."""
    root = os.environ.get("RPL_DATA")
    path = Path(root) / name if root else None
    if path is None or not path.is_dir():
        reason = f"real data {name!r} not found (set RPL_DATA to the folder holding {name}/)"
        if os.environ.get("RPL_REQUIRE_DATA") == "1":
            pytest.fail(reason + " but RPL_REQUIRE_DATA=1")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def real_siftflow() -> Path:
    """The real SIFT Flow folder."""
    return _real_data_dir("siftflow")


@pytest.fixture(scope="session")
def real_pascal_context() -> Path:
    """The real PASCAL Context sample folder."""
    return _real_data_dir("pascal-context")


@pytest.fixture
def env(real_siftflow, monkeypatch, tmp_path):
    """Real SIFT Flow and weights, a fresh proposal/feature cache under ``tmp_path``."""
    monkeypatch.setenv("RPL_WEIGHTS", str(real_siftflow.parent / "weights"))
    monkeypatch.setenv("RPL_CACHE", str(tmp_path / "cache"))
    return tmp_path


def write_siftflow_tree(root: Path, train=("coast_a", "forest_b"), test=("street_c",), size=8):
    """A tiny SIFT Flow data root (``root/siftflow/...``) in the official zip's layout."""
    base = root / "siftflow"
    images = base / "Images" / SIFTFLOW_SUBDIR
    labels = base / "SemanticLabels" / SIFTFLOW_SUBDIR
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [np.array([n], dtype=object) for n in SIFTFLOW_CLASSES]
    for name in (*train, *test):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(images / f"{name}.jpg")
        S = rng.integers(0, 34, (size, size)).astype(np.float64)
        scipy.io.savemat(labels / f"{name}.mat", {"S": S, "names": np.array([names], dtype=object)})
    (base / "TestSet1.txt").write_text("".join(f"{SIFTFLOW_SUBDIR}\\{n}.jpg\n" for n in test))
    return base
