"""environment.yml (conda) and pyproject.toml (pip) must ask for the same packages."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch", "opencv-contrib-python-headless": "opencv"}


def requirement(spec: str) -> tuple[str, str]:
    name, bound = re.fullmatch(r"([A-Za-z0-9_.-]+)\s*(>=\s*[\d.]+)?", spec.strip()).groups()
    return name.lower(), (bound or "").replace(" ", "")


def test_conda_environment_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip = dict(requirement(s) for s in project["dependencies"] + project["optional-dependencies"]["dev"])
    conda = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("\ndependencies:\n", 1)[1].splitlines():
        m = re.fullmatch(r"  - ([A-Za-z0-9_.-]+(?:>=[\d.]+)?)\s*(#.*)?", line)
        if m and m.group(1) != "pip":
            name, bound = requirement(m.group(1))
            conda[name] = bound
    assert conda.pop("python") == project["requires-python"]
    assert conda == {CONDA_NAMES.get(n, n): b for n, b in pip.items()}
