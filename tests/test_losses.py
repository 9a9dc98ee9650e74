import numpy as np
import pytest
import torch

from rpl.losses import balanced_weights, pixel_loss, pixel_loss_per_pixel, region_labels, region_loss
from rpl.ops import region_to_pixel
from rpl.proposals import RegionSet, selective_search


@pytest.fixture(scope="module")
def real_atoms(request):
    real_siftflow = request.getfixturevalue("real_siftflow")
    from rpl.data import SiftFlow

    sample = SiftFlow("test", real_siftflow.parent)[11]
    return selective_search(sample.image).with_ground_truth(sample.label), sample.label


@pytest.mark.parametrize("balanced", [False, True])
@pytest.mark.parametrize("probabilities", [False, True])
def test_atom_loss_equals_per_pixel_loss_on_a_real_image(real_atoms, balanced, probabilities):
    regions, label = real_atoms
    rng = np.random.default_rng(0)
    scores = torch.tensor(rng.normal(size=(len(regions), 33)), requires_grad=True)
    membership = regions.cell_membership()
    weights = torch.tensor(rng.uniform(0.1, 10, 33)) if balanced else None

    def atom_scores():
        s = torch.softmax(scores, 1) if probabilities else scores
        return region_to_pixel(s, membership)

    atoms = atom_scores()
    fast = pixel_loss(
        atoms, torch.from_numpy(regions.cell_labels), torch.from_numpy(regions.cell_areas), weights, probabilities
    )
    cells = torch.from_numpy(regions.superpixels.ravel().astype(np.int64))
    brute = pixel_loss_per_pixel(atom_scores()[cells], torch.from_numpy(label.ravel()), weights, probabilities)
    torch.testing.assert_close(fast, brute)
    (g_fast,) = torch.autograd.grad(fast, scores)
    (g_brute,) = torch.autograd.grad(brute, scores)
    torch.testing.assert_close(g_fast, g_brute)
    assert regions.num_cells * 20 < label.size  # and it touches ~1/100 of the rows


def test_balanced_weights_and_renormalisation():
    w = balanced_weights([5, 10, 30, 0, 60])
    np.testing.assert_allclose(w.numpy(), [10, 100 / 30, 0, 100 / 60], rtol=1e-6)
    scores = torch.randn(4, 4)
    labels = torch.tensor([1, 2, 4, 0])
    pixels = torch.tensor([3, 1, 2, 7])
    assert torch.allclose(pixel_loss(scores, labels, pixels, w), pixel_loss(scores, labels, pixels, 7 * w))
    # unbalanced: the mean over labelled pixels
    nll = torch.nn.functional.cross_entropy(scores[:3], labels[:3] - 1, reduction="none")
    assert torch.allclose(pixel_loss(scores, labels, pixels), (nll * pixels[:3]).sum() / 6)


def test_all_void_image_has_zero_loss_and_gradient():
    scores = torch.randn(3, 5, requires_grad=True)
    loss = pixel_loss(scores, torch.zeros(3, dtype=torch.long), torch.ones(3))
    loss.backward()
    assert loss.item() == 0 and torch.count_nonzero(scores.grad) == 0


def test_region_labels_by_overlap():
    label = np.zeros((10, 10), np.int64)
    label[:, :6] = 2
    label[:, 6:] = 5
    sp = np.repeat(np.arange(10)[None], 10, 0)  # one superpixel per column
    regions = RegionSet.from_cells(sp, [np.arange(6), np.arange(10), np.arange(6, 10), np.arange(3, 8)])
    assert region_labels(regions, label).tolist() == [2, 2, 5, -1]  # whole image: IoU 0.6 with class 2
    scores = torch.randn(4, 6, requires_grad=True)
    loss = region_loss(scores, torch.tensor([2, -1, 5, -1]))
    expected = torch.nn.functional.cross_entropy(scores[[0, 2]], torch.tensor([1, 4]))
    assert torch.allclose(loss, expected)
