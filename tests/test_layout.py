"""The package's rooms and their one-way data flow (README, Layout): each room imports only the
rooms above it, and the report layer reads runs but never trains one."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rpl"
# Each room, and the rooms below it in the data flow that it must not import.
BELOW = {
    "data": {"proposals", "ops", "models", "runs", "report", "experiments"},
    "proposals": {"ops", "models", "runs", "report", "experiments"},
    "ops": {"proposals", "models", "runs", "report", "experiments"},
    "models": {"runs", "report", "experiments"},
    "runs": {"report", "experiments"},
}


def imports(path: Path) -> list[tuple[str, set[str]]]:
    """(absolute module, imported names) of every import in one module of the package."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    package = module[:-1]  # a module's package, an __init__'s own
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else ()
            name = ".".join([*base, *(node.module.split(".") if node.module else [])])
            out.append((name, {a.name for a in node.names}))
        elif isinstance(node, ast.Import):
            out.extend((a.name, set()) for a in node.names)
    return out


def room_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "rpl" and len(parts) > 1 else None


@pytest.mark.parametrize("room", sorted(BELOW))
def test_rooms_import_only_the_rooms_above(room):
    files = sorted((PACKAGE / room).glob("*.py"))
    assert files, room
    for path in files:
        for module, names in imports(path):
            targets = {room_of(module)} | (names if module == "rpl" else set())
            assert not targets & BELOW[room], f"{path.relative_to(PACKAGE)} imports {module} {sorted(names)}"


def test_the_report_layer_never_trains():
    files = sorted((PACKAGE / "report").glob("*.py"))
    assert len(files) >= 5
    for path in files:
        for module, names in imports(path):
            assert not module.endswith("runs.loop"), f"{path.name} imports {module}"
            assert not names & {"train", "reproduce"}, f"{path.name} imports {sorted(names)} from {module}"
    modules = ", ".join(f"rpl.report.{p.stem}" for p in files if p.stem != "__init__")
    code = f"import sys, {modules}; print(sorted(m for m in sys.modules if m.startswith('rpl.runs')))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "rpl.runs.loop" not in loaded, loaded
