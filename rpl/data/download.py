"""Download and extract the data sets: one registry of (url, size, checksum), resumable.

``fetch("siftflow")`` leaves ``$RPL_DATA/siftflow`` complete or not at all: archives download
to ``$RPL_DATA/.downloads/<file>.part`` (continued with an HTTP Range request after an
interruption), are checked against their recorded size and checksum, extracted into a staging
folder and only then renamed into place.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from .base import DATA_ENV, data_root

__all__ = ["Archive", "Source", "SOURCES", "DownloadError", "fetch"]

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download or extraction failed; the message says how to get the data by hand."""


@dataclass(frozen=True)
class Archive:
    """One file to download. ``size``/``md5`` are checked when recorded (None: unknown)."""

    url: str
    filename: str
    size: int | None = None
    md5: str | None = None


@dataclass(frozen=True)
class Source:
    """A data set: its archives, and a path that exists once it is extracted (``marker``)."""

    name: str
    archives: tuple[Archive, ...]
    marker: str
    homepage: str


SOURCES: dict[str, Source] = {
    "siftflow": Source(
        name="siftflow",
        archives=(
            Archive(
                url="http://www.cs.unc.edu/~jtighe/Papers/ECCV10/siftflow/SiftFlowDataset.zip",
                filename="SiftFlowDataset.zip",
            ),
        ),
        marker="TestSet1.txt",
        homepage="https://www.cs.unc.edu/~jtighe/Papers/ECCV10/",
    ),
    "pascal-context": Source(
        name="pascal-context",
        archives=(
            Archive(
                url="http://host.robots.ox.ac.uk/pascal/VOC/voc2010/VOCtrainval_03-May-2010.tar",
                filename="VOCtrainval_03-May-2010.tar",
                md5="da459979d0c395079b5c75ee67908abb",
            ),
            Archive(
                url="https://cs.stanford.edu/~roozbeh/pascal-context/trainval.tar.gz",
                filename="trainval.tar.gz",
            ),
        ),
        marker="labels.txt",
        homepage="https://cs.stanford.edu/~roozbeh/pascal-context/",
    ),
}


def _by_hand(source: Source, target: Path) -> str:
    files = ", ".join(a.url for a in source.archives)
    return (
        f"To install it by hand, download {files} (see {source.homepage}) and extract into "
        f"{target} so that {target / source.marker} exists; rpl finds it through ${DATA_ENV}."
    )


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _download(archive: Archive, dest: Path, timeout: float, progress: bool) -> None:
    """Download ``archive`` to ``dest``, continuing ``dest.part`` when the server allows it."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(archive.url, headers={"User-Agent": "rpl"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code != 416 or not have:  # 416: the part file is already whole
            raise
        response = None
    if response is not None:
        with response:
            if have and response.status != 206:
                have = 0  # the server ignored the Range request: start over
            length = response.headers.get("Content-Length")
            total = have + int(length) if length is not None else archive.size
            with (
                open(part, "ab" if have else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=archive.filename,
                    disable=not progress,
                ) as bar,
            ):
                try:
                    while chunk := response.read(CHUNK):
                        f.write(chunk)
                        bar.update(len(chunk))
                    error = None
                except (http.client.HTTPException, OSError) as e:
                    error = e
                if error is not None or (total is not None and f.tell() < total):
                    raise DownloadError(
                        f"{archive.url}: interrupted after {f.tell()} of {total or '?'} bytes "
                        f"({error or 'connection closed'}); run the same command again to resume"
                    ) from error
    size = part.stat().st_size
    if archive.size is not None and size != archive.size:
        if size > archive.size:
            part.unlink()
        raise DownloadError(f"{archive.url}: got {size} bytes, expected {archive.size}")
    if archive.md5 is not None and _md5(part) != archive.md5:
        part.unlink()
        raise DownloadError(f"{archive.url}: checksum mismatch (expected md5 {archive.md5})")
    os.replace(part, dest)


def _extract(archive: Path, into: Path) -> None:
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            t.extractall(into, filter="data")
    else:
        raise DownloadError(f"{archive} is neither a zip nor a tar archive")


def _find_marker(staging: Path, marker: str) -> Path:
    """The folder under ``staging`` that holds ``marker`` (archives may wrap it in a folder)."""
    hits = sorted(staging.rglob(Path(marker).name), key=lambda p: len(p.parts))
    for hit in hits:
        base = hit
        for _ in Path(marker).parts:
            base = base.parent
        if (base / marker).exists():
            return base
    raise DownloadError(f"the downloaded archives do not contain {marker}")


def fetch(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    source: Source | None = None,
    timeout: float = 10.0,
    progress: bool = True,
) -> Path:
    """Download and extract data set ``name`` into ``<root>/<name>``; return that folder.

    Args:
        name: a key of :data:`SOURCES` (``"siftflow"``, ``"pascal-context"``).
        root: the data root; default ``$RPL_DATA``.
        source: use this instead of ``SOURCES[name]`` (mirrors, tests).
        timeout: seconds to wait for the server before giving up.
        progress: show a tqdm progress bar.

    Does nothing when the data set is already there. Partial downloads are continued.

    Raises:
        DownloadError: the server cannot be reached, or a file is incomplete or corrupt;
            the message says where to put the data by hand.
    """
    if source is None:
        if name not in SOURCES:
            raise ValueError(f"unknown data set {name!r}; choose from {sorted(SOURCES)}")
        source = SOURCES[name]
    root = data_root(root)
    target = root / source.name
    if (target / source.marker).exists():
        return target
    if target.exists() and any(target.iterdir()):
        raise DownloadError(
            f"{target} exists but has no {source.marker}: an incomplete copy? Move it away and fetch again."
        )
    downloads = root / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    files = []
    for archive in source.archives:
        dest = downloads / archive.filename
        if not dest.exists():
            try:
                _download(archive, dest, timeout, progress)
            except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
                reason = getattr(e, "reason", e)
                raise DownloadError(f"could not download {archive.url}: {reason}. {_by_hand(source, target)}") from e
        files.append(dest)
    staging = root / f".{source.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            for f in files:
                _extract(f, staging)
            found = _find_marker(staging, source.marker)
        except (DownloadError, zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
            for f in files:
                f.unlink(missing_ok=True)
            raise DownloadError(
                f"could not extract {', '.join(f.name for f in files)}: {e} (the archives were "
                f"removed; fetch again). {_by_hand(source, target)}"
            ) from e
        if target.exists():
            target.rmdir()  # empty, checked above
        os.replace(found, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for f in files:
        f.unlink()
    return target
