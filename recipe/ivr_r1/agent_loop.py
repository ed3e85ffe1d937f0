"""verl agent loop `ivr_r1_agent`: one rollout, then (when screened) erosion localization and the
Re-Reasoning Loop on the policy's own rollout server, all inside verl's rollout phase.

Wiring (config only, see config/agent_loop.yaml): ``actor_rollout_ref.rollout.agent.agent_loop_config_path``
registers the class under ``ivr_r1_agent``; `recipe.ivr_r1.trainer.IVRR1Trainer` sets the per-row
``agent_name`` on TRAINING batches only, so validation keeps verl's default single-turn loop and
measures the policy, never a rectified output.

Group-level screening: verl runs the n sessions of one prompt (same ``uid``) as tasks in ONE
AgentLoopWorker process and event loop (`AgentLoopWorkerTQ._run_prompt`). Each session posts its
verdict (rules, then the optional verify judge) to a per-process board keyed by uid and waits until
all n have posted (bounded by ``group_wait_s``; late sessions are counted and left alone); the first
to wake screens the group (`screening.screen_group`). Selected sessions then attribute and re-reason
concurrently with every other session in the worker; the GPU server batches their requests.

Output (``optimization.mode=replace``): a rectified trajectory replaces the session's output, so it
enters its GRPO group and is re-scored by the reward workers like any rollout; ``response_mask`` is 0 on
the cue (and on the kept prefix unless ``optimization.prefix_in_loss``). Every session writes
``extra_fields["ivr_r1"]`` (status, rounds, steps, reasons, timings, original/rectified texts) for
the trainer's metrics and dumps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from recipe.ivr_r1.attribution import JudgeAttributor, PolicyAttributor
from recipe.ivr_r1.rereason import Generation, Trajectory, rectify
from recipe.ivr_r1.screening import screen_group
from recipe.ivr_r1.settings import DEMO_FIELD, IVRR1Settings
from reward_score.answers import match_answer
from reward_score.parsing import parse_response

logger = logging.getLogger(__name__)


class _Group:
    """Verdicts of one uid's sessions; decided once, by the first session to wake."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.verdicts: dict[int, bool | None] = {}
        self.full = asyncio.Event()
        self.screening = None
        self.timed_out = False
        self.readers = 0


class _TextTokenizer:
    """The rereason loop's tokenizer view: plain text, special tokens skipped, consistently."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


class IVRR1AgentLoop(SingleTurnAgentLoop):
    _groups: dict[str, _Group] = {}
    _clients: dict[str, Any] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ivr = IVRR1Settings.from_config(self.config)
        self.text_tokenizer = _TextTokenizer(self.tokenizer)

    # ------------------------------------------------------------------ shared per-process state
    @classmethod
    def _client(cls, mapping: dict) -> Any:
        """One JudgeClient per distinct config in this process (its pool, cache and stats persist)."""
        from reward_score.judge import JudgeClient, JudgeConfig

        key = json.dumps(mapping, sort_keys=True, default=str)
        if key not in cls._clients:
            cls._clients[key] = JudgeClient(JudgeConfig.from_mapping(mapping))
        return cls._clients[key]

    async def _screen(self, uid: str, session: int, verdict: bool | None) -> str:
        group = self._groups.get(uid)
        if group is None:
            group = self._groups[uid] = _Group(int(self.rollout_config.n))
        if group.screening is not None:  # decided without us (we were late)
            reason = "late"
        else:
            group.verdicts[session] = verdict
            if len(group.verdicts) >= group.expected:
                group.full.set()
            try:
                await asyncio.wait_for(group.full.wait(), self.ivr.group_wait_s)
            except asyncio.TimeoutError:
                group.timed_out = True
            if group.screening is None:
                group.screening = screen_group(dict(group.verdicts), self.ivr.screen)
            reason = group.screening.reason.get(session, "late")
        group.readers += 1
        if group.readers >= group.expected:
            self._groups.pop(uid, None)
        return reason

    # ------------------------------------------------------------------ pieces
    async def _verify(self, text: str, kwargs: dict) -> bool | None:
        """Rules first; the verify judge (``ivr_r1.verify.judge``) only when rules cannot decide."""
        extra = dict(kwargs.get("extra_info") or {})
        gt = str((kwargs.get("reward_model") or {}).get("ground_truth", ""))
        answer = parse_response(text).answer
        verdict = match_answer(answer, gt, extra.get("answer_type"), extra.get("choices")).correct
        if verdict is None and answer and self.ivr.verify_judge.get("base_url"):
            from reward_score.judge import judge_answer

            result = await judge_answer(self._client(self.ivr.verify_judge), str(extra.get("question") or ""), gt,
                                        answer)
            verdict = result.value
        return verdict

    def _attributor(self, sampling_params: dict):
        if self.ivr.attributor_kind == "judge":
            return JudgeAttributor(self._client(self.ivr.attributor_judge), self.ivr.send_reference_answer)
        policy = self.ivr.attributor_policy

        async def generate_text(messages, images):
            prompt_ids = await self.ct_build_initial_tokens(messages, images=list(images) or None, mm_inputs_out={})
            out = await self.server_manager.generate(
                request_id=uuid4().hex, prompt_ids=prompt_ids,
                sampling_params={**sampling_params, "temperature": float(policy.get("temperature", 0.0)),
                                 "max_tokens": int(policy.get("max_tokens", 256))},
                image_data=list(images) or None)
            return self.tokenizer.decode(out.token_ids, skip_special_tokens=True)

        return PolicyAttributor(generate_text, int(policy.get("max_retries", 2)), float(policy.get("timeout_s", 120)),
                                self.ivr.send_reference_answer)

    # ------------------------------------------------------------------ the loop
    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput | list[AgentLoopOutput]:
        output = await super().run(sampling_params, **kwargs)
        if not self.ivr.enable:
            return output
        t0 = time.perf_counter()
        original_text = self.text_tokenizer.decode(output.response_ids)
        verdict = await self._verify(original_text, kwargs)
        reason = await self._screen(str(kwargs["uid"]), int(kwargs.get("session_id", 0)), verdict)
        info: dict[str, Any] = {"screen": reason, "status": "not_screened", "correct": verdict}
        if reason != "selected":
            output.extra_fields["ivr_r1"] = info
            return output

        images = list((output.multi_modal_data or {}).get("images") or [])
        extra = dict(kwargs.get("extra_info") or {})
        gt = str((kwargs.get("reward_model") or {}).get("ground_truth", ""))

        async def generate(prompt_ids: list[int], max_tokens: int) -> Generation:
            out = await self.server_manager.generate(
                request_id=uuid4().hex, prompt_ids=prompt_ids,
                sampling_params={**sampling_params, "max_tokens": int(max_tokens)}, image_data=images or None)
            return Generation(list(out.token_ids), list(out.log_probs) if out.log_probs else None)

        async def verify(text: str) -> bool | None:
            return await self._verify(text, kwargs)

        result = await rectify(
            prompt_ids=output.prompt_ids,
            original=Trajectory(list(output.response_ids), list(output.response_mask),
                                list(output.response_logprobs) if output.response_logprobs else None),
            question=str(extra.get("question") or ""), images=images, reference_answer=gt,
            tokenizer=self.text_tokenizer, attributor=self._attributor(sampling_params), generate=generate,
            verify=verify, settings=self.ivr.rereason, response_length=int(self.response_length))
        info.update(result.summary())
        info["seconds"] = time.perf_counter() - t0
        if self.ivr.keep_texts:
            info["original_text"] = original_text
            info["rectified_text"] = result.rounds[-1].text if result.rounds else ""
        if result.status != "rectified":
            output.extra_fields["ivr_r1"] = info
            return output
        t = result.trajectory
        rectified = output.model_copy(update={
            "response_ids": t.ids, "response_mask": t.mask,
            "response_logprobs": t.log_probs if output.response_logprobs else None,
            "routed_experts": None, "num_turns": output.num_turns + 1,
            "extra_fields": {**output.extra_fields, "ivr_r1": info},
        })
        if self.ivr.optimization_mode == "replace":
            return rectified
        # aux_nll: the demonstration goes first, the flawed rollout last: verl's GRPO uses the last output
        # of a session for the group statistics and the trainer marks the demonstration for the NLL term
        rectified.extra_fields[DEMO_FIELD] = True
        output.extra_fields["ivr_r1"] = info
        return [rectified, output]
