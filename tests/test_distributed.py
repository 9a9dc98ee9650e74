"""torchrun + DistributedDataParallel (gloo on CPU) gives the single-process run; bf16 autocast."""

import json
import os
import subprocess
import sys

import pytest
import torch

from rpl.losses import balanced_weights
from rpl.proposals import ProposalCache
from rpl.runs import PRESETS, build_model, load_dataset, prepare, train
from rpl.runs.loop import _TrainingStep

# 5 images, 4 per step: step 1 gives each rank 2 images, step 2 gives rank 1 none.
OPTIONS = [
    "--preset",
    "quick",
    "--set",
    "train_images=5",
    "--set",
    "images_per_step=4",
    "--set",
    "epochs=2",
    "--set",
    "lr_drop_epoch=1",
]


def test_two_gloo_processes_equal_one_process(env):
    single = env / "single"
    assert (
        subprocess.run(
            [sys.executable, "-m", "rpl", "train", *OPTIONS, "--out", str(single)],
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=600,
        ).returncode
        == 0
    )
    ddp = env / "ddp"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node",
            "2",
            "--master-port",
            "29517",
            "-m",
            "rpl",
            "train",
            *OPTIONS,
            "--out",
            str(ddp),
        ],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 processes" in done.stdout and done.stdout.count("trained 2 epochs") == 1  # rank 0 reports
    a = torch.load(single / "checkpoint.pt", weights_only=False)
    b = torch.load(ddp / "checkpoint.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2
    for name, value in a["model"].items():
        assert torch.allclose(value.float(), b["model"][name].float(), atol=1e-5, rtol=1e-4), name
    fresh = build_model(PRESETS["quick"], 33).state_dict()
    assert not torch.equal(fresh["head.fc6.weight"], b["model"]["head.fc6.weight"])  # it did train
    log_a = [json.loads(line)["loss"] for line in (single / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(line)["loss"] for line in (ddp / "log.jsonl").read_text().splitlines()]
    assert log_a == pytest.approx(log_b, rel=1e-4) and len(log_b) == 4  # one log, by rank 0
    assert json.loads((ddp / "train.json").read_text())["ranks"] == 2


def test_bf16_autocast_loss_is_close_to_float32(env):
    cfg = PRESETS["quick"]
    torch.manual_seed(0)
    model = build_model(cfg, 33).eval()  # no dropout: the same function in both precisions
    dataset = load_dataset(cfg, "train")
    sample = dataset[0]
    regions = ProposalCache(dataset).get(sample.name, "rgb")
    image, label, regions = prepare(sample, regions, cfg, False, training=True)
    weights = balanced_weights(dataset.class_pixel_counts())
    full = _TrainingStep(model, cfg, weights)([image], [label], [regions], [0])
    half = _TrainingStep(model, cfg.with_overrides(["precision=bf16"]), weights)([image], [label], [regions], [0])
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert half.item() == pytest.approx(full.item(), rel=0.05)
    half.backward()
    assert torch.isfinite(model.head.fc6.weight.grad).all() and model.head.fc6.weight.grad.abs().sum() > 0


def test_bf16_training_runs_and_bad_precision_is_refused(env):
    cfg = PRESETS["quick"].with_overrides(["precision=bf16", "train_images=2"])
    assert train(cfg, env / "run", progress=False)["train_images"] == 2
    with pytest.raises(ValueError, match="precision must be"):
        PRESETS["quick"].with_overrides(["precision=fp8"])


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["model=fcn"],
        ["freeze_backbone=true"],
        ["model=fcn", "freeze_backbone=true"],
        ["freeze_backbone=true", "levels=2"],
    ],
)
def test_a_step_through_the_backbone_in_one_batch_equals_one_image_at_a_time(env, options):
    """The step's images share one backbone pass; losses and gradients (dropout included, seeded
    per image) equal the one-image-at-a-time sums up to float rounding."""
    cfg = PRESETS["quick"].with_overrides(options)
    torch.manual_seed(0)
    dataset = load_dataset(cfg, "train")
    model = build_model(cfg, dataset.num_classes).train()
    weights = balanced_weights(dataset.class_pixel_counts())
    cache = ProposalCache(dataset)
    items = []
    for index, flip in ((0, False), (3, True), (7, False)):
        sample = dataset[index]
        proposals = None if cfg.model == "fcn" else cache.get(sample.name, "rgb")
        items.append((*prepare(sample, proposals, cfg, flip, training=True), 1000 + index))
    images, labels, regions, seeds = (list(x) for x in zip(*items))
    cached = None
    if cfg.freeze_backbone:
        cached = [tuple(o.detach() for o in model.backbone.outputs(image, cfg.reads_skip)) for image in images]
    step = _TrainingStep(model, cfg, weights)
    params = [p for p in model.parameters() if p.requires_grad]

    together = step(images, labels, regions, seeds, cached)
    grads = torch.autograd.grad(together, params, allow_unused=True)
    alone = sum(
        step([images[i]], [labels[i]], [regions[i]], [seeds[i]], None if cached is None else [cached[i]])
        for i in range(3)
    )
    expected = torch.autograd.grad(alone, params, allow_unused=True)
    assert together.item() == pytest.approx(alone.item(), rel=1e-5)
    for g, e in zip(grads, expected):
        if e is None:
            assert g is None
        else:
            torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-6)
