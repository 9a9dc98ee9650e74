"""The two layers against torchvision and the PyTorch reference, in torchvision's test style."""

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st
from op_cases import pool_case, r2p_case, random_boxes

from rpl.ops import FreeFormRoIPool, RegionToPixel, free_form_roi_pool, reference, region_to_pixel
from rpl.proposals import RegionSet

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))]


def identical(a, b) -> bool:
    """Equal values at equal places, NaN where the other has NaN."""
    return a.shape == b.shape and bool(((a == b) | (a.isnan() & b.isnan())).all())


def close(a, b):
    torch.testing.assert_close(
        a, b, rtol=1e-12 if a.dtype == torch.float64 else 1e-6, atol=1e-12 if a.dtype == torch.float64 else 1e-6
    )


# --- free-form ROI pooling -------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("output_size, scale", [((7, 7), 1 / 16), ((3, 5), 1 / 8), ((2, 2), 0.5)])
@pytest.mark.parametrize("seed", range(3))
def test_all_true_masks_equal_torchvision(device, dtype, output_size, scale, seed):
    rng = np.random.default_rng(seed)
    features = torch.tensor(rng.normal(size=(2, 6, 11, 13)), dtype=dtype, device=device, requires_grad=True)
    boxes = random_boxes(40, 2, 11, 13, rng, scale=1 / scale).to(dtype=dtype, device=device)
    masks = torch.ones(40, 11, 13, dtype=torch.bool, device=device)
    ours = free_form_roi_pool(features, boxes, masks, output_size, scale)
    theirs = torchvision.ops.roi_pool(features, boxes, output_size, scale)
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    (g1,) = torch.autograd.grad(ours, features, grad)
    (g2,) = torch.autograd.grad(theirs, features, grad)
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("device", DEVICES)
def test_thousands_of_regions_equal_torchvision(device):
    rng = np.random.default_rng(7)
    features = torch.randn(1, 4, 16, 16, device=device, requires_grad=True)
    boxes = random_boxes(5000, 1, 16, 16, rng).float().to(device)
    masks = torch.ones(5000, 16, 16, dtype=torch.bool, device=device)
    ours = free_form_roi_pool(features, boxes, masks)
    theirs = torchvision.ops.roi_pool(features, boxes, 7, 1 / 16)
    assert torch.equal(ours, theirs)
    (g1,) = torch.autograd.grad(ours.sum(), features)
    (g2,) = torch.autograd.grad(theirs.sum(), features)
    torch.testing.assert_close(g1, g2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "kind", ["random", "ties", "empty bins", "one-cell regions", "whole image", "one region", "nan", "-inf"]
)
@pytest.mark.parametrize("seed", range(3))
def test_pool_equals_reference(device, kind, seed):
    features, boxes, masks = pool_case(kind, np.random.default_rng(seed))
    features, boxes, masks = features.to(device).requires_grad_(), boxes.to(device), masks.to(device)
    ours = free_form_roi_pool(features, boxes, masks)
    ref = reference.free_form_roi_pool(features, boxes, masks)
    assert identical(ours, ref)
    assert kind != "nan" or ours.isnan().any()
    assert kind != "-inf" or ours[:, 0].isneginf().any()
    grad = torch.randn_like(ours)
    (g1,) = torch.autograd.grad(ours, features, grad)
    (g2,) = torch.autograd.grad(ref, features, grad)
    close(g1, g2)


def test_thousands_of_free_form_regions_equal_reference():
    rng = np.random.default_rng(11)
    features = torch.randn(2, 2, 8, 8, dtype=torch.float64, requires_grad=True)
    boxes = random_boxes(5000, 2, 8, 8, rng)
    masks = torch.tensor(rng.random((5000, 8, 8)) < 0.4)
    ours = free_form_roi_pool(features, boxes, masks, (2, 2))
    ref = reference.free_form_roi_pool(features, boxes, masks, (2, 2))
    assert torch.equal(ours, ref)
    (g1,) = torch.autograd.grad(ours.sum(), features)
    (g2,) = torch.autograd.grad(ref.sum(), features)
    close(g1, g2)


def test_empty_bins_are_zero_without_gradient():
    features = torch.randn(1, 3, 4, 4, requires_grad=True)
    boxes = torch.tensor([[0.0, 0, 0, 63, 63]])
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 0, 0] = True
    out = free_form_roi_pool(features, boxes, masks, (2, 2))
    assert torch.equal(out[0, :, 0, 0], features[0, :, 0, 0].detach())
    assert torch.count_nonzero(out[0, :, 1:, :]) == 0 and torch.count_nonzero(out[0, :, 0, 1]) == 0
    (g,) = torch.autograd.grad(out.sum(), features)
    assert g[0, :, 0, 0].tolist() == [1.0, 1.0, 1.0] and g.sum() == 3


def test_non_contiguous_inputs():
    rng = np.random.default_rng(3)
    features = torch.randn(2, 9, 12, 5).permute(0, 3, 1, 2)  # [2, 5, 9, 12], not contiguous
    _, boxes, masks = pool_case("random", rng, torch.float32)
    masks = masks.transpose(1, 2).contiguous().transpose(1, 2)
    boxes = torch.cat([boxes, boxes], 1)[:, ::2]
    assert not (features.is_contiguous() or masks.is_contiguous() or boxes.is_contiguous())
    assert torch.equal(free_form_roi_pool(features, boxes, masks), reference.free_form_roi_pool(features, boxes, masks))


@pytest.mark.parametrize("seed", range(10))
def test_pool_gradcheck(seed):
    features, boxes, masks = pool_case("random", np.random.default_rng(seed))
    features = features[:, :2, :6, :7].contiguous().requires_grad_()
    masks = masks[:6, :6, :7].contiguous()
    boxes = boxes[:6]
    assert torch.autograd.gradcheck(lambda f: free_form_roi_pool(f, boxes, masks, (3, 3)), (features,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_pool_half_precision_goes_through_float32(dtype):
    features, boxes, masks = pool_case("random", np.random.default_rng(0), torch.float32)
    out = free_form_roi_pool(features.to(dtype), boxes, masks)
    assert out.dtype == dtype
    assert torch.equal(out, free_form_roi_pool(features.to(dtype).float(), boxes, masks).to(dtype))


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda f, b, m: (f[0], b, m), r"features must be a Tensor\[N, C, H, W\]"),
        (lambda f, b, m: (f.long(), b, m), "floating point"),
        (lambda f, b, m: (f, b[:, :4], m), r"boxes must be a Tensor\[K, 5\]"),
        (lambda f, b, m: (f, b, m[:, :3]), r"masks must be a bool Tensor\[K, H, W\]"),
        (lambda f, b, m: (f, b, m.float()), "masks must be a bool"),
        (lambda f, b, m: (f, b.index_fill(1, torch.tensor([0]), 5.0), m), r"batch indices in 0\.\.1"),
    ],
)
def test_pool_bad_input(change, match):
    features, boxes, masks = pool_case("random", np.random.default_rng(0))
    with pytest.raises((ValueError, TypeError), match=match):
        free_form_roi_pool(*change(features, boxes, masks))


def test_pool_module_and_no_regions():
    pool = FreeFormRoIPool((2, 3), 0.25)
    assert "output_size=(2, 3)" in repr(pool)
    out = pool(torch.randn(1, 4, 5, 5), torch.zeros(0, 5), torch.zeros(0, 5, 5, dtype=torch.bool))
    assert out.shape == (0, 4, 2, 3)


# --- region-to-pixel ---------------------------------------------------------------------------


R2P_KINDS = ["random", "ties", "one region", "whole image", "one atom", "thousands of regions", "nan", "-inf"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", R2P_KINDS)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_region_to_pixel_equals_reference(device, kind, sparse, seed):
    scores, member = r2p_case(kind, np.random.default_rng(seed))
    scores, member = scores.to(device).requires_grad_(), member.to(device)
    given = member.to_sparse_csr() if sparse else member
    out, winners = region_to_pixel(scores, given, return_winners=True)
    ref, ref_winners = reference.region_to_pixel(scores, member, return_winners=True)
    assert identical(out, ref) and torch.equal(winners, ref_winners)
    assert kind != "nan" or out.isnan().any()
    assert kind != "-inf" or out[:, 0].isneginf().all()
    grad = torch.randn_like(out)
    (g1,) = torch.autograd.grad(out, scores, grad)
    (g2,) = torch.autograd.grad(ref, scores, grad)
    close(g1, g2)


def test_atom_in_no_region_gets_the_minimum_and_no_gradient():
    scores = torch.tensor([[1.0, -3.0], [2.0, 0.5]], requires_grad=True)
    member = torch.tensor([[True, False], [False, False], [True, True]])
    out, winners = region_to_pixel(scores, member, return_winners=True)
    assert out.tolist() == [[1.0, -3.0], [-3.0, -3.0], [2.0, 0.5]]
    assert winners.tolist() == [[0, 0], [-1, -1], [1, 1]]
    (g,) = torch.autograd.grad(out.sum(), scores)
    assert g.tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_ties_go_to_the_lowest_region():
    scores = torch.tensor([[1.0, 2.0], [5.0, 2.0], [5.0, 2.0]], requires_grad=True)
    member = torch.tensor([[True, True, True], [False, True, True]])
    out, winners = region_to_pixel(scores, member.to_sparse_csr(), return_winners=True)
    assert winners.tolist() == [[1, 0], [1, 1]]
    (g,) = torch.autograd.grad(out.sum(), scores)
    assert g.tolist() == [[0.0, 1.0], [2.0, 1.0], [0.0, 0.0]]


@pytest.mark.parametrize("device", DEVICES)
def test_sparse_membership_is_read_by_its_values_and_checked(device):
    """An explicitly stored False is no member (as to_dense reads it); column indices outside
    0..R-1, non-bool values and zero classes are refused instead of read out of bounds."""
    scores = torch.tensor([[1.0, 0.0], [3.0, -1.0], [2.0, 5.0]], device=device)
    crow, col = torch.tensor([0, 2, 3, 3]), torch.tensor([0, 1, 2])
    member = torch.sparse_csr_tensor(crow, col, torch.tensor([True, False, True]), (3, 3)).to(device)
    out, winners = region_to_pixel(scores, member, return_winners=True)
    ref, ref_winners = reference.region_to_pixel(scores, member, return_winners=True)
    assert torch.equal(out, ref) and torch.equal(winners, ref_winners)
    assert winners.tolist() == [[0, 0], [2, 2], [-1, -1]]  # region 1 is no member of atom 0
    for bad_col in ([0, 1, 3], [0, -1, 2]):
        bad = torch.sparse_csr_tensor(
            crow, torch.tensor(bad_col), torch.ones(3, dtype=torch.bool), (3, 3), check_invariants=False
        ).to(device)
        with pytest.raises(ValueError, match="column indices must be regions 0..2"):
            region_to_pixel(scores, bad)
    with pytest.raises(TypeError, match="bool"):
        region_to_pixel(scores, torch.sparse_csr_tensor(crow, col, torch.ones(3), (3, 3)).to(device))
    with pytest.raises(ValueError, match="at least one class"):
        region_to_pixel(scores[:, :0], member)


@pytest.mark.parametrize("seed", range(10))
def test_region_to_pixel_gradcheck(seed):
    rng = np.random.default_rng(seed)
    scores = torch.tensor(rng.normal(size=(8, 4)), requires_grad=True)
    member = torch.tensor(rng.random((30, 8)) < 0.3)
    member[:, 0] |= ~member.any(1)  # every atom in a region: the fill value has no gradient
    assert torch.autograd.gradcheck(lambda s: region_to_pixel(s, member), (scores,))
    assert torch.autograd.gradcheck(lambda s: region_to_pixel(s, member.to_sparse_csr()), (scores,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_region_to_pixel_half_precision(dtype):
    scores, member = r2p_case("random", np.random.default_rng(1), torch.float32)
    out = region_to_pixel(scores.to(dtype), member)
    assert out.dtype == dtype and torch.equal(out, reference.region_to_pixel(scores.to(dtype), member))


def test_region_to_pixel_bad_input():
    with pytest.raises(ValueError, match=r"scores must be a Tensor\[R, C\]"):
        region_to_pixel(torch.zeros(3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="R = 3 regions"):
        region_to_pixel(torch.zeros(3, 2), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        region_to_pixel(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one region"):
        region_to_pixel(torch.zeros(0, 2), torch.zeros(2, 0, dtype=torch.bool))


def test_region_to_pixel_module():
    scores = torch.randn(4, 3)
    member = torch.ones(5, 4, dtype=torch.bool)
    assert torch.equal(RegionToPixel()(scores, member), scores.max(0).values.expand(5, 3))


# --- fuzzing over random region sets ------------------------------------------------------------


@st.composite
def region_sets(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    cells = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    sp = rng.integers(0, cells, (h, w))
    _, sp = np.unique(sp, return_inverse=True)
    sp = sp.reshape(h, w)
    n = sp.max() + 1
    r = draw(st.integers(1, 15))
    member = rng.random((r, n)) < draw(st.floats(0.05, 1.0))
    member[np.arange(r), rng.integers(0, n, r)] = True
    return RegionSet(sp, member), rng


@settings(max_examples=60, deadline=None)
@given(region_sets(), st.sampled_from([1, 2, 4, 8]), st.integers(1, 4))
def test_fuzz_layers_on_region_sets(case, stride, out):
    regions, rng = case
    h, w = -(-regions.shape[0] // stride), -(-regions.shape[1] // stride)
    features = torch.tensor(rng.integers(-3, 4, (1, 3, h, w)), dtype=torch.float64, requires_grad=True)
    boxes = torch.cat([torch.zeros(len(regions), 1), torch.tensor(regions.boxes, dtype=torch.float64)], 1)
    masks = torch.tensor(regions.feature_masks(stride))
    pooled = free_form_roi_pool(features, boxes, masks, (out, out), 1 / stride)
    ref = reference.free_form_roi_pool(features, boxes, masks, (out, out), 1 / stride)
    assert torch.equal(pooled, ref)
    scores = pooled.flatten(1)[:, :5].contiguous() if pooled.shape[1] * out * out >= 5 else pooled.flatten(1)
    atoms = torch.tensor(regions.membership.toarray().T)
    r2p, winners = region_to_pixel(scores, atoms, return_winners=True)
    ref_r2p, ref_winners = reference.region_to_pixel(scores, atoms, return_winners=True)
    assert torch.equal(r2p, ref_r2p) and torch.equal(winners, ref_winners)
    (g1,) = torch.autograd.grad(r2p.sum(), features, retain_graph=True)
    (g2,) = torch.autograd.grad(ref_r2p.sum(), features)
    close(g1, g2)


@pytest.mark.parametrize("device", DEVICES)
def test_layers_under_bf16_autocast_match_float32_on_the_same_values(device):
    """In an autocast region (how bf16 training calls them) both layers take bfloat16 in,
    compute in float32 and give bfloat16 out, forward and backward (on CUDA this runs the
    Numba-CUDA kernels)."""
    features, boxes, masks = pool_case("random", np.random.default_rng(3), torch.float32)
    scores, member = r2p_case("random", np.random.default_rng(4), torch.float32)
    features = features.to(device=device, dtype=torch.bfloat16).requires_grad_()
    scores = scores.to(device=device, dtype=torch.bfloat16).requires_grad_()
    boxes, masks, member = boxes.to(device), masks.to(device), member.to(device)
    with torch.autocast(device, dtype=torch.bfloat16):
        pooled = free_form_roi_pool(features, boxes, masks)
        atoms = region_to_pixel(scores, member)
    assert pooled.dtype == atoms.dtype == torch.bfloat16
    exact_pool = free_form_roi_pool(features.detach().float(), boxes, masks)
    exact_atoms = region_to_pixel(scores.detach().float(), member)
    assert torch.equal(pooled.float(), exact_pool) and torch.equal(atoms.float(), exact_atoms)
    (pooled.float().sum() + atoms.float().sum()).backward()
    assert features.grad.dtype == scores.grad.dtype == torch.bfloat16
    assert features.grad.float().sum() > 0 and scores.grad.float().sum() > 0
