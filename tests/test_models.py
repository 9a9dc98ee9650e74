import pytest
import torch

from rpl.models import E2S2, ModelConfig, RegionBatch, mobilenet_v2, vgg16
from rpl.proposals import RegionSet


def test_mobilenet_v2_is_stride_16_with_imagenet_weights(monkeypatch):
    real = pytest.importorskip("conftest")._real_data_dir("weights")
    monkeypatch.setenv("RPL_WEIGHTS", str(real))
    backbone = mobilenet_v2().eval()
    state = torch.load(real / "mobilenet_v2_imagenet.pth", weights_only=True)
    assert torch.equal(backbone.body[0][0].weight, state["features.0.0.weight"])
    for size, cells in ((256, 16), (600, 38), (97, 7)):
        assert backbone(torch.rand(1, 3, size, size)).shape == (1, 320, cells, cells)


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
    ],
)
def test_every_variant_runs_and_trains_the_backbone(config):
    torch.manual_seed(0)
    model = E2S2(mobilenet_v2(None), 5, config).train()
    regions = tiny_regions()
    image = torch.rand(1, 3, 64, 64)
    features = model.features(image)
    batch = RegionBatch.from_regions(regions, 16, features.shape[-2:])
    scores = model.atom_scores(model.region_scores(features, batch), batch)
    assert scores.shape == (regions.num_cells, 5)
    if config.order == "softmax-max":
        assert torch.all((scores >= 0) & (scores <= 1))
    scores.sum().backward()
    assert model.backbone.body[0][0].weight.grad.abs().sum() > 0
    assert model.predict(image, batch).shape == (64, 64)


def test_bad_model_options():
    with pytest.raises(ValueError, match="pooling"):
        ModelConfig("circle")
    with pytest.raises(ValueError, match="order"):
        ModelConfig(order="max-max")
