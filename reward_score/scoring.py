"""Per-rollout reward: verl's custom reward function `compute_score` and its async twin.

Components (paper defaults; weights in `RewardConfig.weights`):
- grounded: format + box_valid + IoU + accuracy            (range 0..4)
- textual:  format + accuracy (+ consistency, added later by the step stage; range 0..3)
- single:   format + 1.5·accuracy                          (range 0..2.5)

Every call returns the same keys for every stream (verl turns them into `reward_extra_info`):
`score, format, acc, acc_undecided, iou, box_valid, num_boxes, invalid_boxes, duplicate_boxes,
consistency, gt_error, math_timeout, acc_judge`. `gt_error` is 1 when the row's ground truth is unusable
(a malformed box, an empty reference answer: scored 0 there, never sent to the judge). Box counts refer to the whole response; IoU is
computed in the model's frame (see `reward_score.frames`). `acc_judge` is 0 when no accuracy judge
call was made, else the code of its outcome (`reward_score.judge.OUTCOME_CODES`); the step stage
turns the codes into per-step counts.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from reward_score.answers import Verdict, acceptable_answers, contains_answer, resolve_math, rule_verdict
from reward_score.background import BackgroundLoop
from reward_score.config import RewardConfig, reward_config
from reward_score.format import STREAMS, format_reward
from reward_score.frames import to_model_frame
from reward_score.iou import box_scores
from reward_score.parsing import Box, ParsedResponse, parse_boxes, parse_response

logger = logging.getLogger(__name__)
_gt_errors = 0

EMPTY_REFERENCE = "empty_reference"  # Verdict.rule of a row whose reference answer is empty (acc 0, gt_error 1)
JUDGE_DEADLINE = "judge_deadline"  # setting: time.monotonic() after which accuracy-judge calls are cancelled

RESULT_KEYS = ("score", "format", "acc", "acc_undecided", "iou", "box_valid", "num_boxes",
               "invalid_boxes", "duplicate_boxes", "consistency", "gt_error", "math_timeout", "acc_judge")


def _clean_gt_boxes(raw: Any) -> list[Box]:
    """GT boxes from extra_info (lists, tuples or numpy arrays); malformed ones raise ValueError."""
    boxes = []
    for box in raw if raw is not None else ():
        values = [float(v) for v in box]
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"malformed ground-truth box {values!r}")
        if not (values[0] < values[2] and values[1] < values[3]):
            raise ValueError(f"degenerate ground-truth box {values!r}")
        boxes.append(tuple(values))
    return boxes


def gt_boxes_in_model_frame(extra_info: Mapping[str, Any], default_frame: str = "qwen2_5_vl") -> list[Box]:
    """`extra_info["gt_boxes"]` (original pixels of an image of `image_size`) in the model's frame."""
    boxes = _clean_gt_boxes(extra_info.get("gt_boxes"))
    if not boxes:
        return []
    image_size = extra_info.get("image_size")
    if image_size is None or len(image_size) != 2:
        raise ValueError(f"extra_info.image_size must be [width, height], got {image_size!r}")
    return to_model_frame(boxes, image_size, extra_info.get("box_frame") or default_frame,
                          extra_info.get("min_pixels"), extra_info.get("max_pixels"))


def _rule_part(solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None,
               cfg: RewardConfig) -> tuple[dict[str, float], str, ParsedResponse, Verdict]:
    """Everything but accuracy: format and box terms, plus the rule verdict on the answer."""
    extra_info = extra_info or {}
    stream = extra_info.get("stream") or "single"
    if stream not in STREAMS:
        raise ValueError(f"extra_info.stream must be one of {STREAMS}, got {stream!r}")
    parsed = parse_response(solution_str)
    result = dict.fromkeys(RESULT_KEYS, 0.0)
    strict = cfg.box_syntax == "strict"
    if stream == "grounded":
        all_boxes = parse_boxes(solution_str, max_boxes=cfg.max_boxes, strict=strict)
        result["format"] = format_reward(parsed, stream, all_boxes, cfg.format_rule)
        try:
            gt = gt_boxes_in_model_frame(extra_info, cfg.default_box_frame)
        except (ValueError, TypeError) as err:
            _log_gt_error(err, extra_info)
            gt, result["gt_error"] = [], 1.0
        num_invalid = sum(all_boxes.invalid.values())
        box_valid, iou, duplicates = box_scores(all_boxes.valid, num_invalid, gt,
                                                variant=cfg.iou_variant, duplicate_penalty=cfg.duplicate_penalty)
        result.update(box_valid=box_valid, iou=iou, num_boxes=float(all_boxes.total),
                      invalid_boxes=float(num_invalid), duplicate_boxes=float(duplicates))
    else:
        result["format"] = format_reward(parsed, stream, rule=cfg.format_rule)
    reference = "" if ground_truth is None else str(ground_truth)
    if not reference.strip():  # a row without a reference answer: counted, never sent to the judge
        _log_gt_error(ValueError("empty reference answer"), extra_info)
        result["gt_error"] = 1.0
        return result, stream, parsed, Verdict(False, EMPTY_REFERENCE)
    question = extra_info.get("question")
    verdict = rule_verdict(parsed.answer, reference,
                           extra_info.get("answer_type"), extra_info.get("choices"),
                           question=str(question) if question is not None else None,
                           number_rel_tol=cfg.number_rel_tol, max_answer_chars=cfg.max_answer_chars)
    return result, stream, parsed, verdict


def _math_check(verdict: Verdict, cfg: RewardConfig) -> bool | None | str:
    from reward_score.mathcheck import math_pool

    return math_pool(cfg.math_workers, cfg.math_timeout_s).check(*verdict.pending)


def _with_math(result: dict[str, float], verdict: Verdict, outcome: bool | None | str) -> Verdict:
    verdict = resolve_math(verdict, outcome)
    if verdict.rule == "math_timeout":
        result["math_timeout"] = 1.0
    return verdict


def _log_gt_error(err: Exception, extra_info: Mapping[str, Any]) -> None:
    global _gt_errors
    _gt_errors += 1
    if _gt_errors <= 10 or _gt_errors % 1000 == 0:
        logger.warning("ground-truth boxes unusable for sample %s (%d so far): %s; scoring IoU as 0",
                       extra_info.get("sample_id"), _gt_errors, err)


def _finish(result: dict[str, float], stream: str, acc: float, undecided: bool,
            cfg: RewardConfig) -> dict[str, float]:
    w = cfg.weights
    result["acc"] = acc
    result["acc_undecided"] = 1.0 if undecided else 0.0
    if stream == "grounded":
        result["score"] = (w.format * result["format"] + w.box_valid * result["box_valid"]
                           + w.iou * result["iou"] + w.accuracy * acc)
    elif stream == "textual":
        result["score"] = w.format * result["format"] + w.accuracy * acc
    else:
        result["score"] = w.single_format * result["format"] + w.single_accuracy * acc
    return result


def _fallback_acc(parsed: ParsedResponse, ground_truth: Any, cfg: RewardConfig) -> float:
    if cfg.undecided_fallback == "contains" and contains_answer(parsed.answer, str(ground_truth)):
        return 1.0
    return 0.0


def _answers_of(ground_truth: Any, extra_info: Mapping[str, Any] | None) -> list[str]:
    """The sample's acceptable answers (`reward_score.answers.acceptable_answers`): the ground truth
    first, then `extra_info["answers"]` (data_prep's list)."""
    return acceptable_answers(ground_truth, (extra_info or {}).get("answers"))


def _best(results: list[dict[str, float]]) -> dict[str, float]:
    return max(results, key=lambda r: (r["acc"], -r["acc_undecided"], r["score"]))


def any_acceptable_answer(score_fn: Callable) -> Callable:
    """Wrap a per-rollout scorer so that a rollout matching ANY acceptable answer is correct: the
    scorer runs once per answer of `reward_score.answers.acceptable_answers` (stopping at the first
    decisive match) and the best result is kept. A sample with one answer is scored exactly as before."""
    if inspect.iscoroutinefunction(score_fn):
        @functools.wraps(score_fn)
        async def wrapped_async(data_source, solution_str, ground_truth, extra_info=None, **settings):
            results = []
            for answer in _answers_of(ground_truth, extra_info):
                results.append(await score_fn(data_source, solution_str, answer, extra_info, **settings))
                if results[-1]["acc"] == 1.0 and not results[-1]["acc_undecided"]:
                    break
            return _best(results)
        return wrapped_async

    @functools.wraps(score_fn)
    def wrapped(data_source, solution_str, ground_truth, extra_info=None, **settings):
        results = []
        for answer in _answers_of(ground_truth, extra_info):
            results.append(score_fn(data_source, solution_str, answer, extra_info, **settings))
            if results[-1]["acc"] == 1.0 and not results[-1]["acc_undecided"]:
                break
        return _best(results)
    return wrapped


@any_acceptable_answer
def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, float]:
    """verl custom reward function: rule-only score of one rollout (no network).

    `extra_info` keys: `stream` ("grounded" | "textual" | "single", default single), `gt_boxes`
    (ORIGINAL pixels), `image_size` ([width, height], original), `box_frame` ("qwen2_5_vl" |
    "qwen3_vl"), `min_pixels`/`max_pixels` (the processor's bounds), `answer_type`, `choices`,
    `answers` (every acceptable answer; any match is correct, see `any_acceptable_answer`).
    `settings` are RewardConfig fields (verl's reward_kwargs). Undecided answers score acc 0
    (or the `undecided_fallback`) and are flagged `acc_undecided = 1`. With `settings["judge"]`
    (a `base_url`) it applies `compute_score_async`'s judge policy, `judge_all` included.
    """
    judge_settings = settings.get("judge")
    if judge_settings and judge_settings.get("base_url"):
        # the same judge policy as compute_score_async (undecided answers, `judge_all`), on one
        # background event loop per process so the connection pool and cache are shared
        # (the unwrapped coroutine: this call already runs once per acceptable answer)
        return _sync_loop().run(compute_score_async.__wrapped__(data_source, solution_str, ground_truth, extra_info,
                                                                **settings))
    settings.pop(JUDGE_DEADLINE, None)
    cfg = reward_config(settings)
    result, stream, parsed, verdict = _rule_part(solution_str, ground_truth, extra_info, cfg)
    if verdict.pending is not None:
        verdict = _with_math(result, verdict, _math_check(verdict, cfg))
    if verdict.decisive:
        return _finish(result, stream, float(verdict.correct), False, cfg)
    return _finish(result, stream, _fallback_acc(parsed, ground_truth, cfg), True, cfg)


@any_acceptable_answer
async def compute_score_async(data_source: str, solution_str: str, ground_truth: Any,
                              extra_info: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, float]:
    """Like `compute_score`, but an undecided answer goes to the judge configured under
    `settings["judge"]` (JudgeConfig fields; needs `base_url`). A judge failure keeps acc at the
    fallback value and `acc_undecided = 1` (counted in the client's stats and logged); with
    `judge_all` a failed judge call keeps the rule's decisive verdict. `acc_judge` records the
    call's outcome. `settings["judge_deadline"]` (`time.monotonic()` seconds) cancels a judge call still
    open then (outcome `cancelled`): the per-step judge budget of the trainer. math-verify runs in a
    worker thread (waiting on the math process pool), so the event loop keeps serving in-flight judge
    requests."""
    settings = dict(settings)
    judge_settings = settings.pop("judge", None)
    deadline = settings.pop(JUDGE_DEADLINE, None)
    cfg = reward_config(settings)
    loop = asyncio.get_running_loop()
    if RULES_IN_THREAD and judge_settings and judge_settings.get("base_url"):
        # the CPU part runs in one side thread, so that judge requests already due go out while the
        # rest of the batch is scored (inline, 5,000 rollouts submitted at once would delay the
        # first request by their whole scoring time)
        result, stream, parsed, verdict = await loop.run_in_executor(
            _rule_executor(), _rule_part, solution_str, ground_truth, extra_info, cfg)
    else:
        result, stream, parsed, verdict = _rule_part(solution_str, ground_truth, extra_info, cfg)
    if verdict.pending is not None:
        outcome = await loop.run_in_executor(None, _math_check, verdict, cfg)
        verdict = _with_math(result, verdict, outcome)
    if verdict.decisive and not (cfg.judge_all and verdict.rule not in ("empty", "too_long", EMPTY_REFERENCE)):
        return _finish(result, stream, float(verdict.correct), False, cfg)
    client = shared_judge_client(judge_settings)
    if client is not None:
        from reward_score.judge import OUTCOME_CODES, judge_answer

        question = str((extra_info or {}).get("question") or "")
        judged = await _before(deadline, judge_answer(client, question, str(ground_truth), parsed.answer or ""))
        result["acc_judge"] = float(OUTCOME_CODES[judged.outcome])
        if judged.value is not None:
            return _finish(result, stream, float(bool(judged.value)), False, cfg)
    if verdict.decisive:  # judge_all and the judge did not answer: the rule's verdict stands
        return _finish(result, stream, float(verdict.correct), False, cfg)
    return _finish(result, stream, _fallback_acc(parsed, ground_truth, cfg), True, cfg)


async def _before(deadline: float | None, call):
    """Await a judge call, cancelled at `deadline` (`time.monotonic()` seconds; None: no limit): the
    outcome is then `cancelled`, counted like every other judge failure."""
    if deadline is None:
        return await call
    from reward_score.judge import OUTCOME_CANCELLED, JudgeResult

    left = deadline - time.monotonic()
    if left <= 0:
        call.close()  # never started
        return JudgeResult(None, OUTCOME_CANCELLED, 0, 0.0, None)
    try:
        return await asyncio.wait_for(call, left)
    except asyncio.TimeoutError:
        return JudgeResult(None, OUTCOME_CANCELLED, 0, left, None)


_executor: ThreadPoolExecutor | None = None
RULES_IN_THREAD = True  # benchmarks compare with the rule part inline on the event loop


def _rule_executor() -> ThreadPoolExecutor:
    """One thread per process for the rule part of `compute_score_async` (pure Python: more threads
    would only contend for the GIL)."""
    global _executor
    with _loop_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reward-rules")
        return _executor


_loop_thread: BackgroundLoop | None = None
_loop_lock = threading.Lock()


def _sync_loop() -> BackgroundLoop:
    global _loop_thread
    with _loop_lock:
        if _loop_thread is None:
            _loop_thread = BackgroundLoop("reward-judge-loop")
        return _loop_thread


_clients: dict[tuple, Any] = {}


def shared_judge_client(judge_settings: Mapping[str, Any] | None):
    """One JudgeClient per distinct judge configuration in this process (None when disabled)."""
    if not judge_settings or not judge_settings.get("base_url"):
        return None
    from reward_score.judge import JudgeClient, JudgeConfig

    key = tuple(sorted((str(k), str(v)) for k, v in judge_settings.items()))
    if key not in _clients:
        _clients[key] = JudgeClient(JudgeConfig.from_mapping(judge_settings))
    return _clients[key]
