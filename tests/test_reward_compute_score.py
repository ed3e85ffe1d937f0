"""compute_score: verl's custom reward entry point, per stream, with every switch."""

import asyncio
import math

import numpy as np
import pytest

from judge_server import ok, status

from reward_score import RESULT_KEYS, compute_score, compute_score_async

SIZE = [800, 1000]  # original pixels; Qwen2.5-VL sees 812x1008 at max_pixels 1280*28*28
BOUNDS = {"min_pixels": 3136, "max_pixels": 1280 * 28 * 28}
GT_ORIG = [[100, 200, 400, 500]]
GT_MODEL = "[101.5, 201.6, 406.0, 504.0]"  # GT_ORIG x 812/800, x 1008/1000


def grounded(**extra):
    return {"stream": "grounded", "gt_boxes": GT_ORIG, "image_size": SIZE, "box_frame": "qwen2_5_vl", **BOUNDS, **extra}


def test_perfect_grounded_rollout_scores_four():
    text = f"<think>The cup <box>{GT_MODEL}</box> is red.</think><answer>red</answer>"
    result = compute_score("synthetic", text, "red", grounded())
    assert result["score"] == pytest.approx(4.0)
    assert result["iou"] == pytest.approx(1.0)
    assert (result["format"], result["acc"], result["box_valid"]) == (1.0, 1.0, 1.0)


def test_box_in_original_pixels_is_not_the_model_frame():
    from reward_score.scoring import gt_boxes_in_model_frame

    (mapped,) = gt_boxes_in_model_frame(grounded())
    assert mapped == pytest.approx((101.5, 201.6, 406.0, 504.0))  # x 812/800, y 1008/1000
    text = "<think>The cup <box>[100,200,400,500]</box></think><answer>red</answer>"
    # IoU of [100,200,400,500] with the mapped box: 298.5*298.4 / (300*300 + 304.5*302.4 - 298.5*298.4)
    inter = 298.5 * 298.4
    assert compute_score("s", text, "red", grounded())["iou"] == pytest.approx(inter / (90000 + 304.5 * 302.4 - inter))


def test_qwen3_vl_boxes_are_compared_on_the_0_1000_grid():
    text = "<think>The cup <box>[125, 200, 500, 500]</box></think><answer>red</answer>"
    result = compute_score("s", text, "red", grounded(box_frame="qwen3_vl"))
    assert result["iou"] == pytest.approx(1.0)


def test_spaces_and_floats_in_boxes_earn_iou_by_default_but_not_in_strict_mode():
    text = f"<think>The cup <box>{GT_MODEL}</box></think><answer>red</answer>"
    assert compute_score("s", text, "red", grounded())["iou"] == pytest.approx(1.0)
    strict = compute_score("s", text, "red", grounded(), box_syntax="strict")
    assert strict["iou"] == 0.0 and strict["format"] == 0.0 and strict["invalid_boxes"] == 1


def test_grounded_format_needs_a_valid_box_inside_think():
    no_box = compute_score("s", "<think>red cup</think><answer>red</answer>", "red", grounded())
    box_in_answer = compute_score("s", f"<think>cup</think><answer>red <box>{GT_MODEL}</box></answer>", "red", grounded())
    invalid_only = compute_score("s", "<think>cup <box>[5,5,1,1]</box></think><answer>red</answer>", "red", grounded())
    assert no_box["format"] == box_in_answer["format"] == invalid_only["format"] == 0.0
    assert invalid_only["box_valid"] == 0.0 and invalid_only["invalid_boxes"] == 1


def test_textual_stream_must_not_write_boxes():
    clean = compute_score("s", "<think>red cup</think><answer>red</answer>", "red", {"stream": "textual"})
    boxed = compute_score("s", "<think><box>[1,2,3,4]</box></think><answer>red</answer>", "red", {"stream": "textual"})
    assert clean["format"] == 1.0 and clean["score"] == pytest.approx(2.0)
    assert boxed["format"] == 0.0 and boxed["score"] == pytest.approx(1.0)


def test_single_stream_weights_accuracy_one_and_a_half():
    result = compute_score("s", "<think>2+2</think><answer>4</answer>", "4", {"stream": "single"})
    assert result["score"] == pytest.approx(2.5)
    assert compute_score("s", "<think>x</think><answer>5</answer>", "4", {"stream": "single"})["score"] == 1.0


def test_weights_are_configurable():
    text = f"<think>cup <box>{GT_MODEL}</box></think><answer>red</answer>"
    result = compute_score("s", text, "red", grounded(), weights={"iou": 2.0, "box_valid": 0.0})
    assert result["score"] == pytest.approx(1 + 0 + 2 + 1)


def test_every_stream_returns_the_same_keys():
    for extra in (grounded(), {"stream": "textual"}, {"stream": "single"}, None):
        assert tuple(compute_score("s", "junk", "x", extra)) == RESULT_KEYS


def test_the_dict_verl_reads_is_the_typed_result_and_a_renamed_key_fails_loudly():
    from reward_score import RewardScore, score_rollout

    text = "<think>It is red.</think><answer>red</answer>"
    typed = score_rollout(text, "red", {"stream": "textual"})
    assert isinstance(typed, RewardScore) and (typed.score, typed.format, typed.acc) == (2.0, 1.0, 1.0)
    assert compute_score("s", text, "red", {"stream": "textual"}) == typed.as_dict()
    assert RewardScore.from_extra_info({**typed.as_dict(), "think": "It is red."}) == typed
    renamed = typed.as_dict()
    renamed["accuracy"] = renamed.pop("acc")
    with pytest.raises(KeyError, match="acc"):
        RewardScore.from_extra_info(renamed)
    with pytest.raises(TypeError):
        RewardScore(accuracy=1.0)


def test_consistency_joins_the_textual_score_with_the_reward_weights():
    """The paper's textual reward: format + accuracy + consistency, each weight 1 by default."""
    from reward_score import RewardScore, RewardWeights, with_consistency

    textual = RewardScore.from_extra_info(compute_score("s", "<think>x</think><answer>red</answer>", "red",
                                                        {"stream": "textual"}))
    assert (textual.score, textual.consistency) == (2.0, 0.0)
    assert with_consistency(textual, 0.7, RewardWeights()).score == pytest.approx(2.7)
    final = with_consistency(textual, 0.7, RewardWeights(consistency=2.0))
    assert (final.consistency, final.score) == (0.7, pytest.approx(3.4))


def test_undecided_answer_is_flagged_and_fallback_is_switchable():
    text = "<think>x</think><answer>It is the blue one on the left</answer>"
    zero = compute_score("s", text, "blue", {"stream": "textual"})
    lenient = compute_score("s", text, "blue", {"stream": "textual"}, undecided_fallback="contains")
    assert (zero["acc"], zero["acc_undecided"]) == (0.0, 1.0)
    assert (lenient["acc"], lenient["acc_undecided"]) == (1.0, 1.0)


def test_extra_info_from_parquet_numpy_arrays_is_accepted():
    extra = grounded(gt_boxes=np.array([np.array(b, dtype=np.float64) for b in GT_ORIG]), image_size=np.array(SIZE))
    text = f"<think>cup <box>{GT_MODEL}</box></think><answer>red</answer>"
    assert compute_score("s", text, "red", extra)["iou"] == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [{"image_size": None}, {"image_size": [0, 10]}, {"gt_boxes": [[5, 5, 1, 1]]},
                                 {"gt_boxes": [[1, 2, 3]]}, {"box_frame": "llava"}])
def test_unusable_ground_truth_is_flagged_not_raised(bad):
    text = f"<think>cup <box>{GT_MODEL}</box></think><answer>red</answer>"
    result = compute_score("s", text, "red", grounded(**bad))
    assert result["gt_error"] == 1.0 and result["iou"] == 0.0 and math.isfinite(result["score"])


def test_unknown_settings_and_streams_fail_loudly():
    with pytest.raises(ValueError, match="unknown reward settings"):
        compute_score("s", "x", "y", None, iou_varient="paper")
    with pytest.raises(ValueError, match="stream"):
        compute_score("s", "x", "y", {"stream": "visual"})


def test_verl_loads_and_calls_it_as_custom_reward_function():
    import asyncio

    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    for name in ("compute_score", "compute_score_async"):
        config = OmegaConf.create({"reward": {"custom_reward_function": {
            "path": "pkg://reward_score.scoring", "name": name,
            "reward_kwargs": {"iou_variant": "hungarian", "weights": {"accuracy": 2.0}}}}})
        fn = get_custom_reward_fn(config)
        out = fn(data_source="s", solution_str="<think>a</think><answer>yes</answer>", ground_truth="yes",
                 extra_info={"stream": "textual"})
        if asyncio.iscoroutine(out):
            out = asyncio.run(out)
        assert out["score"] == pytest.approx(1.0 + 2.0)


@pytest.mark.parametrize(
    "text, ours, paper",
    [
        ("<think>red</think><answer>red</answer>", 1.0, 1.0),
        ("<think>red</think> so: <answer>red</answer>", 0.0, 1.0),  # text between the blocks
        ("<think></think><answer>red</answer>", 0.0, 1.0),  # empty reasoning
        ("<think>a<think>b</think><answer>red</answer>", 0.0, 1.0),  # nested opener
        ("<think><box>[1,2,3,4]</box></think><answer>red</answer>", 0.0, 1.0),  # box in the textual stream
        ("hi <think>red</think><answer>red</answer>", 0.0, 0.0),
        ("<think>red</think><answer>red</answer> bye", 0.0, 0.0),
        ("<answer>red</answer><think>red</think>", 0.0, 0.0),
    ],
)
def test_paper_format_rule_is_a_switch(text, ours, paper):
    assert compute_score("s", text, "red", {"stream": "textual"})["format"] == ours
    assert compute_score("s", text, "red", {"stream": "textual"}, format_rule="paper")["format"] == paper


def test_paper_format_rule_asks_no_box_of_the_grounded_stream():
    text = "<think>the red cup</think><answer>red</answer>"
    assert compute_score("s", text, "red", grounded())["format"] == 0.0
    assert compute_score("s", text, "red", grounded(), format_rule="paper")["format"] == 1.0


# ------------------------------------------------------------------------ judge policy (issue 11)
def _judge(url, **kw):
    return {"base_url": url, "timeout_s": 1.0, "max_retries": 0, "backoff_s": 0.001, **kw}


def test_judge_all_with_the_judge_down_keeps_the_rule_verdict():
    from judge_server import dead_port

    from reward_score.judge import OUTCOME_CODES

    text = "<think>x</think><answer>B</answer>"
    judge = _judge(f"http://127.0.0.1:{dead_port()}/v1")
    for result in (asyncio.run(compute_score_async("s", text, "B", {"stream": "textual"}, judge_all=True, judge=judge)),
                   compute_score("s", text, "B", {"stream": "textual"}, judge_all=True, judge=judge)):
        assert (result["acc"], result["acc_undecided"]) == (1.0, 0.0)  # was 0: the rule verdict was thrown away
        assert result["acc_judge"] == OUTCOME_CODES["connection_error"]
        assert tuple(result) == RESULT_KEYS


def test_sync_compute_score_honours_judge_all(judge_server):
    judge_server.reset()
    judge_server.script(default=ok("The prediction differs.\nVerdict: 0"))
    text = "<think>x</think><answer>B</answer>"
    judge = _judge(judge_server.url, cache_size=0)
    rules = compute_score("s", text, "B", {"stream": "textual"}, judge=judge)
    assert rules["acc"] == 1.0 and rules["acc_judge"] == 0.0 and judge_server.count == 0
    judged = compute_score("s", text, "B", {"stream": "textual", "question": "Q?"}, judge_all=True, judge=judge)
    assert judged["acc"] == 0.0 and judged["acc_judge"] == 1.0 and judge_server.count == 1  # 1 = "ok"
    judge_server.reset()


def test_undecided_answer_with_a_failing_judge_is_flagged_and_coded(judge_server):
    from reward_score.judge import OUTCOME_CODES

    judge_server.reset()
    judge_server.script(default=status(503))
    text = "<think>x</think><answer>navy</answer>"
    result = asyncio.run(compute_score_async("s", text, "blue", {"stream": "single"}, judge=_judge(judge_server.url)))
    assert (result["acc"], result["acc_undecided"]) == (0.0, 1.0)
    assert result["acc_judge"] == OUTCOME_CODES["server_error"]
    judge_server.reset()
