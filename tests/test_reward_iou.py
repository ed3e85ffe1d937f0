"""IoU variants, box_valid and the duplicate-box penalty."""

import pytest

from reward_score.iou import box_scores, iou_matrix, iou_reward

GT = [(0, 0, 10, 10), (20, 20, 30, 30)]


def test_iou_matrix_values():
    m = iou_matrix([(0, 0, 10, 10), (5, 0, 15, 10), (50, 50, 60, 60)], [(0, 0, 10, 10)])
    assert m[:, 0] == pytest.approx([1.0, 50 / 150, 0.0])


def test_paper_variant_is_mean_of_recall_and_precision():
    pred = [(0, 0, 10, 10)]  # hits GT 1 exactly, misses GT 2
    # recall = (1 + 0)/2, precision = 1/1
    assert iou_reward(pred, GT, "paper") == pytest.approx(0.75)


def test_hungarian_is_one_to_one():
    pred = [(0, 0, 10, 10), (0, 0, 10, 10)]  # the same box twice cannot cover both GT boxes
    assert iou_reward(pred, GT, "paper") == pytest.approx(0.75)
    assert iou_reward(pred, GT, "hungarian") == pytest.approx(0.5)


def test_f1_at_half():
    pred = [(0, 0, 10, 10), (21, 21, 31, 31), (100, 100, 110, 110)]  # IoU 1, 0.68, 0
    assert iou_reward(pred, GT, "f1@0.5") == pytest.approx(2 * 2 / (3 + 2))


@pytest.mark.parametrize("variant", ["paper", "hungarian", "f1@0.5"])
def test_empty_sides_score_zero(variant):
    assert iou_reward([], GT, variant) == 0.0
    assert iou_reward(GT, [], variant) == 0.0
    assert iou_reward(GT, GT, variant) == pytest.approx(1.0)


def test_box_valid_is_fraction_of_well_formed_boxes():
    box_valid, iou, dup = box_scores([(0, 0, 10, 10)], num_invalid=3, gt=GT)
    assert box_valid == pytest.approx(0.25)
    assert dup == 0


def test_no_boxes_or_no_gt_scores_zero():
    assert box_scores([], 0, GT) == (0.0, 0.0, 0)
    assert box_scores([(0, 0, 10, 10)], 0, []) == (0.0, 0.0, 0)


def test_default_duplicate_penalty_reaches_iou():
    single = box_scores([(0, 0, 10, 10)], 0, [(0, 0, 10, 10)])
    repeated = box_scores([(0, 0, 10, 10)] * 4, 0, [(0, 0, 10, 10)])
    assert single == (1.0, 1.0, 0)
    assert repeated[2] == 3
    assert repeated[0] == pytest.approx(0.25)
    # precision side: 1 hit out of 4 predictions; recall side still 1
    assert repeated[1] == pytest.approx(0.5 * (1.0 + 0.25))


def test_paper_duplicate_rule_zeroes_box_valid_but_leaves_iou():
    pred = [(0, 0, 10, 10)] * 4
    box_valid, iou, _ = box_scores(pred, 0, [(0, 0, 10, 10)], duplicate_penalty="paper")
    assert box_valid == 0.0
    assert iou == pytest.approx(1.0)  # the official defect: repeats of a good box are not punished


def test_paper_rule_ignores_duplicate_only_in_second_half():
    pred = [(0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50), (40, 40, 50, 50)]
    box_valid, _, _ = box_scores(pred, 0, GT, duplicate_penalty="paper")
    assert box_valid == 1.0


def test_unknown_switch_values_raise():
    with pytest.raises(ValueError):
        iou_reward(GT, GT, "giou")
    with pytest.raises(ValueError):
        box_scores(GT, 0, GT, duplicate_penalty="sometimes")
