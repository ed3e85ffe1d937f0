"""verl agent loop `ivr_r1_agent`: one rollout, then (when screened) erosion localization and the
Re-Reasoning Loop on the policy's own rollout server, all inside verl's rollout phase.

Wiring (config only, see config/agent_loop.yaml): ``actor_rollout_ref.rollout.agent.agent_loop_config_path``
registers the class under ``ivr_r1_agent``; `recipe.ivr_r1.trainer.IVRR1Trainer` sets the per-row
``agent_name`` on TRAINING batches only, so validation keeps verl's default single-turn loop and
measures the policy, never a rectified output.

Verdicts and rewards: each output is scored in the session with the recipe's reward
(`recipe.ivgr.reward_manager.score_response`: rules, then the `reward_score.judge` for undecided answers);
the verdict is that score's accuracy (``acc_undecided`` = undecided). When the configured reward
manager is the recipe's `IVGRRewardManager`, the session hands the score to verl as the output's
``reward_score`` / ``reward_extra_info``, so verl's reward workers skip it (`_compute_score` runs only
when ``reward_score is None``): one judge call per answer, not one for screening and one for reward.

Group-level screening: verl runs the n sessions of one prompt (same ``uid``) as tasks in ONE
AgentLoopWorker process and event loop (`AgentLoopWorkerTQ._run_prompt`; n = the row's
``__rollout_n__``, which verl pops before the loop sees it, so `IVRR1Trainer` copies it to
``ivr_r1_group_n``; else ``rollout.n``). Each session posts its verdict to a per-process board keyed
by uid and waits until all n have posted (bounded by ``group_wait_s``; late sessions are counted and
left alone); the first to wake screens the group (`screening.screen_group`). A session that fails
before posting marks its group failed: verl drops the whole group, so the others stop waiting and
skip rectification (``group_failed``); the board entry is removed once every session has left.
Selected sessions then attribute and re-reason concurrently with every other session in the worker;
the GPU server batches their requests. The regeneration and self-attribution requests carry the
image(s) and ``mm_processor_kwargs`` exactly like verl's single-turn request.

Continuations (``rereason.continuation``): the policy's rollout server (``policy``), or a teacher
model over HTTP (``teacher``, `recipe.ivr_r1.teacher`) whose text is tokenized back into the policy's
tokens. The attributor and the teacher see the question with its options, as the policy did.

Output: ``optimization.mode=join`` (default) and ``aux_nll``: the session returns
``[demonstration, flawed rollout]`` (the trainer enters the demonstration into the GRPO group with its
own reward, or trains it with the NLL term); ``replace``: the rectified trajectory replaces the
session's output and enters the group with its own reward. ``response_mask`` is 0 on the cue unless
``optimization.cue_in_loss`` and on the kept prefix unless ``optimization.prefix_in_loss``. Every
session writes ``extra_fields["ivr_r1"]`` (status, rounds, steps, reasons, timings, original score,
teacher calls, original/rectified texts) for the trainer's metrics and dumps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop

from data_prep.prompts import question_block
from recipe.ivgr.reward_manager import reward_settings, score_response
from recipe.ivr_r1.attribution import JudgeAttributor, PolicyAttributor, PromptTooLong
from recipe.ivr_r1.rereason import Generation, Trajectory, continuation_truncated, rectify
from recipe.ivr_r1.screening import screen_group
from recipe.ivr_r1.settings import DEMO_FIELD, GROUP_N_FIELD, IVRR1Settings, owns_reward
from recipe.ivr_r1.teacher import TeacherWriter, split_teacher_settings

logger = logging.getLogger(__name__)


class _Group:
    """Verdicts of one uid's sessions; decided once, by the first session to wake."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.verdicts: dict[int, bool | None] = {}
        self.truncated: set[int] = set()  # sessions whose rollout the length limit cut off
        self.full = asyncio.Event()
        self.screening = None
        self.timed_out = False
        self.failed = False
        self.left = 0  # sessions done with the board (posted and read, or failed)


class _TextTokenizer:
    """The rereason loop's tokenizer view: plain text, special tokens skipped, consistently."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)


class GenerationAborted(RuntimeError):
    """The rollout server aborted the request (stop_reason "aborted"): no usable continuation."""


class TeacherFailed(RuntimeError):
    """The teacher gave no usable continuation (its outcome is the message; counted in the record)."""


def verdict_of(reward: dict) -> bool | None:
    """Screening verdict from a `score_response` result: None when the accuracy stayed undecided."""
    info = reward["reward_extra_info"]
    if info.get("acc_undecided"):
        return None
    return bool(info.get("acc", 0.0) >= 0.5)


class IVRR1AgentLoop(SingleTurnAgentLoop):
    _groups: dict[str, _Group] = {}
    _clients: dict[str, Any] = {}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ivr = IVRR1Settings.from_config(self.config)
        self.text_tokenizer = _TextTokenizer(self.tokenizer)
        self.reward_settings = reward_settings(self.config)
        self.owns_reward = owns_reward(self.config)
        self.stop_ids = {int(i) for i in (self.tokenizer.all_special_ids or [])}
        if self.tokenizer.eos_token_id is not None:
            self.stop_ids.add(int(self.tokenizer.eos_token_id))

    # ------------------------------------------------------------------ shared per-process state
    @classmethod
    def _client(cls, mapping: dict) -> Any:
        """One JudgeClient per distinct config in this process (its pool, cache and stats persist)."""
        from reward_score.judge import JudgeClient, JudgeConfig

        key = json.dumps(mapping, sort_keys=True, default=str)
        if key not in cls._clients:
            cls._clients[key] = JudgeClient(JudgeConfig.from_mapping(mapping))
        return cls._clients[key]

    def _group_size(self, kwargs: dict) -> int:
        n = kwargs.get(GROUP_N_FIELD, kwargs.get("__rollout_n__"))
        return int(n) if n is not None else int(self.rollout_config.n)

    def _board(self, uid: str, expected: int) -> _Group:
        group = self._groups.get(uid)
        if group is None:
            group = self._groups[uid] = _Group(expected)
        return group

    def _leave(self, uid: str, group: _Group) -> None:
        group.left += 1
        if group.left >= group.expected and self._groups.get(uid) is group:
            del self._groups[uid]

    def _fail(self, uid: str, expected: int) -> None:
        """A session failed before posting: wake its siblings and leave the board."""
        group = self._board(uid, expected)
        group.failed = True
        group.full.set()
        self._leave(uid, group)

    async def _screen(self, uid: str, session: int, verdict: bool | None, expected: int,
                      truncated: bool = False) -> str:
        group = self._board(uid, expected)
        try:
            if group.screening is None and not group.failed:
                group.verdicts[session] = verdict
                if truncated:
                    group.truncated.add(session)
                if len(group.verdicts) >= group.expected:
                    group.full.set()
                try:
                    await asyncio.wait_for(group.full.wait(), self.ivr.group_wait_s)
                except asyncio.TimeoutError:
                    group.timed_out = True
            elif group.screening is not None:
                return "late"  # decided without us
            if group.failed:
                return "group_failed"
            if group.screening is None:
                group.screening = screen_group(dict(group.verdicts), self.ivr.screen, set(group.truncated))
            return group.screening.reason.get(session, "late")
        finally:
            self._leave(uid, group)

    # ------------------------------------------------------------------ pieces
    async def _score(self, text: str, kwargs: dict) -> dict:
        """The recipe's reward of one response (rules, then `reward_score.judge` for undecided answers)."""
        gt = (kwargs.get("reward_model") or {}).get("ground_truth", "")
        return await score_response(text, str(kwargs.get("data_source") or ""), gt, kwargs.get("extra_info"),
                                    self.reward_settings)

    def _attach_reward(self, output: AgentLoopOutput, reward: dict) -> None:
        if self.owns_reward:
            output.reward_score = float(reward["reward_score"])
            output.extra_fields["reward_extra_info"] = dict(reward["reward_extra_info"])

    def _attributor(self, sampling_params: dict, mm_processor_kwargs: dict | None):
        if self.ivr.attributor_kind == "judge":
            return JudgeAttributor(self._client(self.ivr.attributor_judge), self.ivr.send_reference_answer)
        policy = self.ivr.attributor_policy
        temperature = float(policy.get("temperature", 0.0))
        retry_temperature = max(temperature, float(policy.get("retry_temperature", 0.7)))
        seed = random.randrange(2**31)

        async def generate_text(messages, images, attempt: int):
            images = list(images) or None
            prompt_ids = await self.loop.run_in_executor(
                None, lambda: self.continuous_token_builder.build_initial_tokens(messages, images=images,
                                                                               mm_inputs_out={}))
            if len(prompt_ids) > int(self.prompt_length):
                raise PromptTooLong(f"{len(prompt_ids)} > rollout.prompt_length={self.prompt_length}")
            params = {**sampling_params, "temperature": temperature, "max_tokens": int(policy.get("max_tokens", 256))}
            if attempt > 1:  # a repeated greedy request repeats its reply: sample, with a new seed
                params.update(temperature=retry_temperature, seed=seed + attempt)
            out = await self.server_manager.generate(
                request_id=uuid4().hex, prompt_ids=prompt_ids, sampling_params=params, image_data=images,
                mm_processor_kwargs=mm_processor_kwargs)
            if out.stop_reason in ("aborted", "abort"):
                raise GenerationAborted("attribution request aborted")
            return self.tokenizer.decode(out.token_ids, skip_special_tokens=True)

        return PolicyAttributor(generate_text, int(policy.get("max_retries", 2)), float(policy.get("timeout_s", 120)),
                                self.ivr.send_reference_answer, retries_differ=retry_temperature > 0)

    # ------------------------------------------------------------------ the loop
    def _teacher(self) -> TeacherWriter:
        mapping, policy = split_teacher_settings(self.ivr.teacher)
        return TeacherWriter(self._client(mapping), policy)

    def _teacher_generate(self, prompt_len: int, original_ids: list[int], question: str, images: list,
                          reference_answer: str, log: list[dict]):
        """A `rereason.Generate` that asks the teacher for the continuation of prompt + prefix + cue and
        tokenizes its text with the policy's tokenizer. Each call's outcome and seconds go to `log`."""
        teacher = self._teacher()
        # the teacher's text ends where the policy's own rollout would end: with its stop token
        last = int(original_ids[-1]) if original_ids else None
        stop = last if last in self.stop_ids else self.tokenizer.eos_token_id

        async def generate(ids: list[int], max_tokens: int) -> Generation:
            partial = self.text_tokenizer.decode(ids[prompt_len:])
            reply = await teacher.continuation(question, partial, images, reference_answer)
            log.append({"outcome": reply.outcome, "seconds": reply.seconds, "attempts": reply.attempts})
            if not reply.ok:
                raise TeacherFailed(reply.outcome)
            tokens = self.text_tokenizer.encode(reply.text) + ([int(stop)] if stop is not None else [])
            log[-1]["tokens"] = len(tokens)
            return Generation(tokens, None, truncated=len(tokens) > max_tokens)

        return generate

    # ------------------------------------------------------------------ the loop
    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput | list[AgentLoopOutput]:
        if not self.ivr.enable:
            return await super().run(sampling_params, **kwargs)
        uid, session, expected = str(kwargs["uid"]), int(kwargs.get("session_id", 0)), self._group_size(kwargs)
        try:
            output = await super().run(sampling_params, **kwargs)
            t0 = time.perf_counter()
            original_text = self.text_tokenizer.decode(output.response_ids)
            reward = await self._score(original_text, kwargs)
        except BaseException:
            self._fail(uid, expected)  # siblings must not wait group_wait_s for a verdict that never comes
            raise
        self._attach_reward(output, reward)
        verdict = verdict_of(reward)
        truncated = continuation_truncated(output.response_ids, None, int(self.response_length), self.stop_ids)
        reason = await self._screen(uid, session, verdict, expected, truncated)
        info: dict[str, Any] = {"screen": reason, "status": "not_screened", "correct": verdict,
                                "original_score": float(reward["reward_score"])}
        if reason != "selected":
            output.extra_fields["ivr_r1"] = info
            return output

        images = list((output.multi_modal_data or {}).get("images") or [])
        mm_processor_kwargs = output.mm_processor_kwargs  # what verl's single-turn request carried
        extra = dict(kwargs.get("extra_info") or {})
        gt = str((kwargs.get("reward_model") or {}).get("ground_truth", ""))
        # the question as the policy read it: with its options when the record stores them separately
        question = question_block(str(extra.get("question") or ""), extra.get("choices") or None)
        scored: dict[str, dict] = {original_text: reward}

        async def generate_policy(prompt_ids: list[int], max_tokens: int) -> Generation:
            out = await self.server_manager.generate(
                request_id=uuid4().hex, prompt_ids=prompt_ids,
                sampling_params={**sampling_params, "max_tokens": int(max_tokens)}, image_data=images or None,
                mm_processor_kwargs=mm_processor_kwargs)
            if out.stop_reason in ("aborted", "abort"):
                raise GenerationAborted("re-reasoning request aborted")
            ids = list(out.token_ids)
            return Generation(ids, list(out.log_probs) if out.log_probs else None,
                              truncated=continuation_truncated(ids, out.stop_reason, int(max_tokens), self.stop_ids))

        teacher_log: list[dict] = []
        generate = generate_policy
        if self.ivr.rereason.continuation == "teacher":
            generate = self._teacher_generate(len(output.prompt_ids), list(output.response_ids), question, images,
                                              gt, teacher_log)

        async def verify(text: str) -> bool | None:
            if text not in scored:
                scored[text] = await self._score(text, kwargs)
            return verdict_of(scored[text])

        result = await rectify(
            prompt_ids=output.prompt_ids,
            original=Trajectory(list(output.response_ids), list(output.response_mask),
                                list(output.response_logprobs) if output.response_logprobs else None),
            question=question, images=images, reference_answer=gt,
            tokenizer=self.text_tokenizer, attributor=self._attributor(sampling_params, mm_processor_kwargs),
            generate=generate, verify=verify, settings=self.ivr.rereason, response_length=int(self.response_length))
        info.update(result.summary())
        info["continuation"] = self.ivr.rereason.continuation
        info["continuation_tokens"] = [r.continuation_tokens for r in result.rounds]
        if teacher_log:
            info["teacher"] = teacher_log
        info["seconds"] = time.perf_counter() - t0
        final_text = result.rounds[-1].text if result.rounds else ""
        if self.ivr.keep_texts:
            info["original_text"] = original_text
            info["rectified_text"] = final_text
        if result.status != "rectified":
            output.extra_fields["ivr_r1"] = info
            return output
        t = result.trajectory
        rectified_reward = scored[final_text]
        info["rectified_score"] = float(rectified_reward["reward_score"])  # the demonstration's own reward
        rectified = output.model_copy(update={
            "response_ids": t.ids, "response_mask": t.mask,
            "response_logprobs": t.log_probs if output.response_logprobs else None,
            "routed_experts": None, "num_turns": output.num_turns + 1,
            "extra_fields": {**output.extra_fields, "ivr_r1": info},
        })
        self._attach_reward(rectified, rectified_reward)
        if self.ivr.optimization_mode == "replace":
            return rectified
        # join / aux_nll: the demonstration goes first, the flawed rollout last: verl's GRPO uses the last
        # output of a session for the group statistics (and gives every output the last one's reward), so
        # the flawed rollout keeps its place and reward; the trainer then enters the demonstration into its
        # group with its own reward (join) or marks it for the NLL term (aux_nll)
        rectified.extra_fields[DEMO_FIELD] = True
        output.extra_fields["ivr_r1"] = info
        return [rectified, output]
