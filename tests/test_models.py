import numpy as np
import pytest
import torch

from rpl.models import E2S2, ModelConfig, mobilenet_v2, vgg16
from rpl.ops import region_to_pixel
from rpl.proposals import RegionSet


def test_mobilenet_v2_is_stride_16_with_imagenet_weights(monkeypatch):
    real = pytest.importorskip("conftest")._real_data_dir("weights")
    monkeypatch.setenv("RPL_WEIGHTS", str(real))
    backbone = mobilenet_v2().eval()
    state = torch.load(real / "mobilenet_v2_imagenet.pth", weights_only=True)
    assert torch.equal(backbone.body[0][0].weight, state["features.0.0.weight"])
    for size, cells in ((256, 16), (600, 38), (97, 7)):
        assert backbone(torch.rand(1, 3, size, size)).shape == (1, 320, cells, cells)


def test_mobilenet_v2_at_output_stride_8(monkeypatch):
    real = pytest.importorskip("conftest")._real_data_dir("weights")
    monkeypatch.setenv("RPL_WEIGHTS", str(real))
    os8, os16 = mobilenet_v2(output_stride=8).eval(), mobilenet_v2().eval()
    assert os8.stride == 8 and os8.skip_channels == 24
    assert os8(torch.rand(1, 3, 256, 256)).shape == (1, 320, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(os8.state_dict().values(), os16.state_dict().values()))
    with pytest.raises(ValueError, match="output_stride"):
        mobilenet_v2(None, 32)


@pytest.mark.parametrize(
    "make, size, cell",
    [(lambda: mobilenet_v2(None), 768, 24), (lambda: mobilenet_v2(None, 8), 576, 36), (lambda: vgg16(None), 320, 10)],
)
def test_backbone_offset_is_where_its_cells_are_centred(make, size, cell):
    """Cell i's receptive field is centred on pixel offset + i·stride (what the pooling boxes
    and feature masks assume): measured from the input pixels that reach the cell."""
    torch.manual_seed(0)
    backbone = make().eval()
    image = torch.rand(1, 3, size, size, requires_grad=True)
    out = backbone(image)[0, :, cell, cell].abs().sum()
    (grad,) = torch.autograd.grad(out, image)
    rows = torch.nonzero(grad.abs().sum((0, 1, 3)) > 0)[:, 0]
    cols = torch.nonzero(grad.abs().sum((0, 1, 2)) > 0)[:, 0]
    assert 0 < rows.min() and rows.max() < size - 1  # the whole field inside the image
    centre = backbone.offset + cell * backbone.stride
    assert (rows.min() + rows.max()).item() / 2 == centre == (cols.min() + cols.max()).item() / 2
    # the FCN's skip, at half the stride
    skip = backbone.body[: backbone.skip_index]((image - backbone.mean) / backbone.std)
    (grad,) = torch.autograd.grad(skip[0, :, 2 * cell, 2 * cell].abs().sum(), image)
    rows = torch.nonzero(grad.abs().sum((0, 1, 3)) > 0)[:, 0]
    assert (rows.min() + rows.max()).item() / 2 == backbone.skip_offset + 2 * cell * (backbone.stride // 2)


def test_resample_cells():
    from rpl.models import resample_cells

    x = torch.randn(2, 3, 16, 16)
    # VGG-16's centres are what F.interpolate(align_corners=False) assumes
    torch.testing.assert_close(
        resample_cells(x, 16, 7.5, (256, 256)), torch.nn.functional.interpolate(x, size=(256, 256), mode="bilinear")
    )
    # a map holding each cell's centre coordinate resamples to the pixel coordinate
    for stride, offset in ((16, 0.0), (8, 0.0), (16, 7.5)):
        centres = (offset + stride * torch.arange(16.0)).view(1, 1, 1, 16).expand(1, 1, 5, 16)
        out = resample_cells(centres, stride, offset, (5, 16 * stride))[0, 0, 0]
        pixels = torch.arange(16.0 * stride)
        inside = (pixels >= offset) & (pixels <= offset + 15 * stride)
        torch.testing.assert_close(out[inside], pixels[inside])
        assert (out[pixels < offset] == offset).all()  # the border holds
    # onto a coarser grid: stride 16 -> the stride-8 grid, both centred on pixel 0
    out = resample_cells(torch.arange(4.0).view(1, 1, 1, 4), 16, 0.0, (1, 8), 8, 0.0)[0, 0, 0]
    torch.testing.assert_close(out, torch.tensor([0, 0.5, 1, 1.5, 2, 2.5, 3, 3]))


def test_missing_weights_say_where_to_put_them(monkeypatch, tmp_path):
    monkeypatch.setenv("RPL_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for make, filename in ((mobilenet_v2, "mobilenet_v2_imagenet.pth"), (vgg16, "vgg16_imagenet.pth")):
        with pytest.raises(FileNotFoundError, match=f"no {filename} in {tmp_path}.*weights=None"):
            make()
    with pytest.raises(ValueError, match="weights"):
        mobilenet_v2("coco")


def test_frozen_batch_norm_stays_in_eval_mode():
    backbone = mobilenet_v2(None).train()
    bns = [m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.training for m in bns) and not any(p.requires_grad for m in bns for p in m.parameters())


def tiny_regions():
    sp = torch.arange(4).repeat_interleave(16).view(1, 64).expand(64, 64).numpy().copy()  # 4 vertical bands
    regions = RegionSet.from_cells(sp, [[0], [1, 2], [3], [0, 1, 2, 3]])
    label = (sp + 1).astype("int64")
    return regions.with_ground_truth(label)


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig("free-form", neck=8, head=16),
        ModelConfig("box", neck=8, head=16),
        ModelConfig("both", "tied", neck=8, head=16),
        ModelConfig("both", "separate", neck=8, head=16),
        ModelConfig("free-form", order="softmax-max", neck=8, head=16),
        ModelConfig("free-form", neck=8, head=16, mask="bins"),
        ModelConfig("both", "separate", neck=8, head=16, mask="bins"),
        ModelConfig("free-form", neck=8, head=16, alignment="legacy"),
        ModelConfig("both", "separate", head=0, bins=1),
        ModelConfig("free-form", head=0),
        ModelConfig("both", "separate", neck=8, head=16, levels=2),
        ModelConfig("free-form", neck=8, head=16, mask="bins", levels=2, bins=3),
    ],
)
def test_every_variant_runs_and_trains_the_backbone(config):
    torch.manual_seed(0)
    model = E2S2(mobilenet_v2(None), 5, config).train()
    regions = tiny_regions()
    image = torch.rand(1, 3, 64, 64)
    features = model.features(image)
    batch = model.region_batch(regions, features.shape[-2:])
    scores = model.atom_scores(model.region_scores(features, batch), batch)
    assert scores.shape == (regions.num_cells, 5)
    if config.order == "softmax-max":
        assert torch.all((scores >= 0) & (scores <= 1))
    scores.sum().backward()
    assert model.backbone.body[0][0].weight.grad.abs().sum() > 0
    assert model.predict(image, batch).shape == (64, 64)


def test_regions_from_any_masks_go_through_the_model():
    """RegionSet.from_masks: hand-drawn overlapping masks, part of the image in none, give
    scores for every atom, a label map and gradients."""
    torch.manual_seed(0)
    model = E2S2(mobilenet_v2(None), 3, ModelConfig("free-form", neck=8, head=16)).train()
    yy, xx = np.mgrid[:64, :64]
    masks = np.stack([(yy - 20) ** 2 + (xx - 20) ** 2 < 15**2, xx > 30, (yy > 40) & (xx < 50)])
    regions = RegionSet.from_masks(masks)
    image = torch.rand(1, 3, 64, 64)
    features = model.features(image)
    batch = model.region_batch(regions, features.shape[-2:])
    scores = model.atom_scores(model.region_scores(features, batch), batch)
    assert scores.shape == (regions.num_cells, 3) and torch.isfinite(scores).all()
    scores.sum().backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.predict(image, batch).shape == (64, 64)


def test_labels_by_either_score_order():
    """One image's region logits labelled by Eq. 1 (softmax, then the max) and by Eq. 3 (the
    max over logits), each equal to the model of that order, the model's own order by default."""
    torch.manual_seed(0)
    eq1 = E2S2(mobilenet_v2(None), 4, ModelConfig("box", order="softmax-max", neck=8, head=16)).eval()
    eq3 = E2S2(mobilenet_v2(None), 4, ModelConfig("box", neck=8, head=16)).eval()
    eq3.load_state_dict(eq1.state_dict())
    regions, image = tiny_regions(), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        out = eq1.scores(eq1.features(image), regions)
        # the whole-image region (3) confident in class 1, the others unsure between 2, 3 and 4
        # but with the largest logit, 3: Eq. 3 labels every atom 2, Eq. 1 labels them 1
        out.logits = torch.tensor([[0.0, 3, 2.9, 2.9]]).repeat(len(out.logits), 1)
        out.logits[3] = torch.tensor([1.0, -9, -9, -9])
        both = [out.labels(o) for o in ("softmax-max", "max-softmax")]
        by_hand = [
            (region_to_pixel(s, out.batch.membership).argmax(1) + 1)[out.batch.cells]
            for s in (torch.softmax(out.logits, 1), out.logits)
        ]
    assert all(torch.equal(a, b) for a, b in zip(both, by_hand)) and not torch.equal(*both)
    assert torch.equal(eq1.predict(image, regions), eq1.scores(eq1.features(image), regions).labels("softmax-max"))
    assert torch.equal(eq3.predict(image, regions), eq1.scores(eq1.features(image), regions).labels("max-softmax"))
    with pytest.raises(ValueError, match="order must be one of"):
        out.labels("max")


def test_bad_model_options():
    with pytest.raises(ValueError, match="pooling"):
        ModelConfig("circle")
    with pytest.raises(ValueError, match="order"):
        ModelConfig(order="max-max")


@pytest.mark.parametrize("pooling", ["free-form", "both"])
def test_bin_masked_pooling_is_box_pooling_with_the_bins_zeroed(pooling):
    """mask="bins" (the authors' code): the plain reference box pooling times the region's 7x7
    box-relative mask, forward and backward."""
    from rpl.ops import reference

    torch.manual_seed(0)
    config = ModelConfig(pooling, "separate", neck=0, head=16, mask="bins", dropout=0.0)
    model = E2S2(mobilenet_v2(None), 5, config).eval()
    features = torch.randn(1, 320, 4, 4, dtype=torch.float64, requires_grad=True)
    model.double()
    blocks = (torch.arange(64)[:, None] // 16 * 4 + torch.arange(64)[None] // 16).numpy()  # 4x4 blocks of 16 px
    regions = RegionSet.from_cells(
        blocks, [[0, 1, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15], [0, 5, 10, 15], [6], list(range(16))]
    )
    regions = regions.with_ground_truth(blocks.astype("int64") % 3 + 1)
    batch = model.region_batch(regions, features.shape[-2:])
    assert batch.bin_masks.shape == (len(regions), 7, 7) and not batch.bin_masks.all()
    got = model.region_scores(features, batch)
    box = reference.free_form_roi_pool(features, batch.boxes.double(), torch.ones_like(batch.masks), (7, 7), 1 / 16)
    free = box * batch.bin_masks[:, None]
    pooled = free if pooling == "free-form" else torch.cat([free, box], 1)
    expected = model.classifier(model.head(pooled))
    torch.testing.assert_close(got, expected)
    weights = torch.randn_like(got)
    (g_got,) = torch.autograd.grad((got * weights).sum(), features)
    (g_expected,) = torch.autograd.grad((expected * weights).sum(), features)
    torch.testing.assert_close(g_got, g_expected)
