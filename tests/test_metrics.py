import numpy as np
import pytest
import sklearn.metrics

from rpl.metrics import ConfusionMatrix, boundary_mask


def random_pair(rng, c, shape=(20, 30), void=0.1):
    target = rng.integers(1, c + 1, shape)
    target[rng.random(shape) < void] = 0
    pred = np.where(rng.random(shape) < 0.6, target, rng.integers(1, c + 1, shape))
    pred[target == 0] = rng.integers(0, 1000, (target == 0).sum())  # anything on void
    return pred, target


@pytest.mark.parametrize("seed", range(5))
def test_against_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = 7
    cm = ConfusionMatrix(c)
    preds, targets = [], []
    for _ in range(4):
        pred, target = random_pair(rng, c)
        target[target == 3] = 0 if seed % 2 else target[target == 3]  # sometimes class 3 absent
        cm.update(pred, target)
        keep = target > 0
        preds.append(pred[keep])
        targets.append(target[keep])
    p, t = np.concatenate(preds), np.concatenate(targets)
    ref = sklearn.metrics.confusion_matrix(t, p, labels=np.arange(1, c + 1))
    np.testing.assert_array_equal(cm.matrix, ref)
    assert cm.global_accuracy() == pytest.approx(sklearn.metrics.accuracy_score(t, p))
    present = np.unique(t)
    recall = sklearn.metrics.recall_score(t, p, labels=present, average=None, zero_division=0)
    assert cm.class_accuracy() == pytest.approx(recall.mean())
    iou = sklearn.metrics.jaccard_score(t, p, labels=present, average=None, zero_division=0)
    assert cm.mean_iou() == pytest.approx(iou.mean())
    assert cm.present.sum() == len(present)


def test_hand_made_case():
    # class 1: 3 px, 2 right; class 2: 1 px, right; class 3 absent but predicted once
    target = np.array([[1, 1, 1, 2, 0]])
    pred = np.array([[1, 1, 3, 2, 2]])
    cm = ConfusionMatrix(3).update(pred, target)
    assert cm.total == 4
    assert cm.global_accuracy() == pytest.approx(3 / 4)
    np.testing.assert_allclose(cm.per_class_accuracy(), [2 / 3, 1.0, np.nan])
    assert cm.class_accuracy() == pytest.approx((2 / 3 + 1) / 2)  # class 3 not averaged
    np.testing.assert_allclose(cm.per_class_iou(), [2 / 3, 1.0, np.nan])
    assert cm.mean_iou() == pytest.approx((2 / 3 + 1) / 2)


def test_all_void_and_single_class_images():
    cm = ConfusionMatrix(4)
    cm.update(np.full((3, 3), 2), np.zeros((3, 3), int))
    assert cm.total == 0 and np.isnan(cm.global_accuracy()) and np.isnan(cm.class_accuracy())
    cm.update(np.full((3, 3), 2), np.full((3, 3), 2))
    assert cm.global_accuracy() == 1.0 and cm.class_accuracy() == 1.0 and cm.mean_iou() == 1.0
    cm.update(np.full((1, 3), 1), np.full((1, 3), 2))
    assert cm.global_accuracy() == pytest.approx(9 / 12)
    assert cm.per_class_iou()[1] == pytest.approx(9 / 12)  # class 1 predicted but absent: NaN
    assert np.isnan(cm.per_class_iou()[0]) and cm.mean_iou() == pytest.approx(9 / 12)


def test_mask_add_and_summary():
    rng = np.random.default_rng(3)
    pred, target = random_pair(rng, 5)
    mask = rng.random(target.shape) < 0.5
    a = ConfusionMatrix(5).update(pred, target, mask=mask)
    b = ConfusionMatrix(5).update(pred[mask], target[mask])
    np.testing.assert_array_equal(a.matrix, b.matrix)
    a += b
    np.testing.assert_array_equal(a.matrix, 2 * b.matrix)
    s = b.summary(list("abcde"))
    assert set(s["per_class_accuracy"]) == set("abcde") and s["pixels"] == b.total


def test_accepts_tensors():
    torch = pytest.importorskip("torch")
    cm = ConfusionMatrix(2).update(torch.tensor([[1, 2]]), torch.tensor([[1, 1]]))
    assert cm.global_accuracy() == 0.5


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.array([[0, 1]]), np.array([[1, 1]]), r"pred holds values outside 1\.\.3"),
        (np.array([[4, 1]]), np.array([[1, 1]]), r"pred holds values outside 1\.\.3"),
        (np.array([[1, 1]]), np.array([[1, 4]]), r"target holds values outside 0\.\.3"),
        (np.array([[1, 1]]), np.array([[1]]), "shape"),
        (np.array([[1.0, 1.0]]), np.array([[1, 1]]), "integer"),
    ],
)
def test_bad_input(pred, target, match):
    with pytest.raises(ValueError, match=match):
        ConfusionMatrix(3).update(pred, target)


def test_boundary_band_is_width_pixels_each_side():
    label = np.ones((12, 20), int)
    label[:, 10:] = 2
    band = boundary_mask(label, width=4)
    cols = np.flatnonzero(band.all(axis=0))
    assert cols.tolist() == [6, 7, 8, 9, 10, 11, 12, 13] and band.sum() == 12 * 8
    assert boundary_mask(label, width=1).any(axis=0).nonzero()[0].tolist() == [9, 10]


def test_boundary_is_euclidean_around_a_corner():
    label = np.ones((21, 21), int)
    label[10, 10] = 2  # single pixel: distance from its edge pixels
    band = boundary_mask(label, width=2)
    yy, xx = np.mgrid[:21, :21]
    ref = np.zeros_like(band)
    edge = (abs(yy - 10) + abs(xx - 10)) <= 1  # the pixel and its 4 neighbours differ across an edge
    for y, x in zip(*np.nonzero(edge)):
        ref |= np.hypot(yy - y, xx - x) + 0.5 <= 2
    np.testing.assert_array_equal(band, ref)


def test_boundary_void_borders():
    label = np.zeros((5, 9), int)
    assert not boundary_mask(label).any()  # all void: no boundary
    label[:, :3] = 4
    band = boundary_mask(label, width=1)
    assert band[:, 2:4].all() and not band[:, [0, 1, 4, 5]].any()  # class-void border counts
    assert not boundary_mask(np.full((4, 4), 7)).any()  # single class: no boundary


def test_boundary_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        boundary_mask(np.zeros((2, 2, 2), int))
    with pytest.raises(ValueError, match="width"):
        boundary_mask(np.zeros((2, 2), int), width=0)


def test_real_boundary_fraction(real_siftflow):
    from rpl.data import SiftFlow

    ds = SiftFlow("test", real_siftflow.parent)
    frac = np.mean([boundary_mask(ds.read_label(n)).mean() for n in ds.names[:20]])
    assert 0.05 < frac < 0.5  # a band, not the whole image nor nothing
