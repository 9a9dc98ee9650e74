import numpy as np
import pytest
from scipy import ndimage

from rpl.proposals import RegionSet, selective_search


def blocks(*colours, width=20, height=30):
    """Vertical flat colour blocks side by side."""
    return np.concatenate([np.full((height, width, 3), c, np.uint8) for c in colours], axis=1)


def region_masks(regions):
    return {m.tobytes() for m in regions.masks()}


def test_two_flat_blocks_give_the_expected_hierarchy():
    image = blocks((200, 30, 30), (30, 30, 200))
    regions = selective_search(image, k=1, sigma=0, min_size=1, min_region_size=1)
    left = np.zeros((30, 40), bool)
    left[:, :20] = True
    assert region_masks(regions) == {left.tobytes(), (~left).tobytes(), np.ones_like(left).tobytes()}
    assert len(regions) == 3


def test_similar_colours_merge_first():
    # red | almost red | blue: the two reds merge before anything touches the blue block
    image = blocks((250, 0, 0), (230, 0, 0), (0, 0, 255))
    regions = selective_search(image, k=1, sigma=0, min_size=1, strategies=("color-size-fill",), min_region_size=1)
    cols = np.zeros((30, 60), int)
    cols[:, 20:40] = 1
    cols[:, 40:] = 2
    expect = [np.isin(cols, s) for s in ([0], [1], [2], [0, 1], [0, 1, 2])]
    assert region_masks(regions) == {m.tobytes() for m in expect}


def check_invariants(regions: RegionSet, min_region_size: int):
    h, w = regions.shape
    masks = regions.masks()
    sp = regions.superpixels
    # every region is a union of superpixels
    for m in masks[:: max(1, len(masks) // 40)]:
        touched = np.unique(sp[m])
        assert np.array_equal(np.isin(sp, touched), m)
    # boxes are the masks' tight boxes, areas their pixel counts
    for i in range(0, len(regions), max(1, len(regions) // 40)):
        ys, xs = np.nonzero(masks[i])
        assert regions.boxes[i].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
    np.testing.assert_array_equal(regions.areas, masks.reshape(len(masks), -1).sum(1))
    assert np.ones((h, w), bool).tobytes() in region_masks(regions)  # the whole image
    assert len(region_masks(regions)) == len(regions)  # no duplicates
    small = regions.areas < min_region_size
    assert np.all(regions.areas[small] == h * w)


@pytest.mark.parametrize("color_space", ["rgb", "hsv", "lab"])
def test_invariants_on_real_images(real_siftflow, color_space):
    from rpl.data import SiftFlow

    ds = SiftFlow("test", real_siftflow.parent)
    for index in (0, 99):
        image = ds[index].image
        regions = selective_search(image, color_space)
        check_invariants(regions, 100)
        n = regions.num_cells
        assert n < len(regions) <= 2 * (2 * n - 1)
        assert regions.params["color_space"] == color_space and regions.params["k"] == 100


def test_deterministic(real_siftflow):
    from rpl.data import SiftFlow

    image = SiftFlow("test", real_siftflow.parent)[5].image
    a, b = selective_search(image), selective_search(image)
    assert np.array_equal(a.superpixels, b.superpixels)
    assert (a.membership != b.membership).nnz == 0


def test_greyscale_is_expanded():
    rng = np.random.default_rng(0)
    grey = ndimage.gaussian_filter(rng.random((40, 50)), 3)
    grey = (grey / grey.max() * 255).astype(np.uint8)
    a = selective_search(grey)
    b = selective_search(np.repeat(grey[..., None], 3, axis=2))
    assert region_masks(a) == region_masks(b)


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 4, 3), (1, 50, 3)])
def test_tiny_images_keep_the_whole_image(shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    regions = selective_search(image)
    assert len(regions) >= 1 and np.ones(shape[:2], bool).tobytes() in region_masks(regions)
    check_invariants(regions, 100)


def test_uniform_image_is_one_region():
    regions = selective_search(np.full((64, 64, 3), 128, np.uint8))
    assert len(regions) == 1 and regions.boxes.tolist() == [[0, 0, 63, 63]]


@pytest.mark.parametrize(
    "image, match",
    [
        (np.zeros((8, 8, 4), np.uint8), r"drop the alpha channel"),
        (np.zeros((8, 8, 3), np.float64), r"uint8 .*img_as_ubyte"),
        (np.zeros((8, 8, 2), np.uint8), r"H×W×3"),
        (np.zeros((2, 8, 8, 3), np.uint8), r"H×W×3"),
        (np.zeros((0, 8, 3), np.uint8), "empty"),
    ],
)
def test_bad_images_are_rejected(image, match):
    with pytest.raises(ValueError, match=match):
        selective_search(image)


def test_bad_parameters_are_rejected():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="color_space"):
        selective_search(image, "yuv")
    with pytest.raises(ValueError, match="strategy 'colour-size'"):
        selective_search(image, strategies=("colour-size",))
    with pytest.raises(ValueError, match="at least one"):
        selective_search(image, strategies=())


def test_hierarchy_partitions(real_siftflow):
    from rpl.data import SiftFlow
    from rpl.proposals import Hierarchy

    image = SiftFlow("test", real_siftflow.parent)[7].image
    hierarchy = Hierarchy(image)
    n = len(hierarchy) + 1
    np.testing.assert_array_equal(hierarchy.partition(0), hierarchy.superpixels)
    assert len(np.unique(hierarchy.partition(n - 1))) == 1
    proposals = region_masks(selective_search(image, strategies=("color-texture-size-fill",), min_region_size=1))
    for step in (1, n // 3, n // 2, n - 2):
        part = hierarchy.partition(step)
        assert len(np.unique(part)) == n - step
        assert all((part == r).tobytes() in proposals for r in np.unique(part))
    with pytest.raises(ValueError, match="step"):
        hierarchy.partition(n)
