"""The benchmark scripts run (on a few images); their numbers are measured by hand, not here."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_selective_search_benchmark_runs(real_siftflow, tmp_path):
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "selective_search.py"),
        "--time-images",
        "2",
        "--abo-images",
        "3",
        "--out",
        str(out),
    ]
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "ratio ours/OpenCV" in printed
    result = json.loads(out.read_text())
    assert result["time_images"] == 2 and result["abo_images"] == 3
    assert 0 < result["average_best_overlap_masks"]["all three"] <= 1
    assert result["git_commit"] and result["machine"]


def test_ops_benchmark_runs(real_siftflow, tmp_path):
    out = tmp_path / "ops.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "ops.py"), "--repeats", "1", "--out", str(out)]
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "free-form pool" in printed and "region-to-pixel" in printed
    result = json.loads(out.read_text())
    assert len(result["rows"]) == 4 and result["device"] == "cpu"
    assert {r["regions"] for r in result["rows"]} == {370, 1100}


def test_train_throughput_benchmark_runs(real_siftflow, tmp_path, monkeypatch):
    monkeypatch.setenv("RPL_WEIGHTS", str(real_siftflow.parent / "weights"))
    monkeypatch.setenv("RPL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "throughput.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "train_throughput.py"),
        "--preset",
        "quick",
        "--images",
        "2",
        "--out",
        str(out),
    ]
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "training images/s" in printed
    assert json.loads(out.read_text())["images_per_s"] > 0


def test_backbone_batching_benchmark_runs(real_siftflow, tmp_path, monkeypatch):
    monkeypatch.setenv("RPL_WEIGHTS", str(real_siftflow.parent / "weights"))
    out = tmp_path / "batching.json"
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "backbone_batching.py"),
        "--images",
        "2",
        "--repeats",
        "1",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    printed = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    assert "output stride 8, 256 px" in printed and "channels_last" in printed
    result = json.loads(out.read_text())
    assert set(result["seconds_per_image"]) == {"os16_256px", "os8_256px", "os16_600px"} and result["images"] == 2
