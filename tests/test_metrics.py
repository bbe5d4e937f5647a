import json
import math

import numpy as np
import pytest
import torch

from avseg.metrics import (
    BinaryAccumulator,
    NullAccumulator,
    SemanticAccumulator,
    false_positive_rate,
    format_table,
    harmonic_mean,
    null_s,
    official_f,
    official_j,
    preference_drop,
    robust_summary,
)


def reference_j(logits, gt):
    """The AVSBench mask_iou formula, one frame at a time."""
    values = []
    for p, g in zip(torch.sigmoid(logits) > 0.5, gt.bool()):
        if g.any():
            values.append((p & g).sum().item() / ((p | g).sum().item() + 1e-7))
        else:
            values.append((~p).sum().item() / (p.numel() + 1e-7))
    return sum(values) / len(values)


def reference_f(logits, gt):
    """The AVSBench Eval_Fmeasure formula, one frame and one threshold at a time."""
    prob = torch.sigmoid(logits)
    thresholds = torch.linspace(0, 1 - 1e-10, 255)
    curves = []
    for p, g in zip(prob, gt.float()):
        if g.sum() == 0:
            continue
        curve = []
        for t in thresholds:
            binary = (p >= t).float()
            tp = (binary * g).sum().item()
            precision, recall = tp / (binary.sum().item() + 1e-20), tp / (g.sum().item() + 1e-20)
            f = 1.3 * precision * recall / (0.3 * precision + recall) if precision + recall > 0 else 0.0
            curve.append(f)
        curves.append(curve)
    return max(np.mean(curves, axis=0)) if curves else 0.0


def random_batch(seed, n=6, h=23, w=31, empty=(1,)):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, h, w, generator=generator) * 4
    logits[0, :3] = 40.0  # saturated sigmoid: exactly 1.0 in float32
    gt = (torch.rand(n, h, w, generator=generator) > 0.6).float()
    for k in empty:
        gt[k] = 0
    return logits, gt


@pytest.mark.parametrize("seed", range(4))
def test_j_and_f_match_the_official_formulas(seed):
    logits, gt = random_batch(seed)
    assert official_j(logits, gt) == pytest.approx(reference_j(logits, gt), abs=1e-6)
    assert official_f(logits, gt) == pytest.approx(reference_f(logits, gt), abs=1e-6)


def test_hand_computed_values():
    gt = torch.zeros(2, 4, 4)
    gt[0, :2] = 1  # 8 foreground pixels
    logits = torch.full((2, 4, 4), -10.0)
    logits[0, :1] = 10.0  # predict half of the object
    logits[1, 0, 0] = 10.0  # one false positive on the empty frame
    # frame 0: IoU 4/8; frame 1: empty gt scores the empty-pixel fraction 15/16
    assert official_j(logits, gt) == pytest.approx((0.5 + 15 / 16) / 2, abs=1e-6)
    # only frame 0 counts for F: best threshold gives P=1, R=0.5 -> 1.3*0.5/(0.3+0.5)
    assert official_f(logits, gt) == pytest.approx(1.3 * 0.5 / 0.8, abs=1e-6)


def test_all_empty_batch():
    logits = torch.full((3, 8, 8), -5.0)
    gt = torch.zeros(3, 8, 8)
    assert official_j(logits, gt) == pytest.approx(1.0, abs=1e-6)
    assert official_f(logits, gt) == 0.0
    logits[:, :4] = 5.0
    assert official_j(logits, gt) == pytest.approx(0.5, abs=1e-6)


def test_ref_avs_threshold():
    logits = torch.full((1, 2, 2), math.log(0.45 / 0.55))  # sigmoid = 0.45
    gt = torch.ones(1, 2, 2)
    assert official_j(logits, gt) == pytest.approx(0.0)
    assert official_j(logits, gt, threshold=0.4) == pytest.approx(1.0, abs=1e-6)


def test_accumulator_averages_batches_and_keeps_a_batch_independent_f():
    batches = [random_batch(s, n=4, empty=()) for s in range(3)] + [random_batch(9, n=4, empty=(0, 1, 2, 3))]
    accumulator = BinaryAccumulator(batch_size=4)
    for logits, gt in batches:
        accumulator.update(logits, gt)
    result = accumulator.compute()
    assert result["J"] == pytest.approx(np.mean([reference_j(*b) for b in batches]), abs=1e-6)
    assert result["F"] == pytest.approx(np.mean([reference_f(*b) for b in batches]), abs=1e-6)
    # the all-empty batch scores 0 in the official F but adds no frame to the batch-independent one
    all_logits = torch.cat([b[0] for b in batches])
    all_gt = torch.cat([b[1] for b in batches])
    assert result["F_batch_independent"] == pytest.approx(reference_f(all_logits, all_gt), abs=1e-6)
    assert result["F_batch_independent"] > result["F"]
    assert (result["num_batches"], result["num_frames"]) == (4, 16)


def test_binary_input_checks():
    with pytest.raises(ValueError, match="NaN"):
        official_j(torch.tensor([[[float("nan")]]]), torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match="binary"):
        official_f(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 255.0))
    with pytest.raises(ValueError, match="shape"):
        official_j(torch.zeros(2, 2), torch.zeros(2, 2))


def test_semantic_accumulator_by_hand():
    target = torch.tensor([[[0, 1], [1, 2]], [[0, 0], [0, 0]]])
    prediction = torch.tensor([[[0, 1], [2, 2]], [[0, 0], [0, 3]]])
    accumulator = SemanticAccumulator(num_classes=5)
    accumulator.update(prediction, target)
    per_class = accumulator.per_class()
    # class 0: frame 1 IoU 1/1, frame 2 IoU 3/4 -> mean 0.875; F frame 1 = 1, frame 2: P=1, R=3/4
    f0_frame2 = 1.3 * 1 * 0.75 / (0.3 + 0.75)
    assert per_class["iou"][0].item() == pytest.approx((1 + 0.75) / 2)
    assert per_class["f"][0].item() == pytest.approx((1 + f0_frame2) / 2)
    assert per_class["iou"][1].item() == pytest.approx(0.5)  # I=1, U=2
    assert per_class["iou"][2].item() == pytest.approx(0.5)
    assert per_class["iou"][3].item() == 0.0 and accumulator.count[3] == 1  # false positive counts
    assert per_class["iou"][4].item() == 0.0 and accumulator.count[4] == 0  # never seen: 0 in the mean
    result = accumulator.compute()
    assert result["mIoU"] == pytest.approx(per_class["iou"].mean().item())


def test_semantic_accumulator_takes_logits():
    logits = torch.zeros(1, 3, 2, 2)
    logits[0, 2] = 1.0
    accumulator = SemanticAccumulator(num_classes=3)
    accumulator.update(logits, torch.full((1, 2, 2), 2))
    assert accumulator.compute()["mIoU"] == pytest.approx(1 / 3)  # only class 2 seen
    with pytest.raises(ValueError, match="class indices"):
        accumulator.update(torch.zeros(1, 2, 2, dtype=torch.long), torch.full((1, 2, 2), 7))


def test_null_s():
    logits = torch.full((2, 4, 4), -3.0)
    logits[0, 0, :] = 3.0  # 4 of 32 pixels positive
    assert null_s(logits) == pytest.approx(math.sqrt(4 / 32))
    accumulator = NullAccumulator()
    accumulator.update(logits)
    accumulator.update(torch.full((2, 4, 4), -3.0))
    result = accumulator.compute()
    assert result["S"] == pytest.approx(math.sqrt(4 / 32) / 2)
    assert result["S_batch_independent"] == pytest.approx(math.sqrt(4 / 64))


def test_preference_drop_table():
    rows = preference_drop({"normal": {"J": 0.8, "F": 0.9}, "mute": {"J": 0.2, "F": 0.45}})
    assert rows[1]["J_drop"] == pytest.approx(0.75) and rows[1]["F_drop"] == pytest.approx(0.5)
    assert rows[0]["J_drop"] == 0.0
    table = format_table(rows)
    assert "| mute | 0.2000 | +75.0% | 0.4500 | +50.0% |" in table
    null_rows = preference_drop({"normal": {"S": 0.1}, "mute": {"S": 0.3}})
    assert null_rows[1]["S_drop"] == pytest.approx(2.0)  # S got worse (higher)
    with pytest.raises(ValueError, match="baseline"):
        preference_drop({"mute": {"J": 0.1}})


def strict_json(text):
    """json.loads that rejects NaN and Infinity, as most JSON parsers outside Python do."""
    return json.loads(text, parse_constant=lambda constant: (_ for _ in ()).throw(ValueError(constant)))


def test_undefined_drop_is_null_with_a_reason():
    # A zero-shot model can score J = 0 with normal audio: the relative drop is undefined.
    rows = preference_drop({"normal": {"J": 0.0, "F": 0.4}, "mute": {"J": 0.0, "F": 0.2}})
    assert rows[1]["J_drop"] is None and rows[1]["J_drop_reason"] == "J under normal audio is 0; relative drop undefined"
    assert rows[1]["F_drop"] == pytest.approx(0.5) and "F_drop_reason" not in rows[1]
    assert strict_json(json.dumps(rows, allow_nan=False)) == rows
    table = format_table(rows)
    assert "| mute | 0.0000 | n/a | 0.2000 | +50.0% |" in table and "reason" not in table


def test_false_positive_rate_by_hand():
    # AVSBench-Robust calculate_FPR: the fraction of pixels with sigmoid > 0.5, per frame
    logits = torch.full((3, 4, 4), -3.0)
    logits[0, :1] = 3.0  # 4 of 16 pixels
    logits[1] = 3.0  # all 16
    logits[2, 0, 0] = 0.0  # sigmoid exactly 0.5 is not > 0.5
    assert false_positive_rate(logits).tolist() == [0.25, 1.0, 0.0]


def test_accumulator_fpr_official_and_batch_independent():
    accumulator = BinaryAccumulator(batch_size=2)
    full = torch.full((2, 4, 4), -3.0)
    full[0] = 3.0  # batch FPRs 1 and 0: batch mean 0.5
    last = torch.full((1, 4, 4), -3.0)
    last[0, :2] = 3.0  # a last batch of one frame with FPR 0.5
    accumulator.update(full, torch.zeros(2, 4, 4))
    accumulator.update(last, torch.zeros(1, 4, 4))
    result = accumulator.compute()
    assert result["FPR"] == pytest.approx((0.5 + 0.5) / 2)  # the official AverageMeter: mean of batch means
    assert result["FPR_batch_independent"] == pytest.approx((1 + 0 + 0.5) / 3)  # mean over frames


def test_robust_summary_by_hand():
    positive = {"J": 0.8, "F": 0.9, "F_batch_independent": 0.6}
    negatives = {
        "silence": {"FPR": 0.2, "FPR_batch_independent": 0.1},
        "noise": {"FPR": 0.4, "FPR_batch_independent": 0.2},
        "offscreen": {"FPR": 0.6, "FPR_batch_independent": 0.3},
    }
    summary = robust_summary(positive, negatives)
    # G-FPR = (0.2 + 0.4 + 0.6) / 3 = 0.4; G-mIoU = 2 * 0.8 * 0.6 / (0.8 + 0.6); G-F = 2 * 0.9 * 0.6 / (0.9 + 0.6)
    assert summary["G-FPR"] == pytest.approx(0.4)
    assert summary["G-mIoU"] == pytest.approx(0.96 / 1.4)
    assert summary["G-F"] == pytest.approx(0.72)
    assert summary["G-F_batch_independent"] == pytest.approx(2 * 0.6 * 0.8 / 1.4)  # 1 - mean(0.1, 0.2, 0.3) = 0.8
    # a model that segments everything whatever it hears: perfect rejection is impossible
    assert robust_summary({"J": 1.0, "F": 1.0, "F_batch_independent": 1.0}, {"silence": {"FPR": 1.0, "FPR_batch_independent": 1.0}})["G-mIoU"] == 0.0
    assert harmonic_mean(0.0, 0.0) == 0.0
    with pytest.raises(ValueError, match="at least one negative"):
        robust_summary(positive, {})
