import numpy as np
import pytest
from scipy import ndimage

from rpl.proposals import RegionSet, ground_truth_segments, selective_search


@pytest.fixture(scope="module")
def real(request):
    """Proposals and ground truth of one real SIFT Flow test image."""
    real_siftflow = request.getfixturevalue("real_siftflow")
    from rpl.data import SiftFlow

    sample = SiftFlow("test", real_siftflow.parent)[3]
    return selective_search(sample.image), sample.label


def random_regions(seed=0, shape=(37, 45), cells=30, regions=25):
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, cells, shape)
    sp = ndimage.median_filter(seeds, 5)
    _, sp = np.unique(sp, return_inverse=True)
    sp = sp.reshape(shape)
    n = sp.max() + 1
    member = rng.random((regions, n)) < 0.2
    member[np.arange(regions), rng.integers(0, n, regions)] = True
    return RegionSet(sp, member)


def nearest_cell(coord, stride, offset, size):
    """The feature cell whose centre offset + i·stride is nearest to pixel ``coord`` (ties: the
    later cell), by brute force over the cells."""
    distances = [abs(coord - (offset + i * stride)) for i in range(size)]
    best = min(distances)
    return max(i for i, d in enumerate(distances) if d == best)


def brute_feature_masks(masks, stride, h, w, offset=0.0):
    out = np.zeros((len(masks), h, w), bool)
    _, H, W = masks.shape
    for y in range(H):
        for x in range(W):
            out[:, nearest_cell(y, stride, offset, h), nearest_cell(x, stride, offset, w)] |= masks[:, y, x]
    return out


@pytest.mark.parametrize("stride, shape", [(16, None), (7, None), (8, (3, 4)), (8, (9, 9)), (1, None)])
@pytest.mark.parametrize("offset", [0.0, 7.5, 3.0])
def test_feature_masks_match_brute_force(stride, shape, offset):
    regions = random_regions()
    masks = regions.masks()
    h, w = shape or (-(-37 // stride), -(-45 // stride))
    np.testing.assert_array_equal(
        regions.feature_masks(stride, shape, offset), brute_feature_masks(masks, stride, h, w, offset)
    )


def test_feature_masks_real(real):
    regions, _ = real
    fm = regions.feature_masks(16)
    assert fm.shape == (len(regions), 16, 16)
    np.testing.assert_array_equal(fm, brute_feature_masks(regions.masks(), 16, 16, 16))
    with pytest.raises(ValueError, match="stride"):
        regions.feature_masks(0)


def thin_regions(shape):
    """Every single pixel, every 1-px row and column and every 2x2 square of a pixel grid."""
    h, w = shape
    pixels = np.arange(h * w).reshape(h, w)
    cells = [[p] for p in pixels.ravel()] + [list(row) for row in pixels] + [list(col) for col in pixels.T]
    cells += [list(pixels[y : y + 2, x : x + 2].ravel()) for y in range(h - 1) for x in range(w - 1)]
    return RegionSet.from_cells(pixels, [np.array(c) for c in cells])


@pytest.mark.parametrize("stride, offset", [(16, 0.0), (16, 7.5), (8, 0.0), (8, 3.5)])
@pytest.mark.parametrize("cells", ["ceil", "floor", "ceil+1"])
def test_no_region_pools_nothing(stride, offset, cells):
    """Thin regions at every offset inside a block, the last partial block included: with masks
    and boxes on one convention, every region has a cell inside its bins."""
    import torch

    from rpl.models import RegionBatch
    from rpl.ops import free_form_roi_pool

    shape = (2 * stride + 5, 3 * stride + 3)
    regions = thin_regions(shape)
    feature_shape = {
        "ceil": (-(-shape[0] // stride), -(-shape[1] // stride)),  # MobileNetV2
        "floor": (shape[0] // stride, shape[1] // stride),  # VGG-16
        "ceil+1": (-(-shape[0] // stride) + 1, -(-shape[1] // stride) + 1),
    }[cells]
    features = torch.ones(1, 1, *feature_shape)

    def pooled_nothing(alignment):
        batch = RegionBatch.from_regions(regions, stride, feature_shape, offset=offset, alignment=alignment)
        pooled = free_form_roi_pool(features, batch.boxes, batch.masks, (7, 7), 1 / stride)
        return int((pooled.flatten(1).max(1).values == 0).sum())

    assert pooled_nothing("centred") == 0
    if stride == 16 and offset == 0.0 and cells == "ceil":  # the convention before issue 12 failed exactly this
        assert pooled_nothing("legacy") > 0


def test_bin_masks():
    # an L shape in a 14x14 box: the empty top-right quarter's bins are off, the rest on
    sp = np.arange(14 * 14).reshape(14, 14)
    ell = np.ones((14, 14), bool)
    ell[:7, 7:] = False
    regions = RegionSet.from_cells(sp, [sp[ell], sp.ravel(), np.array([0])])
    bins = regions.bin_masks((7, 7))
    assert bins.shape == (3, 7, 7)
    assert bins[1].all() and bins[2].all()  # a region that fills its box: every bin
    assert not bins[0, :3, 4:].any() and bins[0, 4:].all() and bins[0, :, :3].all()
    # the boundary bins touch the region within the resize filter's reach
    assert bins[0, 3, 4] and bins[0, 2, 3]


def brute_segments(label):
    segments = []
    for c in np.unique(label[label > 0]):
        comp, k = ndimage.label(label == c, structure=np.ones((3, 3)))
        segments += [comp == i for i in range(1, k + 1)]
    return segments


def test_with_ground_truth_superpixels(real):
    """The authors' training regions: each segment as the union of the superpixels at least
    half inside it; atoms are superpixel x label and share their superpixel's regions."""
    regions, label = real
    train = regions.with_ground_truth(label)
    atoms = train.superpixels
    np.testing.assert_array_equal(train.cell_labels[atoms], label)
    n = len(regions)
    masks = train.masks()
    np.testing.assert_array_equal(masks[:n], regions.masks())
    expected = []
    for seg in brute_segments(label):
        union = np.zeros(label.shape, bool)
        for s in np.unique(regions.superpixels):
            inside = regions.superpixels == s
            if (inside & seg).sum() >= 0.5 * inside.sum():
                union |= inside
        if union.any():
            expected.append(union.tobytes())
    assert len(expected) > 0 and train.is_ground_truth[n:].all()
    assert sorted(m.tobytes() for m in masks[n:]) == sorted(expected)
    # every region is a union of superpixels: an atom's regions are its superpixel's
    for a in range(train.num_cells):
        pixels = atoms == a
        s = regions.superpixels[pixels][0]
        assert (regions.superpixels[pixels] == s).all() and (label[pixels] == train.cell_labels[a]).all()
        assert (masks[:, pixels][:, 0] == masks[:, regions.superpixels == s][:, 0]).all()
    with pytest.raises(ValueError, match="mode"):
        regions.with_ground_truth(label, "boxes")


def test_ground_truth_iou(real):
    regions, label = real
    iou = regions.ground_truth_iou(label)
    segments = brute_segments(label)
    masks = regions.masks()
    for r in range(0, len(regions), 13):
        best = max((masks[r] & s).sum() / (masks[r] | s).sum() for s in segments)
        assert iou[r] == pytest.approx(best)
    assert (regions.ground_truth_iou(np.zeros_like(label)) == 0).all()


def _is_box(mask):
    ys, xs = np.nonzero(mask)
    return mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].all()


def test_with_ground_truth_boxes(real):
    """Purely rectangular training regions: each segment's bounding box is added, the
    proposals' boxes stay, every region is a filled box and every atom has one label."""
    regions, label = real
    rects = RegionSet.from_boxes(regions.boxes[::7], regions.shape)
    train = rects.with_ground_truth(label, "boxes")
    masks = train.masks()
    n = len(rects)
    np.testing.assert_array_equal(masks[:n], rects.masks())
    expected = []
    for seg in brute_segments(label):
        box = np.zeros(label.shape, bool)
        ys, xs = np.nonzero(seg)
        box[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = True
        expected.append(box.tobytes())
    assert train.is_ground_truth[n:].all() and not train.is_ground_truth[:n].any()
    assert sorted(m.tobytes() for m in masks[n:]) == sorted(expected)
    assert all(_is_box(m) for m in masks)
    np.testing.assert_array_equal(train.cell_labels[train.superpixels], label)
    empty = rects.with_ground_truth(np.zeros_like(label), "boxes")  # nothing labelled: no box added
    assert len(empty) == n
    with pytest.raises(ValueError, match="purely rectangular"):
        regions.with_ground_truth(label, "boxes")


def test_from_masks_gives_back_the_masks(real):
    """Any masks become regions over the cells they induce: a real proposal set's masks come
    back unchanged, box masks give from_boxes' regions, pixels in no mask belong to no region."""
    regions, _ = real
    again = RegionSet.from_masks(regions.masks())
    np.testing.assert_array_equal(again.masks(), regions.masks())
    assert again.num_cells <= regions.num_cells and again.params["kind"] == "masks"
    rects = RegionSet.from_boxes(regions.boxes[::5], regions.shape)
    boxed = RegionSet.from_masks(rects.masks())
    np.testing.assert_array_equal(boxed.superpixels, rects.superpixels)
    assert (boxed.membership != rects.membership).nnz == 0
    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2] = True
    masks[1, 1:3, 1:] = True  # overlaps the first; row 3 in no mask
    two = RegionSet.from_masks(masks)
    np.testing.assert_array_equal(two.masks(), masks)
    assert two.num_cells == 4  # first only, both, second only, neither
    uncovered = two.superpixels[3, 0]
    assert not two.membership.toarray()[:, uncovered].any()
    for bad in (masks.astype(np.uint8), masks[0], masks[:0]):
        with pytest.raises(ValueError, match="non-empty bool array"):
            RegionSet.from_masks(bad)
    with pytest.raises(ValueError, match="mask 1 is empty"):
        RegionSet.from_masks(np.stack([masks[0], np.zeros_like(masks[0])]))


def test_dense_masks_refuse_what_would_not_fit(real):
    regions, _ = real
    need = len(regions) * regions.superpixels.size
    assert regions.masks(max_bytes=need).shape == (len(regions), *regions.shape)
    with pytest.raises(ValueError, match="take a subset first"):
        regions.masks(max_bytes=need - 1)


def test_precomputed_segments(real):
    """Training computes an image's segments once for the IoU filter and the ground-truth
    regions: the same results as computing them in each call; segments of another shape refused."""
    regions, label = real
    segments = ground_truth_segments(label)
    np.testing.assert_array_equal(regions.ground_truth_iou(label, segments), regions.ground_truth_iou(label))
    for mode in ("superpixels", "exact"):
        a, b = regions.with_ground_truth(label, mode, segments=segments), regions.with_ground_truth(label, mode)
        np.testing.assert_array_equal(a.superpixels, b.superpixels)
        assert (a.membership != b.membership).nnz == 0
    with pytest.raises(ValueError, match="segments are"):
        regions.ground_truth_iou(label, ground_truth_segments(label[1:]))


def test_with_ground_truth_exact_atoms(real):
    regions, label = real
    train = regions.with_ground_truth(label, "exact")
    atoms = train.superpixels
    # each atom has one label, and cell_labels tells it
    np.testing.assert_array_equal(train.cell_labels[atoms], label)
    # each atom lies inside one superpixel
    assert all(len(np.unique(regions.superpixels[atoms == a])) == 1 for a in range(0, train.num_cells, 7))
    # proposals are unchanged, ground-truth regions come after them
    n = len(regions)
    assert not train.is_ground_truth[:n].any() and train.is_ground_truth[n:].all()
    np.testing.assert_array_equal(train.masks()[:n], regions.masks())
    # ground-truth regions: the 8-connected components of each class
    expected = []
    for c in np.unique(label[label > 0]):
        comp, k = ndimage.label(label == c, structure=np.ones((3, 3)))
        expected += [(comp == i).tobytes() for i in range(1, k + 1)]
    assert sorted(m.tobytes() for m in train.masks()[n:]) == sorted(expected)
    assert train.num_cells >= regions.num_cells


def test_with_ground_truth_all_void_and_bad_label():
    regions = random_regions()
    for mode in ("superpixels", "exact"):
        train = regions.with_ground_truth(np.zeros(regions.shape, int), mode)
        assert len(train) == len(regions) and train.num_cells == regions.num_cells
    with pytest.raises(ValueError, match="label is"):
        regions.with_ground_truth(np.zeros((3, 3), int))


def test_from_boxes():
    boxes = np.array([[0, 0, 9, 9], [5, 5, 19, 14], [0, 0, 19, 14], [12, 2, 12, 2]])
    regions = RegionSet.from_boxes(boxes, (15, 20))
    np.testing.assert_array_equal(regions.boxes, boxes)
    np.testing.assert_array_equal(regions.areas, [100, 150, 300, 1])
    masks = regions.masks()
    for m, (x1, y1, x2, y2) in zip(masks, boxes):
        ref = np.zeros((15, 20), bool)
        ref[y1 : y2 + 1, x1 : x2 + 1] = True
        np.testing.assert_array_equal(m, ref)
    with pytest.raises(ValueError, match="outside"):
        RegionSet.from_boxes([[0, 0, 20, 3]], (15, 20))


def test_from_superpixels_is_a_partition():
    sp = np.array([[0, 0, 1], [2, 2, 1]])
    regions = RegionSet.from_superpixels(sp)
    assert len(regions) == 3 and regions.masks().sum(0).tolist() == [[1, 1, 1], [1, 1, 1]]


def test_save_load_round_trip(tmp_path, real):
    regions, label = real
    for rs in (regions, regions.with_ground_truth(label)):
        path = tmp_path / "sub" / "x.npz"
        rs.save(path)
        back = RegionSet.load(path)
        np.testing.assert_array_equal(back.superpixels, rs.superpixels)
        assert (back.membership != rs.membership).nnz == 0
        np.testing.assert_array_equal(back.is_ground_truth, rs.is_ground_truth)
        assert (back.cell_labels is None) == (rs.cell_labels is None)
        assert back.params == rs.params
        assert [p.name for p in path.parent.iterdir()] == ["x.npz"]  # no temporary left


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        RegionSet.load(tmp_path / "none.npz")
    (tmp_path / "bad.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"bad\.npz"):
        RegionSet.load(tmp_path / "bad.npz")


def test_constructor_checks():
    sp = np.array([[0, 1], [1, 1]])
    with pytest.raises(ValueError, match="columns"):
        RegionSet(sp, np.ones((1, 3), bool))
    with pytest.raises(ValueError, match="at least one cell"):
        RegionSet(sp, np.array([[True, False], [False, False]]))
    with pytest.raises(ValueError, match="every label"):
        RegionSet(np.array([[0, 2]]), np.ones((1, 3), bool))


def test_subset_and_mask(real):
    regions, _ = real
    sub = regions.subset(regions.areas > 1000)
    assert len(sub) == (regions.areas > 1000).sum() and (sub.areas > 1000).all()
    np.testing.assert_array_equal(regions.mask(-1), regions.masks()[-1])
    with pytest.raises(IndexError):
        regions.mask(len(regions))


def test_resampled_flip_and_upsample():
    regions = random_regions(seed=3)
    h, w = regions.shape
    flipped = regions.resampled(np.arange(h), np.arange(w)[::-1])
    np.testing.assert_array_equal(flipped.masks(), regions.masks()[:, :, ::-1])
    np.testing.assert_array_equal(flipped.areas, regions.areas)
    np.testing.assert_array_equal(flipped.boxes[:, [1, 3]], regions.boxes[:, [1, 3]])
    np.testing.assert_array_equal(flipped.boxes[:, [2, 0]], w - 1 - regions.boxes[:, [0, 2]])
    double = regions.resampled(np.arange(2 * h) // 2, np.arange(2 * w) // 2)
    np.testing.assert_array_equal(double.masks(), regions.masks().repeat(2, 1).repeat(2, 2))
    np.testing.assert_array_equal(double.areas, 4 * regions.areas)


def test_cell_membership_tensor(real):
    regions, _ = real
    m = regions.cell_membership()
    assert m.layout.__repr__() == "torch.sparse_csr" and m.shape == (regions.num_cells, len(regions))
    np.testing.assert_array_equal(m.to_dense().numpy(), regions.membership.toarray().T)


def test_as_kind():
    """Each superpixel a region, or each region's bounding box filled; Selective Search's own
    regions, or regions already of the kind, come back as they are."""
    from rpl.proposals import as_kind

    regions = random_regions(3)
    assert as_kind(regions, "selective-search") is regions
    sp = as_kind(regions, "superpixels")
    np.testing.assert_array_equal(sp.masks(), [regions.superpixels == i for i in range(regions.num_cells)])
    rects = as_kind(regions, "rectangles")
    assert len(rects) == len(regions) and as_kind(rects, "rectangles") is rects and as_kind(sp, "superpixels") is sp
    for mask, (x1, y1, x2, y2) in zip(rects.masks(), regions.boxes):
        box = np.zeros(regions.shape, bool)
        box[y1 : y2 + 1, x1 : x2 + 1] = True
        np.testing.assert_array_equal(mask, box)
    with pytest.raises(ValueError, match="region kind must be one of"):
        as_kind(regions, "boxes")
