"""Files that are whole or absent, and locks on them.

The one home of rpl's atomic writes — a temporary file beside the target, renamed into place
when complete and deleted if the writer fails, so a killed process never leaves a half-written
file under the real name — and of its advisory locks (``fcntl.flock``: the kernel releases them
when the holding process dies, so no lock outlives a killed job).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

__all__ = ["temporary", "remove_temporaries", "atomic", "write_text", "write_json", "FileLock"]


def temporary(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_temporaries(path: Path) -> None:
    """Delete every process's :func:`temporary` of ``path``: for a caller whose lock proves that
    no writer of ``path`` is alive, so each was left by a killed one."""
    path = Path(path)
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic(path):
    """Write ``path`` whole or not at all: yields the temporary path to write (its folder made),
    renamed to ``path`` when the block ends, deleted if the block raises."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic(path) as tmp:
        tmp.write_text(text)


def write_json(path, payload: dict) -> None:
    """Write ``payload`` to ``path`` as indented JSON, atomically."""
    write_text(path, json.dumps(payload, indent=2) + "\n")


class FileLock:
    """An exclusive lock on the file ``path`` (created if missing), which records the holder's
    pid. ``with FileLock(path) as mine:`` — ``mine`` is False when another process holds it;
    with ``blocking=True`` the block waits for it instead and ``mine`` is always True."""

    def __init__(self, path, blocking: bool = False):
        self.path, self.blocking, self.handle = Path(path), blocking, None

    def acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if self.blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        self.handle = handle
        return True

    def holder(self) -> str:
        """The pid the holder recorded ("?" while it is still writing it)."""
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self.handle is not None:
            self.handle.truncate(0)  # no stale pid for the next process refused
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
