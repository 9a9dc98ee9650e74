"""The region heads without random fc layers, multi-level pooling, the FCN without its skip, the
frozen FCN and the backbone-gradient measurement."""

import dataclasses

import pytest
import torch
from test_models import tiny_regions

from rpl.models import E2S2, FCN, ModelConfig, mobilenet_v2
from rpl.runs import PRESETS, TrainConfig, build_model


def _pooled_max(features, mask):
    """Reference: each channel's max over the cells of ``mask`` (Tensor[h, w] bool)."""
    return features[0][:, mask].max(1).values


def test_linear_head_on_one_bin_is_the_classifier_on_each_region_max():
    """head=0, bins=1: a region's score is the classifier applied to its max per channel,
    over its cells (free-form, Eq. 6-7) and over its box's (context), concatenated."""
    torch.manual_seed(0)
    model = E2S2(mobilenet_v2(None), 5, ModelConfig("both", "separate", head=0, bins=1)).eval()
    features = model.features(torch.rand(1, 3, 64, 64))
    batch = model.region_batch(tiny_regions(), features.shape[-2:])
    scores = model.region_scores(features, batch)
    for r in range(len(batch.masks)):
        x1, y1, x2, y2 = (int(v) for v in torch.round(batch.boxes[r, 1:] / model.stride))  # roi_pool's rounding
        box = torch.zeros_like(batch.masks[r])
        box[y1 : y2 + 1, x1 : x2 + 1] = True
        pooled = torch.cat([_pooled_max(features, batch.masks[r]), _pooled_max(features, box)])
        torch.testing.assert_close(scores[r], model.classifier(pooled))
    assert not any(isinstance(m, torch.nn.Linear) for m in model.head.modules())  # no fc layers


def test_imagenet_neck_is_mobilenet_v2s_last_layer(monkeypatch):
    """neck_init=imagenet: MobileNetV2's 1x1 convolution to 1280 channels with its batch norm
    folded in, then ReLU6, gives what torchvision's features[18] gives in eval mode."""
    import torchvision

    real = pytest.importorskip("conftest")._real_data_dir("weights")
    monkeypatch.setenv("RPL_WEIGHTS", str(real))
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(real / "mobilenet_v2_imagenet.pth", weights_only=True))
    model = E2S2(mobilenet_v2(), 5, ModelConfig(neck=1280, neck_init="imagenet", head=0, bins=1))
    x = torch.randn(2, 320, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(model.neck(x), net.features[18].eval()(x), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="neck=1280"):
        ModelConfig(neck=128, neck_init="imagenet")
    reopened = E2S2(mobilenet_v2(None), 5, ModelConfig(neck=1280, neck_init="imagenet", head=0, bins=1))
    reopened.load_state_dict(model.state_dict())  # as open_run rebuilds a run without weights, then loads it
    torch.testing.assert_close(reopened.neck(x), model.neck(x))
    with pytest.raises(ValueError, match="weights=imagenet"):
        TrainConfig(neck=1280, neck_init="imagenet", weights="none")
    with pytest.raises(ValueError, match="backbone=mobilenet_v2"):
        TrainConfig(backbone="vgg16", neck=1280, neck_init="imagenet")


def test_two_levels_pool_at_the_skips_stride():
    """levels=2: the region layers read the backbone's output resampled onto the stride-8 grid
    beside the stride-8 features themselves, scaled by ``skip_scale`` (352 channels), and
    regions are pooled there."""
    torch.manual_seed(0)
    backbone = mobilenet_v2(None).eval()
    model = E2S2(backbone, 5, ModelConfig(head=16, levels=2)).eval()
    image = torch.rand(1, 3, 64, 64)
    skip, deep = backbone.forward_with_skip(image)
    features = model.features(image)
    assert model.stride == 8 and model.offset == backbone.skip_offset
    assert features.shape == (1, 352, 8, 8)
    torch.testing.assert_close(features[:, 320:], skip * backbone.skip_scale)
    torch.testing.assert_close(features[:, :320:2, ::2, ::2], deep[:, ::2])  # cell centres coincide (offset 0)
    torch.testing.assert_close(model.from_backbone((skip, deep)), features)
    batch = model.region_batch(tiny_regions(), features.shape[-2:])
    assert batch.masks.shape[-2:] == (8, 8)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_skip_scale_is_the_measured_ratio_of_the_levels_maxima(real_siftflow, monkeypatch, output_stride):
    """MobileNetV2's skip_scale is what its docstring says: the RMS of each channel's maximum
    over an image, the output's over the skip's, on SIFT Flow training images (within 15%)."""
    from rpl.data import SiftFlow

    monkeypatch.setenv("RPL_WEIGHTS", str(real_siftflow.parent / "weights"))
    backbone = mobilenet_v2(output_stride=output_stride).eval()
    data = SiftFlow("train", real_siftflow.parent)
    images = torch.stack([torch.from_numpy(data[i].image).permute(2, 0, 1) for i in range(0, len(data), 125)])
    with torch.no_grad():
        skip, deep = backbone.forward_with_skip(images.float() / 255)
    rms = [x.amax((2, 3)).square().mean().sqrt() for x in (deep, skip)]
    assert float(rms[0] / rms[1]) == pytest.approx(backbone.skip_scale, rel=0.15)


@pytest.mark.parametrize("skip", [True, False])
def test_fcn_from_backbone_outputs_is_its_forward(skip):
    torch.manual_seed(0)
    model = FCN(mobilenet_v2(None), 5, skip=skip).eval()
    image = torch.rand(2, 3, 64, 48)
    outputs = model.backbone.outputs(image, skip)
    assert len(outputs) == (2 if skip else 1) and (model.score8 is None) == (not skip)
    torch.testing.assert_close(model.from_backbone(outputs, (64, 48)), model(image))


def test_frozen_fcn_trains_its_classifiers_only(env):
    """model=fcn with freeze_backbone: a linear probe on the cached outputs (the skip's too)."""
    from rpl.runs import train
    from rpl.runs.inference import read_checkpoint

    cfg = PRESETS["quick"].with_overrides(["model=fcn", "freeze_backbone=true", "train_images=4"])
    train(cfg, env / "run", progress=False)
    state = read_checkpoint(env / "run" / "checkpoint.pt")["model"]
    torch.manual_seed(cfg.seed)
    fresh = build_model(cfg, 33).state_dict()
    assert all(torch.equal(state[n], fresh[n]) for n in fresh if n.startswith("backbone."))
    assert not torch.equal(state["score8.weight"], fresh["score8.weight"])
    assert any(p.name.endswith("-skip.npy") for p in (env / "cache" / "features").rglob("*.npy"))


def _block_gradient(model, cfg, index):
    """The loss gradient on the first backbone block's parameters for training image ``index``
    of two (no flip, as the measurement prepares it)."""
    from rpl import losses
    from rpl.runs.loop import _loss
    from rpl.runs.prepare import load_dataset, prepare, subset

    full = load_dataset(cfg, "train")
    weights = losses.balanced_weights(full.class_pixel_counts())
    image, label, _ = prepare(subset(full, 2)[index], None, cfg, False, training=True)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(index)
    _loss(model, cfg, model(image), label, None, weights).backward()
    return torch.cat([p.grad.flatten() for p in model.backbone.body[0].parameters() if p.requires_grad])


def test_backbone_gradients_per_block(env):
    """The measurement's numbers are the gradient itself: one image per step has coherence 1
    and a step norm equal to the image's; the FCN reaches every cell of every block."""
    from rpl.runs.gradients import backbone_gradients

    cfg = PRESETS["quick"].with_overrides(["model=fcn"])
    torch.manual_seed(0)
    model = build_model(cfg, 33)
    one = backbone_gradients(model, cfg, images=2, images_per_step=1)
    assert len(one["blocks"]) == len(model.backbone.body)
    for block in one["blocks"]:
        assert block["coherence"] == pytest.approx(1.0)
        assert block["step_grad_norm"] == pytest.approx(block["grad_norm"], rel=1e-5)
        assert block["cells_with_gradient"] == 1.0 and block["grad_norm"] > 0
    assert one["blocks"][-1]["stride"] == 16 and one["output_entries_with_gradient"] > 0.99
    two = backbone_gradients(model, cfg, images=2, images_per_step=2)
    assert two["loss"] == pytest.approx(one["loss"])
    g1, g2 = (_block_gradient(model, cfg, index) for index in (0, 1))  # the two images, by hand
    assert two["blocks"][0]["coherence"] == pytest.approx(float((g1 + g2).norm() / (g1.norm() + g2.norm())), rel=1e-4)
    assert two["blocks"][0]["grad_norm"] == pytest.approx(float(g1.norm() + g2.norm()) / 2, rel=1e-4)
    region = dataclasses.replace(PRESETS["quick"], neck=0, head=0, bins=1)
    torch.manual_seed(0)
    out = backbone_gradients(build_model(region, 33), region, images=2, images_per_step=2)
    assert 0 < out["output_entries_with_gradient"] < 1  # each region's max reaches one cell per channel
    with pytest.raises(ValueError, match="multiple"):
        backbone_gradients(model, cfg, images=3, images_per_step=2)


def _fcn_run(folder, finished=True):
    """A run folder holding an FCN checkpoint whose backbone is unlike any initialisation (a
    finished run: train.json written, unless not ``finished``); returns (folder, the FCN)."""
    torch.manual_seed(0)
    source_cfg = TrainConfig(model="fcn", weights="none")
    source = build_model(source_cfg, 5)
    with torch.no_grad():
        for p in source.backbone.parameters():
            p.add_(1.0)
    folder.mkdir()
    checkpoint = {"model": source.state_dict(), "optimizer": {}, "epoch": 1, "config": dataclasses.asdict(source_cfg)}
    torch.save(checkpoint, folder / "checkpoint.pt")
    if finished:
        (folder / "train.json").write_text("{}")
    return folder, source


def test_weights_from_a_run_folder_start_the_backbone_from_its_checkpoint(tmp_path):
    """weights=<run folder> (the transfer test): the backbone is that run's trained backbone, the
    layers after it are new; an unfinished folder, or one with another backbone or output stride,
    is refused before the model is built."""
    run, source = _fcn_run(tmp_path / "fcn", finished=False)
    cfg = PRESETS["ablation"].with_overrides([f"weights={run}", "head=0", "neck=0", "bins=1"])
    with pytest.raises(FileNotFoundError, match="expected 'imagenet', 'none' or a finished run folder"):
        build_model(cfg, 5)  # no train.json: still training, or stopped
    (run / "train.json").write_text("{}")
    model = build_model(cfg, 5)
    for name, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value)
    assert isinstance(model, E2S2)
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.1)  # new: N(0, 0.01^2), as the paper
    for other, why in (("backbone=vgg16", "its backbone is mobilenet_v2 at output stride 16, not this run's vgg16"),
                       ("output_stride=8", "at output stride 16, not this run's mobilenet_v2 at 8")):  # fmt: skip
        with pytest.raises(ValueError, match=why):
            build_model(cfg.with_overrides([other]), 5)


def test_imagenet_neck_on_a_run_folders_backbone(tmp_path, monkeypatch):
    """neck_init=imagenet with weights=<run folder> (the transfer test of that head): the backbone
    is the run's, the neck ImageNet's 1x1 convolution to 1280 all the same."""
    from rpl.runs.frozen import backbone_hash

    real = pytest.importorskip("conftest")._real_data_dir("weights")
    monkeypatch.setenv("RPL_WEIGHTS", str(real))
    run, source = _fcn_run(tmp_path / "fcn")
    cfg = PRESETS["ablation"].with_overrides([f"weights={run}", "neck=1280", "neck_init=imagenet", "head=0", "bins=1"])
    model = build_model(cfg, 5)
    for name, value in source.backbone.state_dict().items():
        torch.testing.assert_close(model.backbone.state_dict()[name], value)
    # the frozen features are filed under the run's backbone, not ImageNet's loaded before it
    assert backbone_hash(model.backbone.state_dict()) == backbone_hash(source.backbone.state_dict())
    imagenet = E2S2(mobilenet_v2(), 5, ModelConfig(neck=1280, neck_init="imagenet", head=0, bins=1))
    x = torch.randn(1, 320, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(model.neck(x), imagenet.neck(x))
