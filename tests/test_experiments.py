"""The experiment list, `reproduce` (resumable, locked), the paper tables and the figures."""

import itertools
import json
import math
from pathlib import Path

import pytest

from rpl import experiments
from rpl.__main__ import main
from rpl.experiments import EXPERIMENTS, reproduce, run_lock, run_names
from rpl.report import paper, tables
from rpl.report.claims import CLAIMS
from rpl.report.claims import claims as verdicts_of
from rpl.report.figures import FIGURES
from rpl.runs import PRESETS, TrainConfig
from rpl.runs.frozen import backbone_hash


def test_every_experiment_is_a_valid_configuration():
    for experiment in EXPERIMENTS.values():
        for name, seed in experiment.runs():
            cfg = experiment.config(seed)
            assert isinstance(cfg, TrainConfig) and cfg.seed == seed and cfg.preset == experiment.preset
            quick = experiment.config(seed, quick=True)
            assert quick.preset == "quick" and (quick.pooling, quick.combine) == (cfg.pooling, cfg.combine)
    assert len(set(run_names())) == len(run_names())
    assert EXPERIMENTS["ablation_baseline"].config().model_config().pooling == "box"


def test_the_recipe_chain_changes_one_thing_per_row_and_shares_the_paper_rows_it_names():
    import dataclasses

    chain = experiments.RECIPE_CHAIN
    steps = chain[: len(experiments._STEPS)]
    assert [e.name for e in steps][:2] == ["recipe0_legacy", "recipe1_centred"]
    # a chain row named after a paper experiment is that run: same configuration
    shared = [e for e in chain if EXPERIMENTS[e.name].group == "paper"]
    assert {e.name for e in shared} == {"ablation_free-form", "ablation_both-separate"}
    for e in shared:
        for seed in EXPERIMENTS[e.name].seeds:
            assert e.config(seed) == EXPERIMENTS[e.name].config(seed), e.name
    # step 2 is the ablation preset itself, and each lever changes one setting of it
    default = dataclasses.asdict(EXPERIMENTS["ablation_free-form"].config())
    assert default == dataclasses.asdict(PRESETS["ablation"]) | {"seed": 0}
    for e in chain[len(steps) :]:
        changed = {k for k, v in dataclasses.asdict(e.config()).items() if default[k] != v}
        assert changed == {c.split("=")[0] for c in e.overrides}, e.name
    for before, after in zip(steps, steps[1:]):
        a, b = dataclasses.asdict(before.config()), dataclasses.asdict(after.config())
        changed = {k for k in a if a[k] != b[k]}
        assert changed and changed == {o.split("=")[0] for o in after.overrides} - {
            o.split("=")[0] for o in before.overrides if o in after.overrides
        }, after.name
    legacy = steps[0].config()
    assert (legacy.alignment, legacy.train_regions, legacy.proposal_iou, legacy.epochs) == ("legacy", "exact", 0, 10)
    others = {e.name for e in chain if e not in shared}
    assert not set(run_names(groups=("paper",))) & others
    assert all(EXPERIMENTS[n].group == "diagnosis" for n in others)


def test_stale_names_the_settings_that_differ_and_ignores_region_settings_of_an_fcn():
    import dataclasses

    from rpl.experiments import _stale

    def saved(cfg):  # as a results file holds it
        return json.loads(json.dumps(dataclasses.asdict(cfg)))

    fcn = EXPERIMENTS["fcn_cpu"].config()
    other = saved(fcn) | {"mask": "bins", "proposal_iou": 0.5, "color_spaces": ["rgb"]}
    assert _stale(other, fcn) == ""
    assert _stale(other | {"lr": 0.1}, fcn) == "lr: 0.1 -> 0.0003"
    e2s2 = EXPERIMENTS["e2s2_cpu"].config()
    assert _stale(saved(e2s2), e2s2) == ""
    assert _stale(saved(e2s2) | {"mask": "bins"}, e2s2) == "mask: bins -> cells"
    old = {k: v for k, v in saved(e2s2).items() if k != "alignment"}  # saved before the setting existed
    assert _stale(old, e2s2) == "alignment: legacy -> centred"


def test_close_comparisons_have_two_seeds_and_three_where_the_committed_seeds_spread_more():
    """Where the paper's difference is under 2 points, both sides run at least 2 seeds; 3 where
    the committed results of either side spread more than the paper's difference."""
    results = experiments.load_results(Path(__file__).parents[1] / "results")
    for claim, key, row_a, row_b in CLAIMS:
        a, b = tables.OURS[row_a], tables.OURS[row_b]
        published = paper.PAPER.get(row_a, {}).get(key, math.nan) - paper.PAPER.get(row_b, {}).get(key, math.nan)
        if abs(published) < 2:
            assert len(EXPERIMENTS[a].seeds) >= 2 and len(EXPERIMENTS[b].seeds) >= 2, claim
            spread = max(
                tables._ours(results, e, key)["ours_max"] - tables._ours(results, e, key)["ours_min"] for e in (a, b)
            )
            if spread > abs(published):  # one seed run: 0; none: NaN, which compares False
                assert len(EXPERIMENTS[a].seeds) >= 3 and len(EXPERIMENTS[b].seeds) >= 3, claim


def test_every_paper_row_maps_to_an_experiment():
    for key, experiment in tables.OURS.items():
        assert experiment in EXPERIMENTS, key
    for _, _, row_a, row_b in CLAIMS:
        a, b = tables.OURS[row_a], tables.OURS[row_b]
        assert a in EXPERIMENTS and b in EXPERIMENTS


def test_reproduce_quick_writes_results_skips_finished_and_locked_runs(env, monkeypatch):
    runs, results = env / "runs", env / "results"
    lines = []
    commits = itertools.chain(["at the start"], itertools.repeat("edited while training"))
    real_provenance = experiments.provenance
    monkeypatch.setattr(
        experiments, "provenance", lambda **extra: real_provenance(**extra) | {"git_commit": next(commits)}
    )
    assert reproduce(runs, results, quick=True, only=["ablation_box"], progress=False, log=lines.append) == [
        "ablation_box"
    ]
    payload = json.loads((results / "ablation_box.json").read_text())
    assert payload["config"]["pooling"] == "box" and payload["config"]["preset"] == "quick"
    assert payload["git_commit"] == "at the start"  # the code the call imported, not the tree at the end
    assert payload["train_seconds"] > 0 and payload["machine"]
    assert set(payload["all"]) >= {"class_accuracy", "global_accuracy", "mean_iou", "per_class_accuracy"}
    assert payload["boundary"]["pixels"] < payload["all"]["pixels"]
    lines.clear()
    assert reproduce(runs, results, quick=True, only=["ablation_box"], progress=False, log=lines.append) == []
    assert "done" in lines[0]
    # a results file from other settings (here: before the recipe options existed) is not done
    del payload["config"]["alignment"]
    (results / "ablation_box.json").write_text(json.dumps(payload))
    lines.clear()
    assert reproduce(runs, results, quick=True, only=["ablation_box"], progress=False, log=lines.append) == []
    assert "made with other settings (alignment: legacy -> centred); delete it" in lines[0]
    # without its results file, a run folder from other settings is not evaluated as this experiment's
    (results / "ablation_box.json").unlink()
    saved = json.loads((runs / "ablation_box" / "config.json").read_text())
    (runs / "ablation_box" / "config.json").write_text(json.dumps({**saved, "pooling": "free-form"}))
    lines.clear()
    assert reproduce(runs, results, quick=True, only=["ablation_box"], progress=False, log=lines.append) == []
    assert "holds a run with other settings (pooling: free-form -> box); delete it" in lines[0]
    assert not (results / "ablation_box.json").exists()
    with run_lock(runs / "ablation_unbalanced") as mine:  # another process holds this run
        assert mine
        lines.clear()
        assert reproduce(runs, results, quick=True, only=["ablation_unbalanced"], log=lines.append) == []
        assert "another process" in lines[0]
    assert not (results / "ablation_unbalanced.json").exists()
    with pytest.raises(ValueError, match="unknown experiments"):
        reproduce(runs, results, only=["table9"])


def test_the_transfer_test_trains_its_source_first_and_reads_its_frozen_backbone(env):
    """transfer_fcn starts from the backbone fcn_cpu trained (its run folder, trained first when
    it is not there), frozen; its features are cached apart from ImageNet's."""
    import torch

    runs, results, lines = env / "runs", env / "results", []
    assert reproduce(runs, results, quick=True, only=["transfer_fcn"], progress=False, log=lines.append) == [
        "transfer_fcn"
    ]
    assert any(f"training {runs / 'fcn_cpu'} first" in line for line in lines)
    payload = json.loads((results / "transfer_fcn.json").read_text())
    assert payload["config"]["weights"] == str(runs / "fcn_cpu") and payload["config"]["freeze_backbone"]
    source = torch.load(runs / "fcn_cpu" / "checkpoint.pt", weights_only=True)["model"]
    trained = torch.load(runs / "transfer_fcn" / "checkpoint.pt", weights_only=True)["model"]
    backbone = [k for k in source if k.startswith("backbone.")]
    assert backbone and all(torch.equal(source[k], trained[k]) for k in backbone)
    assert not all(torch.equal(source[k], trained[k]) for k in source if k.startswith("score"))
    cached = sorted(p.name for p in (env / "cache" / "features").rglob("*.npy"))
    digest = backbone_hash({k.removeprefix("backbone."): v for k, v in source.items() if k.startswith("backbone.")})
    assert payload["source_backbone"] == {"run": str(runs / "fcn_cpu"), "backbone_sha1": digest}
    assert any(f"-run{digest}-" in name for name in cached), cached  # filed under the trained weights
    assert not (results / "fcn_cpu.json").exists()  # the source is trained, not evaluated
    assert all(not EXPERIMENTS[e.backbone_from].backbone_from for e in EXPERIMENTS.values() if e.backbone_from)
    # The source retrained since: the transfer's result is stale, its run cannot resume on it.
    state = torch.load(runs / "fcn_cpu" / "checkpoint.pt", weights_only=True)
    state["model"][backbone[0]] += 1
    torch.save(state, runs / "fcn_cpu" / "checkpoint.pt")
    lines.clear()
    assert reproduce(runs, results, quick=True, only=["transfer_fcn"], progress=False, log=lines.append) == []
    assert f"{runs / 'fcn_cpu'} was retrained since" in lines[0]
    (results / "transfer_fcn.json").unlink()
    (runs / "transfer_fcn" / "train.json").unlink()
    with pytest.raises(ValueError, match="started from another backbone than weights="):
        reproduce(runs, results, quick=True, only=["transfer_fcn"], progress=False, log=lines.append)


def test_reproduce_skips_experiments_whose_data_is_missing(env, monkeypatch):
    lines = []
    monkeypatch.setenv("RPL_DATA", str(env / "nowhere"))
    assert reproduce(env / "runs", env / "results", quick=True, only=["pascal-context_cpu"], log=lines.append) == []
    assert "skipped, its data is not here" in lines[0] and "PASCAL Context" in lines[0]


def _write_result(folder, name, class_accuracy, global_accuracy=0.5, boundary=0.3, preset="ablation"):
    part = lambda acc: {
        "class_accuracy": acc,
        "global_accuracy": global_accuracy,
        "mean_iou": 0.2,  # noqa: E731
        "per_class_accuracy": {},
    }
    payload = {
        "all": part(class_accuracy),
        "boundary": part(boundary),
        "train_seconds": 60.0,
        "config": {"preset": preset, "epochs": 3},
    }
    (folder / f"{name}.json").write_text(json.dumps(payload))


def test_tables_and_claims_from_results_files(tmp_path):
    for name, seeds in (
        ("ablation_free-form", (0.40, 0.44, 0.42)),
        ("ablation_box", (0.30, 0.31, 0.305)),
        ("ablation_both-tied", (0.41, 0.43, 0.42)),
    ):
        for seed, accuracy in enumerate(seeds):
            _write_result(tmp_path, name if seed == 0 else f"{name}_seed{seed}", accuracy)
    _write_result(tmp_path, "ablation_softmax-max", 0.50)
    _write_result(tmp_path, "ablation_rectangles", 0.35, preset="quick")
    frames = tables.all_tables(tmp_path)
    t4 = frames["Table 4"].set_index("row")
    assert t4.loc["Free-form (region)", "ours"] == pytest.approx(42.0)
    assert (t4.loc["Free-form (region)", "ours_min"], t4.loc["Free-form (region)", "seeds"]) == (40.0, 3)
    assert t4.loc["Free-form (region)", "paper"] == 62.8
    assert t4.loc["Purely rectangular", "preset"] == "quick"  # the preset the run used
    assert t4.loc["Region + box, separate", "preset"] == "ablation"  # not run: the experiment's
    assert math.isnan(t4.loc["Region + box, separate", "ours"])
    assert t4.loc["Box (bbox)", "results"] == ", ".join(
        f"{tmp_path}/ablation_box{s}.json" for s in ("", "_seed1", "_seed2")
    )
    shown = tables.pretty(frames["Table 4"]).set_index("row")
    assert shown.loc["Free-form (region)", "ours"] == "42.0 (40.0–44.0)"
    assert shown.loc["Free-form (region)", "ours - paper"] == "-20.8"
    verdicts = verdicts_of(tables.load_results(tmp_path)).set_index("A")["reproduces"]
    assert verdicts["ablation_both-tied"] == "within noise"  # 42 vs 42, spread 4
    claims = verdicts_of(tables.load_results(tmp_path)).set_index("B")
    assert claims.loc["ablation_box", "reproduces"] == "yes"  # +11.5 against a spread of 4
    assert claims.loc["ablation_softmax-max", "reproduces"] == "no"  # softmax first is better here
    assert claims.loc["ablation_superpixels", "reproduces"] == ""  # not run
    _write_result(tmp_path, "ablation_both-separate", 0.90)  # seeds 1 and 2 still missing: no verdict yet
    claims = verdicts_of(tables.load_results(tmp_path)).set_index("claim")
    assert claims.loc["separate beats tied weights (Table 4)", "ours A - B"] == "48.0"
    assert claims.loc["separate beats tied weights (Table 4)", "reproduces"] == ""
    text = tables.markdown(tmp_path)
    assert "| Table 4 | Free-form (region) | class acc. | 62.8 | 42.0 (40.0–44.0) |" in text
    # a literature row on one line; the paper's PASCAL Context rows say why ours are missing
    assert "| Table 1 | Long et al. (FCN) [23] 2015 | class / global / mIoU | 51.7 / 85.2 / 39.5 | – |" in text
    assert "| Table 3 | FCN-16s, PASCAL Context | class acc. | 48.1 | – |  | needs the PASCAL Context" in text


def test_claims_between_single_runs_are_judged_against_their_presets_seed_spread(tmp_path):
    """Two single runs: the noise is the largest seed range, in the claim's measure, of any
    experiment of their preset with several seeds (here ablation_box's 3 global points)."""
    from rpl.experiments import seed_ranges

    for seed, accuracy in enumerate((0.50, 0.53)):
        _write_result(tmp_path, "ablation_box" + (f"_seed{seed}" if seed else ""), 0.3, global_accuracy=accuracy)
    _write_result(tmp_path, "ablation_box-unbalanced", 0.3, global_accuracy=0.62)
    _write_result(tmp_path, "ablation_baseline", 0.3, global_accuracy=0.60)
    results = tables.load_results(tmp_path)
    assert seed_ranges(results, "global_accuracy") == {"ablation": pytest.approx(3.0)}
    claim = "end to end beats the baseline, both box pooling (Sec. 4.3)"
    row = verdicts_of(results).set_index("claim").loc[claim]
    assert (row["ours A - B"], row["seed range"], row["reproduces"]) == ("2.0", "3.0", "within noise")
    _write_result(tmp_path, "ablation_baseline", 0.3, global_accuracy=0.55)
    assert verdicts_of(tables.load_results(tmp_path)).set_index("claim").loc[claim, "reproduces"] == "yes"


def _transcribed(md: str, title: str) -> list[tuple]:
    """(method [ref] year, numbers...) of a table of ../shared/paper/tables.md, "Ours" left out."""
    section = md.split(f"## {title} ")[1].split("\n## ")[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] not in ("method", "Ours") and not cells[0].startswith("---"):
            rows.append((f"{cells[0]} {cells[1]} {cells[2]}", *(None if c == "–" else float(c) for c in cells[3:])))
    return rows


def test_literature_rows_are_the_papers():
    md = Path(__file__).parents[2] / "shared" / "paper" / "tables.md"
    if not md.is_file():
        pytest.skip(f"the paper's transcribed tables are not at {md}")
    text = md.read_text()
    assert [r[:3] for r in paper.LITERATURE["Table 1"]] == _transcribed(text, "Table 1")  # class, global
    assert list(paper.LITERATURE["Table 2"]) == _transcribed(text, "Table 2")
    frame = tables.all_tables(Path(__file__).parents[1] / "results")["Table 1"]
    literature = frame[frame["results"] == "(literature)"]
    assert list(dict.fromkeys(literature["row"])) == [r[0] for r in paper.LITERATURE["Table 1"]]
    assert frame["row"].iloc[-1].startswith("Ours")  # ours after the literature, as in the paper


def test_readme_and_docs_are_written_from_the_results_files(monkeypatch):
    """Every number in README.md and docs/ comes from results/: the files equal their templates
    rendered now (python -m rpl docs, from the repository: the tables name files relative to it)."""
    from rpl.report.docs import render_all

    monkeypatch.chdir(Path(__file__).parents[1])
    stale = render_all(".", check=True)
    assert not stale, f"{[str(p) for p in stale]} differ from their templates: run python -m rpl docs"


def test_figures_command_writes_every_figure(env, capsys):
    out = env / "figures"
    assert main(["figures", "--quick", "--out", str(out), "--runs", str(env / "quick-runs")]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)
    assert all((out / f).stat().st_size > 10_000 for f in FIGURES)


def test_templates_read_numbers_from_results_files(tmp_path):
    from rpl.report.docs import render

    _write_result(tmp_path, "ablation_box", 0.30)
    _write_result(tmp_path, "ablation_box_seed1", 0.36)
    _write_result(tmp_path, "e2s2_cpu", 0.40, preset="cpu")
    text = render(
        'box {{ cls("ablation_box") }}% ({{ lo("cls", "ablation_box") }}-{{ hi("cls", "ablation_box") | .0f }}, '
        '{{ seeds("ablation_box") }} seeds); gap {{ cls("e2s2_cpu") - cls("ablation_box_seed1") }}; '
        'paper {{ paper("Table 4", "Box (bbox)", "cls") }}',
        tmp_path,
    )
    assert text == "box 33.0% (30.0-36, 2 seeds); gap 4.0; paper 62.3"
    assert "| Table 4 | Box (bbox) | class acc. | 62.3 | 33.0 (30.0–36.0) |" in render("{{ tables() }}", tmp_path)
    with pytest.raises(ValueError, match=r"doc: \{\{cls\(\"fcn_cpu\"\)\}\}: no results file for 'fcn_cpu'"):
        render('{{cls("fcn_cpu")}}', tmp_path, source="doc")
