"""rpl.files: atomic writes leave the target whole or untouched; locks exclude other processes."""

import json
import os
import subprocess
import sys
import time

import pytest

from rpl.files import FileLock, atomic, remove_temporaries, temporary, write_json

HOLD = """
import sys, time
from rpl.files import FileLock
lock = FileLock(sys.argv[1])
assert lock.acquire()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.json"
    write_json(path, {"a": 1})
    with pytest.raises(RuntimeError), atomic(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.json"]


def test_remove_temporaries_removes_every_process_s_and_nothing_else(tmp_path):
    path = tmp_path / "x.npz"
    path.write_text("whole")
    (tmp_path / ".x.npz.12345.tmp").write_text("a dead writer's")
    temporary(path).write_text("ours")
    (tmp_path / ".y.npz.1.tmp").write_text("another file's")
    remove_temporaries(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".y.npz.1.tmp", "x.npz"]


def _holder(path, seconds):
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_by_another_process_is_refused_and_names_it(tmp_path):
    path = tmp_path / "run" / ".lock"
    proc = _holder(path, 30)
    try:
        lock = FileLock(path)
        assert not lock.acquire() and lock.holder() == str(proc.pid)
        with FileLock(path) as mine:
            assert not mine
    finally:
        proc.kill()
        proc.wait()
    with FileLock(path) as mine:  # the kernel released the dead holder's lock
        assert mine and FileLock(path).holder() == str(os.getpid())


def test_a_blocking_lock_waits_for_the_holder(tmp_path):
    path = tmp_path / ".lock"
    proc = _holder(path, 1.0)
    start = time.monotonic()
    with FileLock(path, blocking=True) as mine:
        waited = time.monotonic() - start
    proc.wait()
    assert mine and waited > 0.3
