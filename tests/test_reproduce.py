"""`make reproduce QUICK=1` from a clean clone (the committed tree, results included) reaches its
comparison table and leaves the committed results, figures and notebooks alone; `rpl compare`
judges a rerun against the committed results."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rpl.__main__ import main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None or shutil.which("git") is None, reason="needs make and git")
def test_make_reproduce_quick_from_a_clean_clone(real_siftflow, tmp_path):
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: nothing to clone")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    venv = Path(sys.prefix)  # this environment, not a new one; -o: never reinstall into it
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")},
        "RPL_DATA": str(real_siftflow.parent),
        "RPL_WEIGHTS": str(real_siftflow.parent / "weights"),
        "RPL_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(clone),  # the notebooks' kernels import the clone's package
    }
    done = subprocess.run(
        ["make", "reproduce", "QUICK=1", f"VENV={venv}", "-o", f"{venv}/.rpl-installed"],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    out = clone / "reproduction-quick"
    comparison = (out / "comparison.md").read_text()
    assert "| e2s2_cpu | quick |" in comparison and "quick preset |" in comparison
    assert len(list((out / "results").glob("*.json"))) >= 12
    assert sorted(p.name for p in (out / "notebooks").glob("*.ipynb")) == sorted(
        p.name for p in (clone / "notebooks").glob("[0-9][0-9]_*.ipynb")
    )
    status = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True, text=True, check=True)
    assert status.stdout == ""  # nothing committed was touched; the rerun's folder is ignored


def test_compare_judges_a_rerun_against_the_committed_seeds(tmp_path, capsys):
    committed, rerun = tmp_path / "committed", tmp_path / "rerun"
    committed.mkdir()
    rerun.mkdir()
    for name, value in (("ablation_box", 0.50), ("ablation_box_seed1", 0.48), ("ablation_box_seed2", 0.49)):
        shutil.copy(REPO / "results" / "ablation_box.json", committed / f"{name}.json")
        payload = json.loads((committed / f"{name}.json").read_text())
        payload["all"]["class_accuracy"] = value
        (committed / f"{name}.json").write_text(json.dumps(payload))
    for value, verdict in ((0.485, "same"), (0.53, "higher"), (0.40, "lower")):
        payload["all"]["class_accuracy"] = value
        (rerun / "ablation_box.json").write_text(json.dumps(payload))
        assert main(["compare", str(rerun), "--committed", str(committed), "--out", str(tmp_path / "c.md")]) == 0
        row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| ablation_box |"))
        assert f"| {value * 100:.1f} / 49.0 / 62.3 |" in row and row.endswith(f"| 2.0 | {verdict} |")
    assert main(["compare", str(tmp_path)]) == 1  # no results of the paper's experiments there
    assert main(["compare", str(tmp_path / "missing")]) == 1
