"""Training and evaluation on the quick preset with the real data and weights."""

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from rpl.__main__ import main
from rpl.data import SIFTFLOW_CLASSES
from rpl.runs import PRESETS, TrainConfig, evaluate, train


def test_quick_train_and_evaluate(env, capsys):
    assert main(["train", "--preset", "quick", "--out", str(env / "run")]) == 0
    assert "trained 1 epochs on 10 images" in capsys.readouterr().out
    log = [json.loads(line) for line in (env / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(entry["loss"] > 0 for entry in log)
    assert main(["evaluate", str(env / "run"), "--results", str(env / "result.json")]) == 0
    metrics = json.loads((env / "run" / "metrics.json").read_text())
    assert metrics["images"] == 5 and 0 <= metrics["all"]["class_accuracy"] <= 1
    assert metrics["boundary"]["pixels"] < metrics["all"]["pixels"]
    result = json.loads((env / "result.json").read_text())
    assert result["git_commit"] and result["config"]["preset"] == "quick"
    # a second train into the same folder must not overwrite it
    assert main(["train", "--preset", "quick", "--out", str(env / "run")]) == 1
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "model, options",
    [
        ("baseline", []),
        ("fcn", []),
        ("e2s2", ["regions=rectangles", "train_regions=boxes"]),
        ("e2s2", ["regions=superpixels", "loss=unbalanced"]),
    ],
)
def test_other_models_and_variants_train(env, model, options):
    cfg = PRESETS["quick"].with_overrides([f"model={model}", "train_images=5", "test_images=2", *options])
    summary = train(cfg, env / "run", progress=False)
    assert summary["train_images"] == 5
    if cfg.regions != "selective-search":  # derived once per image and colour space, then read
        derived = list((env / "cache" / "proposals").glob(f"siftflow/*/{cfg.regions}/*/*.npz"))
        assert len(derived) == 5
    metrics = evaluate(env / "run", progress=False)
    assert metrics["images"] == 2
    if model == "fcn":  # the training split means the images it trained on, wrote no file
        (env / "run" / "metrics.json").unlink()
        fit = evaluate(env / "run", "train", progress=False)
        assert fit["images"] == 5 and fit["split"] == "train"
        assert evaluate(env / "run", "train", images=2, progress=False)["images"] == 2
        assert not (env / "run" / "metrics.json").exists()


def test_training_regions_follow_the_recipe(real_siftflow):
    """At training: proposals with a best IoU of at least proposal_iou (the best one always
    kept), then the ground truth as train_regions says; at test, every proposal and no ground
    truth."""
    from rpl.data import SiftFlow
    from rpl.proposals import selective_search
    from rpl.runs import prepare

    sample = SiftFlow("train", real_siftflow.parent)[5]
    proposals = selective_search(sample.image)
    iou = proposals.ground_truth_iou(sample.label)
    assert (iou < 0.1).any()  # the filter has something to do on this image
    for cfg in (PRESETS["cpu"], PRESETS["cpu"].with_overrides(["proposal_iou=0.3", "train_regions=exact"])):
        _, label, regions = prepare(sample, proposals, cfg, False, training=True)
        kept = ~regions.is_ground_truth
        assert kept.sum() == ((iou >= cfg.proposal_iou) | (iou == iou.max())).sum()
        assert (regions.subset(kept).ground_truth_iou(label) >= cfg.proposal_iou).all()
        expected = proposals.with_ground_truth(label, cfg.train_regions)
        assert regions.is_ground_truth.sum() == expected.is_ground_truth.sum()
    _, _, test_regions = prepare(sample, proposals, PRESETS["cpu"], False, training=False)
    assert len(test_regions) == len(proposals) and not test_regions.is_ground_truth.any()
    # purely rectangular (Table 4): the ground truth is added as boxes, flipped or not
    for flip in (False, True):
        rectangular = PRESETS["cpu"].with_overrides(["regions=rectangles", "train_regions=boxes"])
        _, label, rects = prepare(sample, proposals, rectangular, flip, training=True)
        assert rects.is_ground_truth.sum() > 0 and len(rects) == len(proposals) + rects.is_ground_truth.sum()
        for mask in rects.masks():
            ys, xs = np.nonzero(mask)
            assert mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()


def test_checkpoints_from_before_the_recipe_options_load_as_trained(env):
    cfg = PRESETS["quick"].with_overrides(["train_images=2", "test_images=1", "epochs=1"])
    train(cfg, env / "run", progress=False)
    state = torch.load(env / "run" / "checkpoint.pt", weights_only=False)
    for key in ("alignment", "train_regions", "proposal_iou", "mask", "output_stride"):
        del state["config"][key]
    assert state.pop("classes") == list(SIFTFLOW_CLASSES) and state.pop("proposals")["k"] == 100  # saved since issue 14
    torch.save(state, env / "run" / "checkpoint.pt")
    from rpl.proposals import ProposalConfig
    from rpl.runs import open_run

    model, old, classes, proposals, _ = open_run(env / "run")
    assert (old.alignment, old.train_regions, old.proposal_iou, old.mask) == ("legacy", "exact", 0.0, "cells")
    assert model.num_classes == 33 and classes == list(SIFTFLOW_CLASSES)
    assert proposals == ProposalConfig(k=100, min_region_size=100)  # the registry's
    with pytest.raises(ValueError, match="another configuration"):  # not resumed under the new recipe
        train(cfg, env / "run", resume=True, progress=False)


def test_overrides_are_typed_and_checked():
    cfg = PRESETS["cpu"].with_overrides(["epochs=3", "lr=0.01", "flip=false", "color_spaces=rgb,lab"])
    assert (cfg.epochs, cfg.lr, cfg.flip, cfg.color_spaces) == (3, 0.01, False, ("rgb", "lab"))
    with pytest.raises(ValueError, match="key=value"):
        cfg.with_overrides(["nonsense=1"])
    with pytest.raises(ValueError, match="pooling"):
        TrainConfig(pooling="round")
    for bad, match in (
        ("train_regions=pixels", "train_regions"),
        ("train_regions=boxes", "needs regions=rectangles"),
        ("proposal_iou=2", "proposal_iou"),
        ("output_stride=4", "output_stride"),
        ("mask=pixels", "mask"),
        ("alignment=off", "alignment"),
        ("dropout=1", "dropout"),
    ):
        with pytest.raises(ValueError, match=match):
            cfg.with_overrides([bad])


@pytest.mark.parametrize(
    "bad, match",
    [
        ("epochs=-1", r"epochs must be an integer >= 1, got -1"),
        ("epochs=0", "epochs must be"),
        ("epochs=abc", r"epochs takes an integer, got 'abc'"),
        ("images_per_step=0", "images_per_step must be"),
        ("images_per_step=-3", "images_per_step must be"),
        ("train_images=-5", "train_images must be"),
        ("head=-1", "head must be"),
        ("neck=-1", "neck must be"),
        ("lr=nan", "lr must be a finite number > 0"),
        ("lr=inf", "lr must be a finite"),
        ("lr=0", "lr must be"),
        ("lr=x", "lr takes a number"),
        ("head_lr_mult=-1", "head_lr_mult must be"),
        ("weight_decay=nan", "weight_decay must be"),
        ("momentum=1", r"momentum must be in \[0, 1\)"),
        ("color_spaces=", "color_spaces must be"),
        ("color_spaces=rgb,xyz", "color_spaces must be"),
        ("backbone=resnet", "backbone must be one of"),
        ("flip=maybe", "flip takes true or false"),
        ("preset=bogus", "preset must be one of"),
        ("seed=-2", "seed must be"),
        ("image_size=-1", "image_size must be"),
    ],
)
def test_every_setting_is_checked_and_the_error_names_it(bad, match):
    with pytest.raises(ValueError, match=match):
        PRESETS["cpu"].with_overrides([bad])


def test_the_preset_names_are_the_presets():
    from rpl.runs import PRESET_NAMES

    assert tuple(PRESETS) == PRESET_NAMES and all(cfg.preset == name for name, cfg in PRESETS.items())


def test_a_run_folder_takes_one_training_process(env, capsys):
    """While a process trains into a folder, another fails at once naming it, and writes nothing."""
    from rpl.runs import RUN_LOCK
    from rpl.runs.loop import _lock_run

    run = env / "run"
    held = _lock_run(run)  # as a training process holds it
    argv = ["train", "--preset", "quick", "--set", "train_images=2", "--out", str(run)]
    assert main(argv) == 1 and main([*argv, "--resume"]) == 1
    assert f"another process (pid {os.getpid()}) is training this run" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == [RUN_LOCK]
    held.release()
    assert main(argv) == 0  # the lock file alone is no run
    assert main(argv) == 1 and "already holds a run" in capsys.readouterr().err


def test_a_run_that_fails_before_its_first_epoch_leaves_nothing(env, monkeypatch):
    """An error after the folder was made (here: no training data) leaves no config.json or log
    that would make the next attempt demand --resume; a folder that held a run is kept."""
    import rpl.runs.loop

    def broken(*args, **kwargs):
        raise FileNotFoundError("no training images here")

    real = rpl.runs.loop.load_dataset
    monkeypatch.setattr(rpl.runs.loop, "load_dataset", broken)
    cfg = PRESETS["quick"].with_overrides(["train_images=2"])
    with pytest.raises(FileNotFoundError, match="no training images"):
        train(cfg, env / "new", progress=False)
    assert not (env / "new").exists()
    (env / "mine").mkdir()  # a folder the user made stays, empty
    with pytest.raises(FileNotFoundError):
        train(cfg, env / "mine", progress=False)
    assert (env / "mine").is_dir() and not any((env / "mine").iterdir())
    monkeypatch.setattr(rpl.runs.loop, "load_dataset", real)  # not undo(): env's settings stay
    train(cfg, env / "run", progress=False)
    (env / "run" / "train.json").unlink()
    monkeypatch.setattr(rpl.runs.loop, "load_dataset", broken)
    with pytest.raises(FileNotFoundError):
        train(cfg, env / "run", resume=True, progress=False)
    assert (env / "run" / "checkpoint.pt").is_file()  # a run with a checkpoint is never removed


def test_resume_refuses_another_configuration(env):
    train(PRESETS["quick"].with_overrides(["train_images=2"]), env / "run", progress=False)
    with pytest.raises(ValueError, match=r"another configuration \(train_images: 2 -> 3\)"):
        train(PRESETS["quick"].with_overrides(["train_images=3"]), env / "run", resume=True, progress=False)
    # an FCN resumes whatever its (unused) region settings say, as reproduce judges it
    fcn = PRESETS["quick"].with_overrides(["model=fcn", "train_images=2", "epochs=2", "lr_drop_epoch=2"])
    train(fcn.with_overrides(["epochs=1", "lr_drop_epoch=1"]), env / "fcn", progress=False)
    state = torch.load(env / "fcn" / "checkpoint.pt", weights_only=False)
    state["config"] = {**state["config"], "epochs": 2, "lr_drop_epoch": 2, "mask": "bins", "proposal_iou": 0.0}
    torch.save(state, env / "fcn" / "checkpoint.pt")
    (env / "fcn" / "train.json").unlink()
    assert train(fcn, env / "fcn", resume=True, progress=False)["epochs"] == 2


def _damaged(kind: str, good: bytes, path) -> None:
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    elif kind == "foreign":
        torch.save({"weights": torch.zeros(3)}, path)
    else:  # a pickle that would run code if loaded without weights_only
        import pickle

        path.write_bytes(pickle.dumps(print))


def test_a_damaged_checkpoint_is_named_not_a_traceback(env, capsys):
    run = env / "run"
    assert (
        main(["train", "--preset", "quick", "--set", "train_images=2", "--set", "test_images=1", "--out", str(run)])
        == 0
    )
    checkpoint = run / "checkpoint.pt"
    good = checkpoint.read_bytes()
    image = env / "x.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    (run / "train.json").unlink()  # so that --resume reads the checkpoint
    for kind in ("empty", "truncated", "random bytes", "foreign", "code"):
        _damaged(kind, good, checkpoint)
        for argv in (
            ["evaluate", str(run)],
            ["predict", str(run), str(image), "-o", str(env / "p.png")],
            [
                "train",
                "--preset",
                "quick",
                "--set",
                "train_images=2",
                "--set",
                "test_images=1",
                "--resume",
                "--out",
                str(run),
            ],
            ["diagnose", str(run)],
        ):
            capsys.readouterr()
            assert main(argv) == 1, (kind, argv[0])
            err = capsys.readouterr().err
            assert str(checkpoint) in err and "retrain the run or restore the file" in err, (kind, argv[0], err)
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not (env / "p.png").exists()


def test_predict_any_image(env, real_siftflow, capsys):
    from PIL import Image

    from rpl.data import SIFTFLOW_CLASSES

    assert main(["train", "--preset", "quick", "--set", "train_images=2", "--out", str(env / "run")]) == 0
    image = real_siftflow / "Images" / "spatial_envelope_256x256_static_8outdoorcategories" / "coast_arnat59.jpg"
    small = env / "small.png"
    Image.open(image).resize((200, 150)).save(small)  # any size, any format
    capsys.readouterr()
    assert main(["predict", str(env / "run"), str(small), "-o", str(env / "out" / "pred.png")]) == 0
    labels = np.asarray(Image.open(env / "out" / "pred.png"))
    assert labels.shape == (150, 200) and 1 <= labels.min() <= labels.max() <= 33
    found = capsys.readouterr().out.split("classes found: ")[1].strip().split(", ")
    assert [f.rsplit(" ", 1)[0] for f in found] == [
        SIFTFLOW_CLASSES[k - 1] for k, _ in sorted(zip(*np.unique(labels, return_counts=True)), key=lambda kc: -kc[1])
    ]
    overlay = Image.open(env / "out" / "pred_overlay.png")  # image | prediction | labels + legend
    assert overlay.size[0] > 3 * overlay.size[1]


def test_frozen_backbone_trains_head_only_on_cached_features(env):
    from rpl.runs import FrozenFeatures, build_model, load_dataset, prepare

    cfg = PRESETS["quick"].with_overrides(["freeze_backbone=true", "train_images=4", "test_images=2"])
    summary = train(cfg, env / "run", progress=False)
    assert summary["train_images"] == 4
    trained = torch.load(env / "run" / "checkpoint.pt", weights_only=False)["model"]
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg, 33).state_dict()
    for name, value in fresh.items():
        if name.startswith("backbone."):
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["head.fc6.weight"], fresh["head.fc6.weight"])
    # the cache holds exactly what the backbone gives for the prepared (flipped) image
    model = build_model(cfg, 33).eval()
    dataset = load_dataset(cfg, "train")
    dataset.names = dataset.names[:: len(dataset.names) // 4][:4]
    cached = FrozenFeatures(model, dataset, cfg)
    assert cached.path.is_file() and not list(cached.path.parent.glob("*.tmp"))  # no temporary left
    with torch.no_grad():
        image = prepare(dataset[2], None, cfg, True, training=False)[0]
        assert torch.allclose(cached[2, True][0], model.backbone(image), atol=1e-4, rtol=1e-4)
    assert evaluate(env / "run", progress=False)["images"] == 2


def test_head_epochs_train_the_head_on_cached_features_then_everything(env):
    """head_epochs=1 of 2: after the first epoch the backbone is still ImageNet's and the head
    has moved (trained on the frozen-feature cache); the second fine-tunes the backbone too."""
    from rpl.runs import build_model

    cfg = PRESETS["quick"].with_overrides(
        ["train_images=4", "test_images=2", "epochs=2", "lr_drop_epoch=2", "head_epochs=1"]
    )
    train(cfg, env / "run", progress=False, keep_epochs=True)
    first = torch.load(env / "run" / "epochs" / "epoch001.pt", weights_only=True)["model"]
    last = torch.load(env / "run" / "epochs" / "epoch002.pt", weights_only=True)["model"]
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg, 33).state_dict()
    backbone = [n for n in fresh if n.startswith("backbone.") and fresh[n].is_floating_point()]
    assert all(torch.equal(first[n], fresh[n]) for n in backbone)
    assert not torch.equal(first["head.fc6.weight"], fresh["head.fc6.weight"])
    assert any(not torch.equal(last[n], first[n]) for n in backbone)
    assert list((env / "cache" / "features").rglob("*.npy"))  # the frozen preset's cache, shared
    for bad in (["head_epochs=2"], ["head_epochs=1", "model=fcn"], ["head_epochs=1", "freeze_backbone=true"]):
        with pytest.raises(ValueError, match="head_epochs"):
            PRESETS["quick"].with_overrides(["epochs=2", *bad])


def test_frozen_random_backbone_and_unknown_dataset_are_refused():
    with pytest.raises(ValueError, match="needs weights=imagenet"):
        TrainConfig(freeze_backbone=True, weights="none")
    with pytest.raises(ValueError, match="dataset must be one of"):
        TrainConfig(dataset="imagenet")


def test_pascal_context_trains_and_evaluates(env, real_pascal_context, monkeypatch):
    """Table 2's path: a PASCAL Context tree (here: 6 images of the real sample as train/val)."""
    root = env / "data" / "pascal-context"
    root.mkdir(parents=True)
    for entry in real_pascal_context.iterdir():
        if entry.name not in ("train.txt", "val.txt"):
            (root / entry.name).symlink_to(entry)
    ids = sorted(p.stem for p in (real_pascal_context / "GroundTruth_trainval_png").glob("*.png"))[:6]
    (root / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    monkeypatch.setenv("RPL_DATA", str(root.parent))
    cfg = PRESETS["quick"].with_overrides(["dataset=pascal-context", "train_images=4", "images_per_step=2"])
    assert train(cfg, env / "run", progress=False)["train_images"] == 4
    metrics = evaluate(env / "run", progress=False)
    assert metrics["images"] == 2 and len(metrics["all"]["per_class_accuracy"]) == 59


def test_the_model_config_is_the_runs_own_fields():
    """Every architecture option is a run setting of the same name (one --set key each), and a
    run's model is built with the values it holds; the baseline fixes box pooling and Eq. 1."""
    import dataclasses

    from rpl.models import ModelConfig

    names = [f.name for f in dataclasses.fields(ModelConfig)]
    assert set(names) <= {f.name for f in dataclasses.fields(TrainConfig)}
    changed = ["pooling=both", "combine=separate", "order=softmax-max", "neck=0", "head=64", "dropout=0.1"]
    cfg = PRESETS["cpu"].with_overrides([*changed, "mask=bins", "alignment=legacy"])
    assert all(getattr(cfg.model_config(), n) == getattr(cfg, n) for n in names)
    baseline = dataclasses.replace(cfg, model="baseline").model_config()
    assert (baseline.pooling, baseline.order, baseline.head, baseline.alignment) == ("box", "softmax-max", 64, "legacy")
