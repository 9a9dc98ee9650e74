"""The notebooks, run in order, each timed.

    python -m rpl notebooks                                # execute notebooks/NN_*.ipynb in place
    python -m rpl notebooks --quick --output-dir cache/nb  # quick mode, copies elsewhere
    python -m rpl notebooks --times results/notebook_times.json   # also record how long each took

Each notebook runs in its own kernel from the notebooks' folder (their relative paths, ``../``,
hold), with the environment given (``make reproduce`` points ``RPL_RUNS``, ``RPL_RESULTS`` and
``RPL_FIGURES`` at its own folder). A notebook that fails stops the sequence with its error; the
executed copy is written only when it ran through.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .files import atomic, write_json
from .provenance import provenance

__all__ = ["notebooks", "run_notebooks"]


def notebooks(folder="notebooks") -> list[Path]:
    """The course's notebooks, ``NN_topic.ipynb``, in order."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def run_notebooks(
    folder="notebooks", output_dir=None, quick: bool = False, env: dict | None = None, times=None, log=print
) -> dict:
    """Execute every notebook of ``folder`` in order (in place, or into ``output_dir``), quick
    mode or not; returns {notebook: seconds} and, with ``times`` (a JSON file), records them
    there under ``"quick"`` or ``"full"`` beside the machine and commit."""
    import nbformat
    from nbconvert.preprocessors import ExecutePreprocessor

    found = notebooks(folder)
    if not found:
        raise FileNotFoundError(f"{folder}: no NN_topic.ipynb notebooks there")
    saved = dict(os.environ)
    os.environ.update({"RPL_QUICK": "1" if quick else "0", **(env or {})})  # the kernels inherit it
    seconds = {}
    try:
        for path in found:
            log(f"== {path.name} (quick mode: {quick})")
            notebook = nbformat.read(path, as_version=4)
            started = time.monotonic()
            ExecutePreprocessor(timeout=None).preprocess(notebook, {"metadata": {"path": str(path.parent)}})
            seconds[path.name] = round(time.monotonic() - started, 1)
            target = Path(output_dir) / path.name if output_dir else path
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic(target) as tmp:
                nbformat.write(notebook, str(tmp))
            log(f"   {seconds[path.name]:.0f} s -> {target}")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    if times is not None:
        import json

        times = Path(times)
        payload = json.loads(times.read_text()) if times.is_file() else {}
        payload[("quick" if quick else "full")] = provenance(
            seconds=seconds, total_seconds=round(sum(seconds.values()), 1)
        )
        write_json(times, payload)
    return seconds
