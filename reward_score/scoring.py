"""Per-rollout reward: verl's custom reward function `compute_score` and its async twin.

Components (paper defaults; weights in `RewardConfig.weights`):
- grounded: format + box_valid + IoU + accuracy            (range 0..4)
- textual:  format + accuracy + consistency (consistency 0 here; the step stage sets it with
            `reward_score.result.with_consistency`; range 0..3)
- single:   format + 1.5·accuracy                          (range 0..2.5)

The result is a `reward_score.result.RewardScore` (`score_rollout`, `score_rollout_async`);
verl's entry points `compute_score` / `compute_score_async` return it as a dict (`RewardScore.as_dict`:
the same keys for every stream, which verl turns into `reward_extra_info`). `gt_error` is 1 when the row's ground truth is unusable
(a malformed box, an empty reference answer: scored 0 there, never sent to the judge). Box counts refer to the whole response; IoU is
computed in the model's frame (see `reward_score.frames`). `acc_judge` is 0 when no accuracy judge
call was made, else the code of its outcome (`reward_score.judge.JudgeOutcome.code`); the step stage
turns the codes into per-step counts.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

from reward_score.answers import Verdict, contains_answer, resolve_math, rule_verdict
from reward_score.background import process_loop
from reward_score.config import RewardConfig, reward_config
from reward_score.families import DEFAULT_FAMILY
from reward_score.format import format_reward
from reward_score.frames import to_model_frame
from reward_score.iou import box_scores
from reward_score.parsing import Box, ParsedResponse, parse_boxes, parse_response
from reward_score.result import RESULT_KEYS, RewardInput, RewardScore, stream_score  # noqa: F401 (re-export)

logger = logging.getLogger(__name__)
_gt_errors = 0

EMPTY_REFERENCE = "empty_reference"  # Verdict.rule of a row whose reference answer is empty (acc 0, gt_error 1)
JUDGE_DEADLINE = "judge_deadline"  # setting: time.monotonic() after which accuracy-judge calls are cancelled


def _clean_gt_boxes(raw: Any) -> list[Box]:
    """GT boxes from extra_info (lists, tuples or numpy arrays); malformed ones raise ValueError."""
    boxes = []
    for box in raw if raw is not None else ():
        values = [float(v) for v in box]
        if len(values) == 4:
            x1, y1, x2, y2 = values
            if -math.inf < x1 < x2 < math.inf and -math.inf < y1 < y2 < math.inf:  # finite, ordered
                boxes.append((x1, y1, x2, y2))
                continue
        if len(values) != 4 or not all(math.isfinite(v) for v in values):
            raise ValueError(f"malformed ground-truth box {values!r}")
        raise ValueError(f"degenerate ground-truth box {values!r}")
    return boxes


def gt_boxes_in_model_frame(extra_info: Mapping[str, Any], default_frame: str = DEFAULT_FAMILY) -> list[Box]:
    """`extra_info["gt_boxes"]` (original pixels of an image of `image_size`) in the model's frame."""
    boxes = _clean_gt_boxes(extra_info.get("gt_boxes"))
    if not boxes:
        return []
    image_size = extra_info.get("image_size")
    if image_size is None or len(image_size) != 2:
        raise ValueError(f"extra_info.image_size must be [width, height], got {image_size!r}")
    return to_model_frame(boxes, image_size, extra_info.get("box_frame") or default_frame,
                          extra_info.get("min_pixels"), extra_info.get("max_pixels"))


def _answer_free_terms(solution_str: str, parsed: ParsedResponse, row: RewardInput,
                       cfg: RewardConfig) -> RewardScore:
    """Every term that does not depend on the reference answer, computed once per rollout: format and
    box terms (IoU in the model's frame). Score and accuracy stay 0 (`_finish` sets them)."""
    if row.stream != "grounded":
        return RewardScore(format=format_reward(parsed, row.stream, rule=cfg.format_rule))
    all_boxes = parse_boxes(solution_str, max_boxes=cfg.max_boxes, strict=cfg.box_syntax == "strict")
    gt_error = 0.0
    try:
        gt = _model_frame_gt(row.extra_info, cfg.default_box_frame)
    except (ValueError, TypeError) as err:
        _log_gt_error(err, row.extra_info)
        gt, gt_error = [], 1.0
    num_invalid = sum(all_boxes.invalid.values())
    box_valid, iou, duplicates = box_scores(all_boxes.valid, num_invalid, gt,
                                            variant=cfg.iou_variant, duplicate_penalty=cfg.duplicate_penalty)
    return RewardScore(format=format_reward(parsed, row.stream, all_boxes, cfg.format_rule), box_valid=box_valid,
                       iou=iou, num_boxes=float(all_boxes.total), invalid_boxes=float(num_invalid),
                       duplicate_boxes=float(duplicates), gt_error=gt_error)


def _model_frame_gt(extra_info: Mapping[str, Any], default_frame: str) -> list[Box]:
    """GT boxes in the model's frame: `extra_info["gt_boxes_model"]` when the dataset already mapped
    them (`gt_boxes_for_reward`, where it resized the image), else mapped here from original pixels."""
    ready = extra_info.get("gt_boxes_model")
    if ready is not None:
        return _clean_gt_boxes(ready)
    return gt_boxes_in_model_frame(extra_info, default_frame)


def gt_boxes_for_reward(extra_info: Mapping[str, Any], default_frame: str = DEFAULT_FAMILY) -> list[list[float]] | None:
    """What the dataset stores as `extra_info["gt_boxes_model"]` so that the reward does not map the
    ground truth again per rollout: `gt_boxes_in_model_frame` as plain lists, or None when the row's
    ground truth is unusable (the reward then maps it itself and flags `gt_error`, as before)."""
    try:
        return [list(box) for box in gt_boxes_in_model_frame(extra_info, default_frame)]
    except (ValueError, TypeError):
        return None


def _rule_verdict(parsed: ParsedResponse, answer: Any, row: RewardInput, cfg: RewardConfig) -> Verdict:
    """The rules' verdict on the rollout's answer against ONE acceptable answer."""
    reference = "" if answer is None else str(answer)
    if not reference.strip():  # a row without a reference answer: counted, never sent to the judge
        _log_gt_error(ValueError("empty reference answer"), row.extra_info)
        return Verdict(False, EMPTY_REFERENCE)
    return rule_verdict(parsed.answer, reference, row.answer_type, row.choices, question=row.question,
                        number_rel_tol=cfg.number_rel_tol, max_answer_chars=cfg.max_answer_chars)


def _math_check(verdict: Verdict, cfg: RewardConfig) -> bool | None | str:
    from reward_score.mathcheck import math_pool

    return math_pool(cfg.math_workers, cfg.math_timeout_s).check(*verdict.pending)


def _log_gt_error(err: Exception, extra_info: Mapping[str, Any]) -> None:
    global _gt_errors
    _gt_errors += 1
    if _gt_errors <= 10 or _gt_errors % 1000 == 0:
        logger.warning("ground-truth boxes unusable for sample %s (%d so far): %s; scoring IoU as 0",
                       extra_info.get("sample_id"), _gt_errors, err)


class _Accuracy(NamedTuple):
    """Accuracy against one acceptable answer: value, undecided flag, math timeout, judge outcome code,
    and whether that reference answer was empty (a ground-truth error)."""

    acc: float
    undecided: bool
    math_timeout: bool = False
    judge_code: float = 0.0
    empty_reference: bool = False

    @property
    def decisive_match(self) -> bool:
        return self.acc == 1.0 and not self.undecided


def _better(best: _Accuracy | None, new: _Accuracy) -> _Accuracy:
    """The better of two answers' accuracies: higher acc, then decided over undecided; the earlier
    answer on a tie (the format and box terms do not depend on the answer)."""
    if best is None or (new.acc, not new.undecided) > (best.acc, not best.undecided):
        return new
    return best


def _fallback_acc(parsed: ParsedResponse, ground_truth: Any, cfg: RewardConfig) -> float:
    if cfg.undecided_fallback == "contains" and contains_answer(parsed.answer, str(ground_truth)):
        return 1.0
    return 0.0


def _rule_accuracy(parsed: ParsedResponse, verdict: Verdict, answer: Any, cfg: RewardConfig,
                   timed_out: bool = False) -> _Accuracy:
    if verdict.decisive:
        return _Accuracy(float(verdict.correct), False, timed_out, empty_reference=verdict.rule == EMPTY_REFERENCE)
    return _Accuracy(_fallback_acc(parsed, answer, cfg), True, timed_out)


def _finish(terms: RewardScore, stream: str, accuracy: _Accuracy, cfg: RewardConfig) -> RewardScore:
    """The rollout's reward: the answer-free `terms` plus the accuracy, weighted into `score`."""
    return terms.replaced_and_scored(stream, cfg.weights, acc=accuracy.acc,
                                     acc_undecided=1.0 if accuracy.undecided else 0.0,
                                     math_timeout=1.0 if accuracy.math_timeout else 0.0, acc_judge=accuracy.judge_code,
                                     gt_error=1.0 if accuracy.empty_reference else terms.gt_error)


def compute_score(data_source: str, solution_str: str, ground_truth: Any,
                  extra_info: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, float]:
    """verl custom reward function: `score_rollout` as the dict verl reads (`RewardScore.as_dict`)."""
    return score_rollout(solution_str, ground_truth, extra_info, **settings).as_dict()


def score_rollout(solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                  **settings: Any) -> RewardScore:
    """Rule-only reward of one rollout (no network unless a judge is configured, see below).

    `extra_info` keys: `stream` ("grounded" | "textual" | "single", default single), `gt_boxes`
    (ORIGINAL pixels), `image_size` ([width, height], original), `box_frame` ("qwen2_5_vl" |
    "qwen3_vl"), `min_pixels`/`max_pixels` (the processor's bounds), `gt_boxes_model` (optional: the
    same boxes already in the model's frame, see `gt_boxes_for_reward`), `answer_type`, `choices`,
    `answers` (every acceptable answer, `reward_score.answers.acceptable_answers`; a rollout matching
    ANY of them is correct: accuracy is
    decided per answer, stopping at the first decisive match, and the best kept; the format and box
    terms are computed once). `settings` are RewardConfig fields (verl's reward_kwargs). Undecided
    answers score acc 0 (or the `undecided_fallback`) and are flagged `acc_undecided = 1`. With
    `settings["judge"]` (a `base_url`) it applies `compute_score_async`'s judge policy, `judge_all`
    included.
    """
    judge_settings = settings.get("judge")
    if judge_settings and judge_settings.get("base_url") and settings.get("judge_accuracy", True):
        # the same judge policy as compute_score_async (undecided answers, `judge_all`), on one
        # background event loop per process so the connection pool and cache are shared
        result, _parsed = process_loop().run(score_rollout_async(solution_str, ground_truth, extra_info, **settings))
        return result
    settings.pop(JUDGE_DEADLINE, None)
    cfg = reward_config(settings)
    row = RewardInput.from_row(ground_truth, extra_info)
    parsed = parse_response(solution_str)
    terms = _answer_free_terms(solution_str, parsed, row, cfg)
    best = None
    for answer in row.answers:
        verdict = _rule_verdict(parsed, answer, row, cfg)
        timed_out = False
        if verdict.pending is not None:
            verdict = resolve_math(verdict, _math_check(verdict, cfg))
            timed_out = verdict.rule == "math_timeout"
        best = _better(best, _rule_accuracy(parsed, verdict, answer, cfg, timed_out))
        if best.decisive_match:
            break
    return _finish(terms, row.stream, best, cfg)


async def compute_score_async(data_source: str, solution_str: str, ground_truth: Any,
                              extra_info: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, float]:
    """Like `compute_score`, but an undecided answer goes to the judge configured under
    `settings["judge"]` (JudgeConfig fields; needs `base_url`). A judge failure keeps acc at the
    fallback value and `acc_undecided = 1` (counted in the client's stats and logged); with
    `judge_all` a failed judge call keeps the rule's decisive verdict. `acc_judge` records the
    call's outcome. `settings["judge_deadline"]` (`time.monotonic()` seconds) cancels a judge call still
    open then (outcome `cancelled`): the per-step judge budget of the trainer. math-verify runs in a
    worker thread (waiting on the math process pool; cached verdicts without one), so the event loop
    keeps serving in-flight judge requests. Returns `score_rollout_async`'s result as the dict verl
    reads (`RewardScore.as_dict`)."""
    result, _parsed = await score_rollout_async(solution_str, ground_truth, extra_info, **settings)
    return result.as_dict()


async def score_rollout_async(solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None,
                              **settings: Any) -> tuple[RewardScore, ParsedResponse]:
    """`compute_score_async`'s reward, typed, plus the parsed response, so a caller that needs the
    `<think>` text does not parse the rollout a second time.

    Order, for a step's rollouts scored at once on one event loop: parse and decide accuracy first
    (a judge request goes out right away), then, one loop iteration later, the format and box terms,
    so that they are computed while the judge requests of the step are in flight instead of before
    the first one leaves (the loop runs every ready rollout's step before it polls the sockets)."""
    settings = dict(settings)
    judge_settings = settings.pop("judge", None)
    deadline = settings.pop(JUDGE_DEADLINE, None)
    cfg = reward_config(settings)
    row = RewardInput.from_row(ground_truth, extra_info)
    client = shared_judge_client(judge_settings) if cfg.judge_accuracy else None
    parsed = parse_response(solution_str)
    loop = asyncio.get_running_loop()
    best = None
    for answer in row.answers:
        best = _better(best, await _answer_accuracy(parsed, answer, row, cfg, client, loop, deadline))
        if best.decisive_match:
            break
    if client is not None:
        await asyncio.sleep(0)  # let the requests just started go out before this CPU work
    terms = _answer_free_terms(solution_str, parsed, row, cfg)
    return _finish(terms, row.stream, best, cfg), parsed


async def _answer_accuracy(parsed: ParsedResponse, answer: Any, row: RewardInput, cfg: RewardConfig,
                           client, loop: asyncio.AbstractEventLoop, deadline: float | None = None) -> _Accuracy:
    """Accuracy against one acceptable answer: the rules (math-verify in a worker thread), then the
    judge for an undecided verdict (or for every non-empty answer with `judge_all`)."""
    verdict = _rule_verdict(parsed, answer, row, cfg)
    timed_out = False
    if verdict.pending is not None:
        from reward_score.mathcheck import math_pool

        hit, outcome = math_pool(cfg.math_workers, cfg.math_timeout_s).cached(*verdict.pending)
        if not hit:  # a worker thread waits on the math process (GIL released); the loop goes on
            outcome = await loop.run_in_executor(None, _math_check, verdict, cfg)
        verdict = resolve_math(verdict, outcome)
        timed_out = verdict.rule == "math_timeout"
    if verdict.decisive and not (cfg.judge_all and verdict.rule not in ("empty", "too_long", EMPTY_REFERENCE)):
        return _rule_accuracy(parsed, verdict, answer, cfg, timed_out)
    if client is not None:
        from reward_score.judge import JudgeOutcome, judge_answer

        question = row.question or ""
        judged = await _before(deadline, judge_answer(client, question, str(answer), parsed.answer or ""))
        code = float(JudgeOutcome(judged.outcome).code)
        if judged.value is not None:
            return _Accuracy(float(bool(judged.value)), False, timed_out, code)
        # judge_all and the judge did not answer: the rule's verdict stands
        return _rule_accuracy(parsed, verdict, answer, cfg, timed_out)._replace(judge_code=code)
    return _rule_accuracy(parsed, verdict, answer, cfg, timed_out)


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


_clients: dict[tuple, Any] = {}
_last_client: tuple[Any, dict, Any] | None = None  # (settings mapping, its contents then, client)


def shared_judge_client(judge_settings: Mapping[str, Any] | None):
    """One JudgeClient per distinct judge configuration in this process (None when disabled)."""
    global _last_client
    if not judge_settings or not judge_settings.get("base_url"):
        return None
    last = _last_client
    if last is not None and last[0] is judge_settings and last[1] == judge_settings:
        return last[2]  # the same settings object as the last call, unchanged: every rollout of a run
    from reward_score.judge import JudgeClient, JudgeConfig

    key = tuple(sorted((str(k), str(v)) for k, v in judge_settings.items()))
    if key not in _clients:
        _clients[key] = JudgeClient(JudgeConfig.from_mapping(judge_settings))
    _last_client = (judge_settings, dict(judge_settings), _clients[key])
    return _clients[key]
