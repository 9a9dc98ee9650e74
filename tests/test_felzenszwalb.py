"""Our compiled Felzenszwalb against scikit-image's, the reference: identical label maps."""

import numpy as np
import pytest
from skimage import color
from skimage.segmentation import felzenszwalb as reference

from rpl.proposals import felzenszwalb


def ref(image, k, sigma, min_size):
    return reference(image, scale=k, sigma=sigma, min_size=min_size, channel_axis=-1)


def test_equals_scikit_image_on_real_images(real_siftflow):
    from rpl.data import SiftFlow

    ds = SiftFlow("test", real_siftflow.parent)
    for name in ds.names[::25]:
        image = ds[ds.names.index(name)].image
        for x in (image, color.rgb2hsv(image)):
            for k, sigma, min_size in ((100, 0.8, 100), (400, 0.8, 400), (50, 0.5, 1)):
                np.testing.assert_array_equal(felzenszwalb(x, k, sigma, min_size), ref(x, k, sigma, min_size))


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (9, 1, 3), (2, 2, 3), (17, 23, 3), (40, 31, 1), (12, 12, 5)])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.filterwarnings("ignore:Got image with third dimension")  # scikit-image, 5 channels
def test_equals_scikit_image_on_random_and_degenerate_images(shape, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[: shape[0] // 2] = image[0, 0]  # a flat part: ties at cost 0
    for k, sigma, min_size in ((100, 0.8, 10), (1, 0, 1), (1000, 2.0, 50)):
        np.testing.assert_array_equal(felzenszwalb(image, k, sigma, min_size), ref(image, k, sigma, min_size))


def test_uniform_image_is_one_segment():
    assert felzenszwalb(np.full((30, 40, 3), 77, np.uint8), 100, 0.8, 100).max() == 0


def test_min_size_and_labels():
    rng = np.random.default_rng(5)
    seg = felzenszwalb(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), 100, 0.8, 50)
    counts = np.bincount(seg.ravel())
    assert counts.min() >= 50 and seg.dtype == np.int32
    first = [np.flatnonzero(seg.ravel() == s)[0] for s in range(seg.max() + 1)]
    assert first == sorted(first)  # numbered in raster order of first pixel


def test_rejects_2d_input():
    with pytest.raises(ValueError, match="H×W×C"):
        felzenszwalb(np.zeros((4, 4)), 1, 0, 1)


@pytest.mark.parametrize(
    "scale, sigma, min_size, match",
    [
        (0, 0.8, 10, "scale"),
        (-5, 0.8, 10, "scale"),
        (float("nan"), 0.8, 10, "scale"),
        (100, -1, 10, "sigma"),
        (100, float("nan"), 10, "sigma"),
        (100, float("inf"), 10, "sigma"),
        (100, 0.8, 0, "min_size"),
        (100, 0.8, 2.5, "min_size"),
    ],
)
def test_rejects_bad_parameters_naming_them(scale, sigma, min_size, match):
    with pytest.raises(ValueError, match=match):
        felzenszwalb(np.zeros((4, 4, 3), np.uint8), scale, sigma, min_size)
    from rpl.proposals import selective_search

    with pytest.raises(ValueError, match=match):  # and through Selective Search (k, sigma, min_size)
        selective_search(np.zeros((8, 8, 3), np.uint8), k=scale, sigma=sigma, min_size=min_size)
