"""Scoring library for grounded-reasoning RL (iVGR): parsing, box frames, IoU, format, answers, judge.

Pure Python; importable without a GPU; no network unless a judge is configured.
"""

from reward_score.answers import Verdict, match_answer
from reward_score.config import RewardConfig, RewardWeights, reward_config
from reward_score.frames import resized_size, to_model_frame, to_original_pixels
from reward_score.iou import box_scores, iou_reward
from reward_score.parsing import ParsedBoxes, ParsedResponse, parse_boxes, parse_response
from reward_score.result import RESULT_KEYS, RewardInput, RewardScore, with_consistency
from reward_score.scoring import compute_score, compute_score_async, score_rollout, score_rollout_async

__all__ = [
    "RESULT_KEYS", "ParsedBoxes", "ParsedResponse", "RewardConfig", "RewardInput", "RewardScore", "RewardWeights",
    "Verdict", "box_scores", "compute_score", "compute_score_async", "iou_reward", "match_answer",
    "parse_boxes", "parse_response", "resized_size", "reward_config", "score_rollout", "score_rollout_async",
    "to_model_frame", "to_original_pixels", "with_consistency",
]
