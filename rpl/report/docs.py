"""The README and docs/ from templates, so that every number in their prose is read from
``results/`` when they are written, never typed by hand.

    python -m rpl docs            # docs/templates/*.md -> README.md and docs/*.md
    python -m rpl docs --check    # exit 1 if a written file differs from its template's rendering

A template is Markdown with ``{{ expression }}`` fields, each replaced by its value: a number
is written with one decimal, or with the format after ``|`` (``{{ minutes("e2s2_cpu") | .0f }}``).
An expression is Python over these functions of an experiment (the mean of its seeds' results
files) or a run (one results file):

* ``cls``, ``glob``, ``bnd``, ``miou``: class-average accuracy, global accuracy, class-average
  accuracy within 4 px of a boundary, mean IoU, in percent;
* ``lo``, ``hi`` (``measure, name``): the lowest and highest seed, ``seeds(name)`` their count;
* ``classes_ahead(a, b, count=5)``: the classes on which ``a`` leads ``b`` most, with the
  lead in points (means over seeds);
* ``minutes(name)``: training time in minutes (mean over seeds);
* ``paper(table, row, measure)``: the paper's number (:mod:`rpl.report.paper`);
* ``pct(file, *keys)`` and ``val(file, *keys)``: a value inside any JSON file of ``results/``
  (``pct`` times 100); a list index is an integer key;
* ``experiments(preset, group="paper")``: the experiments of a preset and group with results;
* ``nbtime(notebook, mode="full")``: how long the notebook ran (``results/notebook_times.json``,
  ``python -m rpl notebooks --times``), ``duration(seconds)`` any time in s or min;
* ``verdicts()``: the paper's comparisons and whether ours reproduce them, as a Markdown table
  (:func:`rpl.report.claims.claims`); ``tables()``: every table beside the paper
  (:func:`rpl.report.tables.markdown`); ``diagnosis_table()``: every diagnosis run
  (:func:`rpl.report.diagnostics.recipe_markdown`); ``head_table()``: the frozen-versus-fine-tuned table of the heads
  (:func:`rpl.report.diagnostics.head_table`); ``gradient_rows()``: the gradient
  measurement's table rows (``results/gradients.json``).

``README.md``'s template is ``docs/templates/README.md``; ``docs/<name>.md``'s is
``docs/templates/<name>.md``. The written files start with a comment naming their template.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from ..experiments import EXPERIMENTS, load_results, seed_results
from ..files import write_text
from .paper import PAPER
from .tables import measure

__all__ = ["render", "render_all", "TEMPLATES"]

TEMPLATES = Path("docs/templates")
FIELD = re.compile(r"\{\{(.+?)\}\}", re.S)
MEASURES = {"cls": "class_accuracy", "glob": "global_accuracy", "bnd": "boundary_class_accuracy", "miou": "mean_iou"}


def _namespace(results_dir) -> dict:
    results_dir = Path(results_dir)
    results = load_results(results_dir)

    def payloads(name: str) -> list:
        found = seed_results(results, name)
        if not found:
            raise ValueError(f"no results file for {name!r} in {results_dir}")
        return found

    def values(key: str, name: str) -> list:
        return [measure(p, key) for p in payloads(name)]

    def mean(key):
        return lambda name: sum(values(key, name)) / len(values(key, name))

    def per_class(name: str) -> dict:
        found = payloads(name)
        classes = [c for c, v in found[0]["all"]["per_class_accuracy"].items() if v is not None]
        return {c: 100 * sum(p["all"]["per_class_accuracy"][c] for p in found) / len(found) for c in classes}

    def classes_ahead(a: str, b: str, count: int = 5) -> str:
        """The ``count`` classes on which ``a`` leads ``b`` most (means over seeds), with the lead."""
        mine, theirs = per_class(a), per_class(b)
        lead = sorted(((mine[c] - theirs[c], c) for c in mine if c in theirs), reverse=True)[:count]
        return ", ".join(f"{c} ({d:+.0f})" for d, c in lead if d > 0)

    def read(file: str, *keys):
        value = json.loads((results_dir / file).read_text())
        for key in keys:
            value = value[key]
        return value

    def verdicts() -> str:
        from .claims import claims
        from .tables import markdown_table

        table = claims(results).drop(columns=["A", "B"])
        return markdown_table(table).rstrip("\n")

    def head_table() -> str:
        from .diagnostics import head_table as table
        from .tables import markdown_table

        return markdown_table(table(results_dir)).rstrip("\n")

    def gradient_rows() -> str:
        from .diagnostics import gradient_rows as rows

        return rows(read("gradients.json"))

    def diagnosis_table() -> str:
        from .diagnostics import recipe_markdown

        return recipe_markdown(results_dir).rstrip("\n")

    def tables() -> str:
        from .tables import markdown

        return markdown(results_dir).rstrip("\n")

    def duration(seconds: float) -> str:
        return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"

    def nbtime(name: str, mode: str = "full") -> str:
        times = read("notebook_times.json")
        if mode not in times or name not in times[mode]["seconds"]:
            return "not measured"
        return duration(times[mode]["seconds"][name])

    space = {short: mean(key) for short, key in MEASURES.items()}
    space |= {
        "lo": lambda short, name: min(values(MEASURES[short], name)),
        "hi": lambda short, name: max(values(MEASURES[short], name)),
        "seeds": lambda name: len(payloads(name)),
        "minutes": lambda name: sum(p["train_seconds"] for p in payloads(name)) / len(payloads(name)) / 60,
        "paper": lambda table, row, key: PAPER[(table, row)][MEASURES.get(key, key)],
        "pct": lambda file, *keys: 100 * read(file, *keys),
        "val": read,
        "verdicts": verdicts,
        "classes_ahead": classes_ahead,
        "nbtime": nbtime,
        "duration": duration,
        "experiments": lambda preset, group="paper": [
            e.name
            for e in EXPERIMENTS.values()
            if e.preset == preset and e.group == group and any(run in results for run, _ in e.runs())
        ],
        "tables": tables,
        "diagnosis_table": diagnosis_table,
        "gradient_rows": gradient_rows,
        "head_table": head_table,
        "abs": abs,
        "sum": sum,
        "min": min,
        "max": max,
    }
    return space


def render(text: str, results_dir="results", source: str = "template") -> str:
    """``text`` with every ``{{ expression }}`` replaced by its value (see the module docstring);
    a field that cannot be evaluated raises ValueError naming ``source`` and the field."""
    space = _namespace(results_dir)

    def value(match) -> str:
        expression, bar, spec = match.group(1).rpartition("|")
        if not bar:
            expression, spec = spec, ""
        try:
            result = eval(expression.strip(), {"__builtins__": {}, **space})  # our own templates only
        except Exception as e:
            raise ValueError(f"{source}: {{{{{match.group(1).strip()}}}}}: {e}") from None
        if isinstance(result, float):
            if math.isnan(result):
                return "–"
            return format(result, spec.strip() or ".1f")
        return format(result, spec.strip()) if spec.strip() else str(result)

    return FIELD.sub(value, text)


def _target(template: Path, root: Path) -> Path:
    return root / "README.md" if template.name == "README.md" else root / "docs" / template.name


def render_all(root=".", results_dir=None, check: bool = False) -> list[Path]:
    """Render every template under ``root/docs/templates``; write the files that changed (or,
    with ``check``, only report them). Returns the files that differ(ed) from their rendering."""
    root = Path(root)
    results_dir = Path(results_dir) if results_dir is not None else root / "results"
    rendered = {}  # every template first: an error in one leaves every file as it was
    for template in sorted((root / TEMPLATES).glob("*.md")):
        header = f"<!-- written by `python -m rpl docs` from {TEMPLATES / template.name}: edit that file -->\n"
        rendered[_target(template, root)] = header + render(template.read_text(), results_dir, str(template))
    changed = [target for target, text in rendered.items() if not target.is_file() or target.read_text() != text]
    if not check:
        for target in changed:
            write_text(target, rendered[target])
    return changed
