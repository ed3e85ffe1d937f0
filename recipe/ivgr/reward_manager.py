"""Per-rollout reward in verl's reward-loop workers (streaming, while other rollouts still generate).

Plugged in with `reward.reward_manager.source=importlib`, `reward.reward_manager.name=IVGRRewardManager`,
`reward.reward_manager.module.path=pkg://recipe.ivgr.reward_manager`. Scores format, rule accuracy,
box validity and IoU with `reward_score`; answers the rules cannot decide go to the judge
(`reward_score.judge`, when `reward_score.judge_accuracy` is true) asynchronously. Consistency is not computed here:
it needs the whole step (see `recipe.ivgr.stage`).
"""

from __future__ import annotations

import time
from typing import Any

from omegaconf import OmegaConf
from verl import DataProto
from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

from reward_score.judge.policy import split_judge_settings
from reward_score.scoring import JUDGE_DEADLINE, score_rollout_async

REWARD_WAIT = "reward_wait_s"  # reward_extra_info: wall seconds of one rollout's scoring (judge calls included)


JUDGE_BUDGET = "judge_budget_s"  # key of `reward_settings`: the step's judge budget, seconds
# the config section of the per-rollout reward and its judge, in every recipe that uses this manager
# (iVGR and IVR-R1): `reward_score.RewardConfig` fields plus `judge` (JudgeConfig keys and the step policy)
REWARD_SECTION = "reward_score"


def reward_section(config: Any) -> dict[str, Any]:
    """The `reward_score:` section of the recipe config as a plain dict ({} when absent)."""
    if REWARD_SECTION not in config:
        return {}
    return dict(OmegaConf.to_container(config[REWARD_SECTION], resolve=True) or {})


def reward_settings(config: Any) -> dict[str, Any]:
    """reward_score settings from the recipe config: the `reward_score:` section, its `judge` reduced to
    the client's keys and given only when it has a `base_url`, with the step's judge budget
    (`reward_score.judge.step_deadline_s`)."""
    settings = reward_section(config)
    judge, step_policy = split_judge_settings(settings.pop("judge", None))
    if judge.get("base_url"):
        settings["judge"] = judge
        settings[JUDGE_BUDGET] = step_policy.step_deadline_s
    return settings


async def score_response(text: str, data_source: str, ground_truth: Any, extra_info: dict | None,
                         settings: dict[str, Any]) -> dict:
    """verl's reward-loop result for one decoded response: ``{"reward_score", "reward_extra_info"}``
    (the `RewardScore` as its dict, the `<think>` text as ``think`` and ``reward_wait_s``, the
    seconds this scoring took). Shared with the IVR-R1 agent loop, which scores its own outputs with it
    so the judge is asked once per answer.

    The step's judge budget (`settings["judge_budget_s"]`, seconds): this rollout's accuracy-judge
    calls (every acceptable answer, retries included) are cancelled that long after its scoring began,
    so the last reward of a step arrives at most that long after the last rollout was generated; the
    step stage gives the consistency calls what is left of it (`recipe.ivgr.stage.ConsistencyStage`)."""
    start = time.monotonic()
    settings = dict(settings)
    budget = settings.pop(JUDGE_BUDGET, None)
    if budget is not None:
        settings[JUDGE_DEADLINE] = start + float(budget)
    result, parsed = await score_rollout_async(text, ground_truth, dict(extra_info or {}), **settings)
    info: dict[str, Any] = result.as_dict()
    info["think"] = parsed.think or ""  # from the reward's own parse: the text is parsed once
    info[REWARD_WAIT] = time.monotonic() - start
    return {"reward_score": result.score, "reward_extra_info": info}


class IVGRRewardManager(RewardManagerBase):
    """Adds the rollout's `<think>` text (`think`, a string) to reward_extra_info so the step stage can
    build references and judge prompts without decoding responses again."""

    def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                 reward_model_tokenizer=None) -> None:
        super().__init__(config, tokenizer, compute_score)
        self.settings = reward_settings(config)

    async def run_single(self, data: DataProto) -> dict:
        item = data[-1]  # multi-output agent loops: score the last output
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1]:].sum())
        # decoded on the reward loop itself: one response takes a fraction of a millisecond, less than
        # the hop to a worker thread and back that verl's naive manager pays for it
        text = self.tokenizer.decode(response_ids[:valid], skip_special_tokens=True)
        return await score_response(text, item.non_tensor_batch["data_source"],
                                    item.non_tensor_batch["reward_model"]["ground_truth"],
                                    item.non_tensor_batch.get("extra_info"), self.settings)
