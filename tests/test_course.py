"""python -m rpl notebooks: the notebooks in order, in their own folder, with the environment
given, each timed; a failing notebook stops the sequence and writes nothing."""

import json

import nbformat
import pytest

from rpl.__main__ import main
from rpl.course import notebooks


def _notebook(path, source):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, str(path))


def test_notebooks_run_in_order_with_their_environment_and_times(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    order = tmp_path / "order.txt"
    for name in ("01_b", "00_a"):
        _notebook(
            folder / f"{name}.ipynb",
            "import os, pathlib\n"
            f"open({str(order)!r}, 'a').write('{name} ' + os.environ['RPL_QUICK'] + ' ' + os.environ['RPL_RUNS'] + "
            "' ' + pathlib.Path.cwd().name + '\\n')",
        )
    (folder / "notes.ipynb").write_text("not a course notebook")  # no NN_ prefix: left alone
    out, times = tmp_path / "out", tmp_path / "times.json"
    argv = ["notebooks", "--folder", str(folder), "--quick", "--output-dir", str(out), "--times", str(times)]
    assert main([*argv, "--env", "RPL_RUNS=/somewhere"]) == 0
    assert order.read_text().splitlines() == ["00_a 1 /somewhere nb", "01_b 1 /somewhere nb"]
    assert [p.name for p in notebooks(out)] == ["00_a.ipynb", "01_b.ipynb"]
    assert nbformat.read(str(out / "00_a.ipynb"), as_version=4).cells[0].execution_count == 1
    recorded = json.loads(times.read_text())
    assert set(recorded["quick"]["seconds"]) == {"00_a.ipynb", "01_b.ipynb"} and "git_commit" in recorded["quick"]


def test_a_failing_notebook_stops_the_sequence(tmp_path):
    folder = tmp_path / "nb"
    folder.mkdir()
    _notebook(folder / "00_bad.ipynb", "raise RuntimeError('broken on purpose')")
    _notebook(folder / "01_next.ipynb", "print('never')")
    with pytest.raises(Exception, match="broken on purpose"):
        main(["notebooks", "--folder", str(folder), "--output-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())
    assert main(["notebooks", "--folder", str(tmp_path / "empty")]) == 1
