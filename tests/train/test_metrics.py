"""Metrics against confusion matrices and IoU/Acc values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deeplabv3p.train.metrics import ConfusionMatrix, format_table, metrics_from_confusion


def test_confusion_matrix_counts_rows_truth_columns_prediction() -> None:
    target = torch.tensor([[0, 0, 1], [1, 2, 255]])
    pred = torch.tensor([[0, 1, 1], [2, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    # (truth, pred): (0,0) (0,1) (1,1) (1,2) (2,2); the pixel labelled 255 is skipped whatever was predicted.
    expected = torch.tensor([[1, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert torch.equal(cm.matrix, expected)


def test_hand_computed_metrics() -> None:
    # truth 0: 3 px, predicted 0,0,1 ; truth 1: 2 px, predicted 1,0 ; class 2 never appears anywhere.
    target = np.array([0, 0, 0, 1, 1, 255, 255])
    pred = np.array([0, 0, 1, 1, 0, 2, 1])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    m = cm.compute(["a", "b", "c"])
    # IoU_a = 2 / (3 + 3 - 2) = 0.5 ; IoU_b = 1 / (2 + 2 - 1) = 1/3 ; Acc_a = 2/3 ; Acc_b = 1/2 ; aAcc = 3/5
    assert m["IoU"]["a"] == pytest.approx(50.0)
    assert m["IoU"]["b"] == pytest.approx(100 / 3)
    assert m["Acc"]["a"] == pytest.approx(200 / 3)
    assert m["Acc"]["b"] == pytest.approx(50.0)
    assert m["aAcc"] == pytest.approx(60.0)
    # class c: absent from truth and (outside ignored pixels) from predictions -> NaN, left out of the means
    assert math.isnan(m["IoU"]["c"]) and math.isnan(m["Acc"]["c"])
    assert m["mIoU"] == pytest.approx((50.0 + 100 / 3) / 2)
    assert m["mAcc"] == pytest.approx((200 / 3 + 50.0) / 2)


def test_class_predicted_but_absent_from_truth_has_zero_iou_and_nan_acc() -> None:
    target = np.array([0, 0, 0, 0])
    pred = np.array([0, 0, 0, 1])
    m = metrics_from_confusion(np.array([[3, 1], [0, 0]]))
    cm = ConfusionMatrix(2)
    cm.update(pred, target)
    assert torch.equal(cm.matrix, torch.tensor([[3, 1], [0, 0]]))
    assert list(m["IoU"]) == ["class_0", "class_1"]  # default names, the same as predict and datasets give
    assert m["IoU"]["class_1"] == 0.0  # a false positive with no truth: union 1, intersection 0 (mmseg counts it)
    assert math.isnan(m["Acc"]["class_1"])
    assert m["mIoU"] == pytest.approx((75.0 + 0.0) / 2)
    assert m["mAcc"] == pytest.approx(75.0)


def test_streaming_equals_one_shot_and_merge() -> None:
    rng = np.random.default_rng(0)
    preds = [rng.integers(0, 4, (5, 7)) for _ in range(3)]
    targets = [np.where(rng.random((5, 7)) < 0.1, 255, rng.integers(0, 4, (5, 7))) for _ in range(3)]
    one = ConfusionMatrix(4)
    one.update(np.stack(preds), np.stack(targets))
    streamed, other = ConfusionMatrix(4), ConfusionMatrix(4)
    streamed.update(preds[0], targets[0])
    other.update(preds[1], targets[1])
    other.update(preds[2], targets[2])
    streamed.merge(other)
    assert torch.equal(one.matrix, streamed.matrix)
    valid = np.stack(targets) != 255
    assert int(one.matrix.sum()) == int(valid.sum())


def test_custom_ignore_index() -> None:
    cm = ConfusionMatrix(2, ignore_index=-1)
    cm.update(np.array([1, 0, 1]), np.array([1, -1, 0]))
    assert torch.equal(cm.matrix, torch.tensor([[0, 1], [0, 1]]))


def test_errors_are_clear() -> None:
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="same shape"):
        cm.update(np.zeros((2, 2), int), np.zeros((2, 3), int))
    with pytest.raises(ValueError, match=r"target holds label\(s\) \[7\]"):
        cm.update(np.zeros(2, int), np.array([7, 0]))
    with pytest.raises(ValueError, match=r"pred holds label\(s\) \[3\]"):
        cm.update(np.array([3, 0]), np.zeros(2, int))
    with pytest.raises(TypeError, match="integer label maps"):
        cm.update(np.zeros(2), np.zeros(2, int))
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)
    with pytest.raises(ValueError, match="2 class names"):
        metrics_from_confusion(np.eye(3), ["a", "b"])


def test_format_table_lists_every_class() -> None:
    m = metrics_from_confusion(np.array([[2, 0], [0, 0]]), ["road", "sky"])
    table = format_table(m)
    assert "road  | 100.00 | 100.00" in table
    assert "sky   |    nan |    nan" in table
    assert "mIoU 100.00" in table
