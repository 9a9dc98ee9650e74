"""The proposal cache: Selective Search once per image and colour space, reused by every run.

Layout: ``$RPL_CACHE/proposals/<dataset>/<parameters>/<color space>/<image name>.npz`` (one
:class:`RegionSet` each, written atomically), so a different parameter set never reads stale
files and an interrupted extraction — even ``kill -9`` — resumes where it stopped. The other
region kinds (superpixels, rectangles: :mod:`rpl.proposals.kinds`) are derived from those files
once and cached beside them, in ``<parameters>/<kind>/<color space>/``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..data.base import read_image
from .kinds import REGION_KINDS, as_kind
from .regions import RegionSet
from .selective_search import COLOR_SPACES, selective_search

__all__ = ["ProposalConfig", "ProposalCache", "cache_root"]

CACHE_ENV = "RPL_CACHE"


def cache_root(root: str | os.PathLike | None = None) -> Path:
    """``root`` if given, else ``$RPL_CACHE``, else ``./cache``."""
    return Path(root if root is not None else os.environ.get(CACHE_ENV, "cache")).expanduser()


@dataclass(frozen=True)
class ProposalConfig:
    """Selective Search parameters (see :func:`rpl.proposals.selective_search`)."""

    k: float = 100
    sigma: float = 0.8
    min_size: int | None = None
    strategies: tuple[str, ...] = ("color-texture-size-fill", "texture-size-fill")
    min_region_size: int = 100

    def key(self) -> str:
        """A readable folder name that changes whenever a parameter does."""
        abbrev = "+".join("".join(t[0] for t in s.split("-")) for s in self.strategies)
        min_size = self.k if self.min_size is None else self.min_size
        return f"k{self.k:g}-sigma{self.sigma:g}-min{min_size:g}-region{self.min_region_size}-{abbrev}"

    @classmethod
    def of(cls, dataset) -> "ProposalConfig":
        """The data set's own settings (``dataset.proposal_settings``: the paper's for SIFT Flow
        and PASCAL Context, a folder's ``proposals.json``), the defaults for the rest."""
        return cls(**getattr(dataset, "proposal_settings", {}))


class ProposalCache:
    """Cached proposals of one data set.

    Args:
        dataset: a data set object (``rpl.data.SiftFlow("train")``, ...); its ``key`` names
            the folder (a data set folder's: its resolved path, hashed).
        config: Selective Search parameters; default: the paper's for that data set.
        root: cache root; default ``$RPL_CACHE`` or ``./cache``.
        kind: the regions it holds (:data:`~rpl.proposals.kinds.REGION_KINDS`): Selective
            Search's, or the superpixels or rectangles derived from them (a run's ``regions``).
    """

    def __init__(self, dataset, config: ProposalConfig | None = None, root=None, kind: str = "selective-search"):
        if kind not in REGION_KINDS:
            raise ValueError(f"kind must be one of {REGION_KINDS}, got {kind!r}")
        self.dataset = dataset
        self.name = dataset.key
        self.config = config or ProposalConfig.of(dataset)
        self.kind = kind
        self.root = root
        self.folder = cache_root(root) / "proposals" / self.name / self.config.key()
        if kind != "selective-search":
            self.folder = self.folder / kind

    def path(self, name: str, color_space: str) -> Path:
        return self.folder / color_space / f"{name}.npz"

    def get(self, name: str, color_space: str = "rgb") -> RegionSet:
        """The regions of image ``name``: from the cache, or computed and cached now (a derived
        kind from the cached proposals). A cached file that cannot be read (truncated, say) is
        computed again and replaced, with a warning."""
        path = self.path(name, color_space)
        if path.exists():
            try:
                return RegionSet.load(path)
            except ValueError as e:
                warnings.warn(f"{e}; computing the proposals again", stacklevel=2)
        if self.kind == "selective-search":
            regions = _compute(self.dataset, self.config, name, color_space)
        else:
            proposals = ProposalCache(self.dataset, self.config, self.root).get(name, color_space)
            regions = as_kind(proposals, self.kind)
        regions.save(path)
        return regions

    def missing(self, color_spaces=COLOR_SPACES, shard=(0, 1)) -> list[tuple[str, str]]:
        """(image name, colour space) pairs of this shard not in the cache yet."""
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        for cs in color_spaces:
            if cs not in COLOR_SPACES:
                raise ValueError(f"unknown colour space {cs!r}; choose from {COLOR_SPACES}")
        tasks = [(n, cs) for n in sorted(self.dataset.names) for cs in color_spaces][index::count]
        return [t for t in tasks if not self.path(*t).exists()]

    def build(self, color_spaces=COLOR_SPACES, shard=(0, 1), workers=None, progress=True) -> dict:
        """Compute every missing (image, colour space) of this shard with ``workers`` processes.

        Returns counts and wall time: ``{"computed": .., "cached": .., "seconds": ..}``.
        """
        for cs in color_spaces:  # temporary files of a killed run, not those another job is writing
            for stale in (self.folder / cs).glob(".*.tmp") if (self.folder / cs).is_dir() else ():
                if _abandoned(stale):
                    stale.unlink(missing_ok=True)
        index, count = shard
        total = len(self.dataset.names) * len(color_spaces)
        total = len(range(index, total, count))
        todo = self.missing(color_spaces, shard)
        start = time.monotonic()
        workers = workers or os.cpu_count() or 1
        bar = tqdm(total=len(todo), desc=f"proposals {self.name}", unit="img", disable=not progress)
        if workers == 1 or len(todo) <= 1:
            for name, cs in todo:
                self.get(name, cs)
                bar.update()
        else:
            ctx = multiprocessing.get_context("spawn")
            try:
                with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(self,)) as pool:
                    for _ in pool.map(_work, todo, chunksize=4):
                        bar.update()
            except BrokenProcessPool as e:  # a worker died; multiprocessing.Pool would respawn it forever
                raise RuntimeError(
                    f"proposal workers died ({e}). Called from a script, ProposalCache.build(workers > 1) must sit "
                    "under `if __name__ == '__main__':` (workers are spawned and import the script); or pass "
                    "workers=1"
                ) from None
        bar.close()
        return {"computed": len(todo), "cached": total - len(todo), "seconds": time.monotonic() - start}


# A temporary file untouched this long was left by a killed writer: one image's proposals are
# written in well under a second, and a job on another machine of a shared file system cannot
# be asked whether it is alive.
ABANDONED_AFTER_S = 600


def _abandoned(tmp: Path) -> bool:
    try:
        return time.time() - tmp.stat().st_mtime > ABANDONED_AFTER_S
    except FileNotFoundError:  # its writer has just renamed it
        return False


def _compute(dataset, config: ProposalConfig, name: str, color_space: str) -> RegionSet:
    image = read_image(dataset.image_path(name))
    return selective_search(image, color_space, **asdict(config))


_worker_cache: ProposalCache | None = None


def _init_worker(cache: ProposalCache) -> None:
    global _worker_cache
    _worker_cache = cache


def _work(task: tuple[str, str]) -> None:
    _worker_cache.get(*task)
