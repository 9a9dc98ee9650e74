"""Where a measured number came from: commit, machine, versions, time; written with it."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

__all__ = ["provenance", "write_json"]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], capture_output=True, text=True, check=True, timeout=10,
            cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def provenance(**extra) -> dict:
    """Git commit (and whether the tracked files outside ``results/`` had changes: a measurement
    may rewrite the results it replaces), machine, Python, date, plus ``extra``."""
    import numpy

    status = _git("status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results")
    return {
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "machine": f"{os.cpu_count()} CPU cores, {_cpu_model()}, {platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def temporary(path: Path) -> Path:
    """Where this process writes ``path`` before renaming it into place (an atomic write)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_temporaries(path: Path) -> None:
    """Delete every process's :func:`temporary` of ``path``: for a caller whose lock proves that
    no writer of ``path`` is alive, so each was left by a killed one."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_json(path: str | os.PathLike, payload: dict) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary(path)
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
