"""The `ivr_r1_agent` loop instantiated through verl's agent-loop config machinery (registry file +
hydra.utils.instantiate, as AgentLoopWorker does), run for one GRPO group of n sessions against a
scripted policy server and a real HTTP attributor on 127.0.0.1; config composition and preflight."""

import asyncio
import json
import os
import re

import hydra
import pytest
from hydra import compose, initialize_config_dir
from judge_server import ok
from omegaconf import OmegaConf
from verl.experimental.agent_loop.agent_loop import DictConfigWrap, ToolListWrap, _agent_loop_registry
from verl.utils.dataset.rl_dataset import RLHFDataset
from verl.utils.import_utils import resolve_config_path
from verl.workers.rollout.replica import TokenOutput

from data_prep.offline_processor import build_tokenizer
from recipe.ivr_r1.main import AGENT_LOOP_CONFIG, check_config
from recipe.ivr_r1.trainer import step_metrics, write_dump

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivr_r1", "config")
N = 4
CUE = " Look again. "
FLAWED = "<think>There is a cup.\n\nI see 2 cups.\n\nSo 2.</think><answer>2</answer>"
CORRECT = "<think>There is a cup.\n\nI see 3 cups.</think><answer>3</answer>"
CONTINUATION = "I see 3 cups.</think><answer>3</answer>"


def compose_config(*overrides):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", f"actor_rollout_ref.rollout.n={N}",
            "actor_rollout_ref.rollout.response_length=200", *overrides])


class ScriptedServer:
    """Policy server: first generations follow `originals` in call order; a prompt that ends with
    the cue gets the correct continuation."""

    def __init__(self, tokenizer, originals):
        self.tok, self.originals, self.calls = tokenizer, list(originals), []

    async def generate(self, request_id, prompt_ids, sampling_params, image_data=None, **kwargs):
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        self.calls.append((text, dict(sampling_params)))
        session = int(re.search(r"\(s(\d)\)", text).group(1))  # sessions run concurrently: key by prompt
        reply = CONTINUATION if text.endswith(CUE) else self.originals[session]
        ids = self.tok.encode(reply + "<|im_end|>", add_special_tokens=False)
        return TokenOutput(token_ids=ids, log_probs=[-0.1] * len(ids))


def build_loop(config, server, tokenizer):
    # what AgentLoopWorker.__init__ / _run_agent_loop do with agent_loop_config_path
    for entry in OmegaConf.load(resolve_config_path(config.actor_rollout_ref.rollout.agent.agent_loop_config_path)):
        _agent_loop_registry[entry.name] = entry
    return hydra.utils.instantiate(
        config=_agent_loop_registry["ivr_r1_agent"], trainer_config=DictConfigWrap(config=config),
        server_manager=server, tokenizer=tokenizer, processor=None, hf_model_type=None, dataset_cls=RLHFDataset,
        data_config=DictConfigWrap(config.data), tools=ToolListWrap([]))


def record(output):
    """A session's `ivr_r1` record (a join / aux_nll session returns [demonstration, flawed rollout])."""
    return (output[-1] if isinstance(output, list) else output).extra_fields["ivr_r1"]


def row(session):
    return {"raw_prompt": [{"role": "user", "content": f"How many cups are there? (s{session})"}], "uid": "u1",
            "session_id": session, "reward_model": {"ground_truth": "3"},
            "extra_info": {"question": "How many cups are there?", "answer_type": "number"}}


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


def run_group(config, tokenizer, originals):
    server = ScriptedServer(tokenizer, originals)

    async def go():
        loops = [build_loop(config, server, tokenizer) for _ in range(N)]
        return await asyncio.gather(*(loop.run({"temperature": 1.0}, **row(i)) for i, loop in enumerate(loops)))

    return asyncio.run(go()), server


def test_agent_loop_rectifies_selected_session(judge_server, tokenizer):
    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": 2, "reason": "the cup is red"})))
    config = compose_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}",
                            f"ivr_r1.rereason.cue='{CUE}'", "ivr_r1.screening.cap_per_group=1",
                            "ivr_r1.screening.qualify=has_correct", "ivr_r1.optimization.mode=replace",
                            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}")
    outputs, server = run_group(config, tokenizer, [FLAWED, CORRECT, FLAWED, CORRECT])
    infos = [o.extra_fields["ivr_r1"] for o in outputs]
    assert [i["screen"] for i in infos] == ["selected", "correct", "over_cap", "correct"]
    assert infos[0]["status"] == "rectified" and infos[0]["steps"] == [2] and infos[0]["rounds"] == 1
    assert judge_server.count == 1
    # the re-reasoning request continued prompt + kept prefix + cue
    assert server.calls[-1][0].endswith("There is a cup.\n\n" + CUE) and server.calls[-1][1]["max_tokens"] > 0
    out = outputs[0]
    text = tokenizer.decode(out.response_ids, skip_special_tokens=True)
    assert text == "<think>There is a cup.\n\n" + CUE + CONTINUATION
    prefix_len = len(tokenizer.encode("<think>There is a cup.\n\n", add_special_tokens=False))
    cue_len = len(tokenizer.encode(CUE, add_special_tokens=False))
    assert out.response_mask[:prefix_len + cue_len] == [0] * (prefix_len + cue_len)
    assert out.response_mask[prefix_len + cue_len:] == [1] * (len(out.response_ids) - prefix_len - cue_len)
    assert len(out.response_logprobs) == len(out.response_ids)
    # the output serializes the rectified fields (what AgentLoopWorkerTQ stores in TransferQueue)
    d = out.as_dict()
    assert d["responses"].tolist() == out.response_ids and d["response_mask"].tolist() == out.response_mask
    # unselected sessions are untouched
    assert tokenizer.decode(outputs[2].response_ids, skip_special_tokens=True) == FLAWED
    assert set(outputs[1].response_mask) == {1}
    # trainer metrics from these extra_fields
    m = step_metrics(infos, [1.0, 1.0, 0.0, 1.0], max_rounds=2)
    assert m["ivr_r1/screened_share"] == 0.25 and m["ivr_r1/status/rectified"] == 1
    assert m["ivr_r1/rectify/success_round_1"] == 1.0 and m["ivr_r1/attribution/step_2"] == 1
    assert m["ivr_r1/acc/original_all"] == 0.5 and m["ivr_r1/acc/after_rectification"] == 0.75


def test_agent_loop_attributor_down_keeps_original(tokenizer, tmp_path):
    from judge_server import dead_port

    config = compose_config(f"ivr_r1.attributor.judge.base_url=http://127.0.0.1:{dead_port()}/v1",
                            "ivr_r1.attributor.judge.max_retries=0",
                            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}")
    outputs, server = run_group(config, tokenizer, [FLAWED] * N)
    infos = [o.extra_fields["ivr_r1"] for o in outputs]
    assert [i["screen"] for i in infos] == ["selected", "selected", "over_cap", "over_cap"]
    assert [i["status"] for i in infos[:2]] == ["unattributed", "unattributed"]
    assert infos[0]["attribution"] == ["connection_error"] and len(server.calls) == N
    assert all(tokenizer.decode(o.response_ids, skip_special_tokens=True) == FLAWED for o in outputs)
    path = write_dump(str(tmp_path), 3, ["k0", "k1", "k2", "k3"], infos, [0.0] * N)
    rows = [json.loads(line) for line in open(path)]
    assert len(rows) == 2 and rows[0]["original_text"] == FLAWED


def test_config_composition_and_preflight():
    config = compose_config("ivr_r1.attributor.judge.base_url=http://127.0.0.1:1/v1")
    assert config.algorithm.adv_estimator == "grpo" and config.ivr_r1.screening.qualify == "all"
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "single_turn_agent"
    settings = check_config(config)  # runs verl's validate_config
    assert config.actor_rollout_ref.rollout.agent.agent_loop_config_path == AGENT_LOOP_CONFIG
    assert settings.rereason.rounds == 2 and settings.rereason.prefix_mask == 0
    with pytest.raises(ValueError, match="base_url"):
        check_config(compose_config())
    with pytest.raises(ValueError, match="loss_mode=ivr_r1_aux_nll"):
        check_config(compose_config("ivr_r1.optimization.mode=aux_nll", "ivr_r1.attributor.kind=policy"))
    aux = check_config(compose_config("ivr_r1.optimization.mode=aux_nll", "ivr_r1.attributor.kind=policy",
                                      "actor_rollout_ref.actor.policy_loss.loss_mode=ivr_r1_aux_nll"))
    assert aux.optimization_mode == "aux_nll" and aux.aux_nll_weight == 0.1
    # every Ray worker registers the loss on `import verl`
    env = compose_config().ray_kwargs.ray_init.runtime_env.env_vars
    assert env.VERL_USE_EXTERNAL_MODULES == "recipe.ivr_r1.losses"
    with pytest.raises(ValueError, match="qualify"):
        check_config(compose_config("ivr_r1.screening.qualify=some", "ivr_r1.attributor.kind=policy"))
    assert check_config(compose_config("ivr_r1.attributor.kind=policy", "ivr_r1.optimization.prefix_in_loss=true")
                        ).rereason.prefix_mask == 1


def test_the_reward_settings_need_no_ivgr_section():
    """IVR-R1's yaml carries the reward's own `reward_score:` section (the judge for undecided answers), no
    `ivgr:` section of the other recipe; the reward manager reads it from there."""
    from recipe.ivgr.reward_manager import JUDGE_BUDGET, reward_settings

    config = compose_config("reward_score.judge.base_url=http://127.0.0.1:1/v1", "+reward_score.judge_all=true")
    assert "ivgr" not in config
    settings = reward_settings(config)
    assert settings["judge"]["base_url"] == "http://127.0.0.1:1/v1" and settings["judge_all"] is True
    assert "step_deadline_s" not in settings["judge"] and settings[JUDGE_BUDGET] == 600
    assert "judge" not in reward_settings(compose_config())  # no base_url: no judge


def test_aux_nll_mode_adds_the_demonstration_before_the_flawed_rollout(judge_server, tokenizer):
    from recipe.ivr_r1.settings import DEMO_FIELD

    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": 2, "reason": "miscounted"})))
    config = compose_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}", f"ivr_r1.rereason.cue='{CUE}'",
                            "ivr_r1.screening.cap_per_group=1", "ivr_r1.optimization.mode=aux_nll",
                            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}")
    outputs, _ = run_group(config, tokenizer, [FLAWED, CORRECT, CORRECT, CORRECT])
    demo, flawed = outputs[0]  # a multi-output session: verl's GRPO reads the LAST output of a session
    assert demo.extra_fields[DEMO_FIELD] is True and DEMO_FIELD not in flawed.extra_fields
    assert tokenizer.decode(flawed.response_ids, skip_special_tokens=True) == FLAWED
    assert tokenizer.decode(demo.response_ids, skip_special_tokens=True) == "<think>There is a cup.\n\n" + CUE + CONTINUATION
    assert flawed.extra_fields["ivr_r1"]["status"] == "rectified"
    assert all(not isinstance(o, list) for o in outputs[1:])


# ------------------------------------------------------------------ defects (issue 12)
class Server:
    """Policy-server stand-in: ``reply(text, sampling_params)`` gives a reply text (``<|im_end|>`` is
    appended, as vLLM keeps the stop token), a TokenOutput, or an exception to raise. Records calls."""

    def __init__(self, tokenizer, reply):
        self.tok, self.reply, self.calls = tokenizer, reply, []

    async def generate(self, request_id, prompt_ids, sampling_params, image_data=None, **kwargs):
        text = self.tok.decode(prompt_ids, skip_special_tokens=True)
        self.calls.append({"text": text, "params": dict(sampling_params), "prompt_ids": list(prompt_ids),
                           "image_data": image_data, **kwargs})
        out = self.reply(text, sampling_params)
        if isinstance(out, BaseException):
            raise out
        if isinstance(out, TokenOutput):
            return out
        ids = self.tok.encode(out + "<|im_end|>", add_special_tokens=False)
        return TokenOutput(token_ids=ids, log_probs=[-0.1] * len(ids), stop_reason="completed")


def session_of(text):
    return int(re.search(r"\(s(\d)\)", text).group(1))


def run_sessions(config, tokenizer, server, rows):
    async def go():
        loops = [build_loop(config, server, tokenizer) for _ in rows]
        return await asyncio.gather(*(loop.run({"temperature": 1.0}, **r) for loop, r in zip(loops, rows)),
                                    return_exceptions=True)

    return asyncio.run(go())


def loop_config(*overrides):
    return compose_config(f"ivr_r1.rereason.cue='{CUE}'",
                          f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}", *overrides)


LONG_CUE = " Wait, let me look at the image again carefully. "


@pytest.mark.parametrize("stop_reason, status", [("completed", "rectified"), ("length", "length_exceeded"),
                                                 ("aborted", "generation_error")])
def test_truncation_comes_from_the_stop_reason(judge_server, tokenizer, stop_reason, status):
    """A continuation that ends with its stop token exactly at the budget is complete (verl's vLLM server
    says "completed" for vLLM's stop and length alike); "length" is truncated; "aborted" is unusable."""
    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": 2, "reason": "count again"})))
    enc = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    cont = enc(CONTINUATION + "<|im_end|>")
    budget_exact = len(enc("<think>There is a cup.\n\n")) + len(enc(LONG_CUE)) + len(cont)
    config = compose_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}",
                            f"ivr_r1.rereason.cue='{LONG_CUE}'", "ivr_r1.rereason.min_continuation_tokens=1",
                            "ivr_r1.screening.cap_per_group=1",
                            f"actor_rollout_ref.rollout.agent.agent_loop_config_path={AGENT_LOOP_CONFIG}",
                            f"actor_rollout_ref.rollout.response_length={budget_exact}")

    def reply(text, params):
        if text.endswith(LONG_CUE):
            assert params["max_tokens"] == len(cont)  # the whole remaining budget, used to the last token
            return TokenOutput(token_ids=cont, log_probs=[-0.1] * len(cont), stop_reason=stop_reason)
        return FLAWED if session_of(text) == 0 else CORRECT

    outputs = run_sessions(config, tokenizer, Server(tokenizer, reply), [row(i) for i in range(N)])
    assert record(outputs[0])["status"] == status


def test_group_barrier_uses_the_rows_group_size(judge_server, tokenizer):
    """`__rollout_n__` = 2 for this row (verl starts 2 sessions and pops the key; the trainer copies it
    to ivr_r1_group_n): the 2 sessions screen as soon as both posted, not after group_wait_s."""
    import time

    from recipe.ivr_r1.agent_loop import IVRR1AgentLoop
    from recipe.ivr_r1.settings import GROUP_N_FIELD

    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": 2, "reason": "count again"})))
    config = loop_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}", "ivr_r1.screening.group_wait_s=60")
    server = Server(tokenizer, lambda text, p: CONTINUATION if text.endswith(CUE) else
                    (FLAWED if session_of(text) == 0 else CORRECT))
    t0 = time.perf_counter()
    outputs = run_sessions(config, tokenizer, server, [{**row(i), "uid": "u2", GROUP_N_FIELD: 2} for i in range(2)])
    assert time.perf_counter() - t0 < 20
    assert [record(o)["screen"] for o in outputs] == ["selected", "correct"]
    assert "u2" not in IVRR1AgentLoop._groups


def test_trainer_copies_the_rows_group_size_for_the_agent_loop():
    import numpy as np

    from recipe.ivr_r1.settings import GROUP_N_FIELD
    from recipe.ivr_r1.trainer import IVRR1Trainer

    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.train_dataloader = [{"raw_prompt": np.array([[{"role": "user", "content": "a"}]] * 2, dtype=object),
                                 "__rollout_n__": np.array([2, 6], dtype=object)}]
    trainer.train_dataloader_it = None
    batch = trainer._fetch_one_gen_batch()  # verl's fetch (uids), then the recipe's fields
    # what AgentLoopWorkerTQ.generate_sequences hands each session (NonTensorStack rows -> .data)
    per_row = dict(batch.items())[GROUP_N_FIELD]
    assert [per_row[i].data for i in range(2)] == [2, 6]
    assert dict(batch.items())["agent_name"].data == "ivr_r1_agent"


def test_failing_session_releases_its_group(judge_server, tokenizer):
    """Session 1's generation fails: verl drops the whole group, so the others neither wait group_wait_s
    nor rectify, and the board entry is gone."""
    import time

    from recipe.ivr_r1.agent_loop import IVRR1AgentLoop

    judge_server.reset()
    config = loop_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}", "ivr_r1.screening.group_wait_s=60")

    def reply(text, params):
        return RuntimeError("server gone") if session_of(text) == 1 else FLAWED

    t0 = time.perf_counter()
    outputs = run_sessions(config, tokenizer, Server(tokenizer, reply), [{**row(i), "uid": "u3"} for i in range(N)])
    assert time.perf_counter() - t0 < 20
    assert isinstance(outputs[1], RuntimeError)
    assert [outputs[i].extra_fields["ivr_r1"]["screen"] for i in (0, 2, 3)] == ["group_failed"] * 3
    assert judge_server.count == 0 and "u3" not in IVRR1AgentLoop._groups


def _route(attribution_reply, verdicts):
    """Judge server responder: attribution requests (the attributor's system prompt) vs answer-equivalence
    requests (verdict by the answer's session tag)."""
    from judge_server import Reply

    from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM

    def respond(body):
        if body["messages"][0]["content"] == ATTRIBUTOR_SYSTEM:
            return ok(attribution_reply)
        text = json.dumps(body["messages"])
        tag = re.search(r"\(s(\d)\)", text)
        return Reply(texts=(f"Verdict: {verdicts[int(tag.group(1))] if tag else 1}",))

    return respond


def test_undecided_answers_are_judged_once_and_the_reward_is_handed_to_verl(judge_server, tokenizer):
    """Free-text answers the rules cannot decide: the session's one judge verdict screens the rollout AND
    is its reward (verl's AgentLoopWorker._compute_score then never calls a reward worker)."""
    from types import SimpleNamespace

    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM
    from reward_score.scoring import compute_score

    judge_server.reset()
    judge_server.responder = _route(json.dumps({"step": 1, "reason": "x"}), verdicts={0: 0, 1: 1, 2: 1, 3: 1})
    try:
        config = loop_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}",
                             f"reward_score.judge.base_url={judge_server.url}", "reward_score.judge.max_retries=0",
                             "ivr_r1.optimization.mode=replace")
        answers = [f"<think>The cup is dark.</think><answer>a crimson one (s{i})</answer>" for i in range(N)]
        server = Server(tokenizer, lambda text, p: "It is red.</think><answer>red</answer>" if text.endswith(CUE)
                        else answers[session_of(text)])
        rows = [{**row(i), "uid": "u4", "reward_model": {"ground_truth": "red"},
                 "extra_info": {"question": "What colour is the cup?"}, "data_source": "synthetic/single"}
                for i in range(N)]
        outputs = run_sessions(config, tokenizer, server, rows)
    finally:
        judge_server.responder = None
    judge_calls = [r for r in judge_server.requests if r["body"]["messages"][0]["content"] != ATTRIBUTOR_SYSTEM]
    assert len(judge_calls) == N  # one per distinct answer; the rectified answer "red" is rule-decided
    infos = [o.extra_fields["ivr_r1"] for o in outputs]
    assert [i["correct"] for i in infos] == [False, True, True, True]
    assert infos[0]["screen"] == "selected" and infos[0]["status"] == "rectified"
    rule_only = compute_score("synthetic/single", answers[1], "red")
    for out in outputs:
        assert out.reward_score is not None and out.extra_fields["reward_extra_info"]["acc_undecided"] == 0.0
    assert outputs[1].reward_score == rule_only["score"] + 1.5  # format + 1.5 * acc(judge = 1)
    assert outputs[0].reward_score == compute_score("synthetic/single", tokenizer.decode(
        outputs[0].response_ids, skip_special_tokens=True), "red")["score"]  # the rectified text, rule-decided

    class NoRewardWorker:  # verl would call compute_score.remote only for an unscored output
        class compute_score:  # noqa: N801
            @staticmethod
            def remote(*args, **kwargs):
                raise AssertionError("verl asked a reward worker to score an output again")

    worker = SimpleNamespace(reward_loop_worker_handles=[NoRewardWorker()])
    for i, out in enumerate(outputs):
        asyncio.run(AgentLoopWorker._compute_score(worker, [out], kwargs=rows[i]))


def test_aux_nll_rectified_score_is_the_demonstrations_own_reward(judge_server, tokenizer):
    from recipe.ivr_r1.settings import DEMO_FIELD
    from reward_score.scoring import compute_score

    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": 2, "reason": "miscounted"})))
    config = loop_config(f"ivr_r1.attributor.judge.base_url={judge_server.url}", "ivr_r1.optimization.mode=aux_nll",
                         "ivr_r1.screening.cap_per_group=1")
    server = Server(tokenizer, lambda text, p: CONTINUATION if text.endswith(CUE) else
                    (FLAWED if session_of(text) == 0 else CORRECT))
    outputs = run_sessions(config, tokenizer, server, [{**row(i), "uid": "u5"} for i in range(N)])
    demo, flawed = outputs[0]
    demo_text = tokenizer.decode(demo.response_ids, skip_special_tokens=True)
    demo_reward = compute_score("", demo_text, "3", {"answer_type": "number"})["score"]
    flawed_reward = compute_score("", FLAWED, "3", {"answer_type": "number"})["score"]
    assert demo_reward > flawed_reward == flawed.reward_score
    # verl gives every output of a session the last one's reward (_agent_loop_postprocess): the rows the
    # trainer reads are the flawed rollout (with its reward) and the three others
    rows = [flawed] + list(outputs[1:])
    assert all(DEMO_FIELD not in r.extra_fields for r in rows)
    m = step_metrics([r.extra_fields["ivr_r1"] for r in rows], [r.reward_score for r in rows], max_rounds=2)
    assert m["ivr_r1/score/rectified_mean"] == pytest.approx(demo_reward)


# ------------------------------------------------------------------ self-attribution on the rollout server
def _is_attribution(text):
    from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM

    return ATTRIBUTOR_SYSTEM.split("\n")[0] in text


def _policy_server(tokenizer, attribution, flawed=FLAWED):
    def reply(text, params):
        if _is_attribution(text):
            return attribution(params)
        if text.endswith(CUE):
            return CONTINUATION
        return flawed if session_of(text) == 0 else CORRECT

    return Server(tokenizer, reply)


def test_self_attribution_retry_samples_with_a_new_seed(tokenizer):
    """The greedy first reply is unusable; a retry at temperature 0 would repeat it, so the retry samples
    (retry_temperature) with a seed, and a deterministic server then answers differently."""
    def attribution(params):  # deterministic: the reply depends only on the request's sampling params
        if params["temperature"] == 0:
            return "<think>hmm</think><answer>Step 2 is the wrong one.</answer>"
        return '<think>recount</think><answer>{"step": 2, "reason": "three cups"}</answer>'

    server = _policy_server(tokenizer, attribution)
    outputs = run_sessions(loop_config("ivr_r1.attributor.kind=policy", "ivr_r1.screening.cap_per_group=1"),
                           tokenizer, server, [{**row(i), "uid": "u6"} for i in range(N)])
    assert record(outputs[0])["status"] == "rectified"
    calls = [c["params"] for c in server.calls if _is_attribution(c["text"])]
    assert [c["temperature"] for c in calls] == [0.0, 0.7] and "seed" not in calls[0] and "seed" in calls[1]
    # retry_temperature 0 with a greedy first request: no identical retries
    server = _policy_server(tokenizer, attribution)
    outputs = run_sessions(loop_config("ivr_r1.attributor.kind=policy", "ivr_r1.screening.cap_per_group=1",
                                       "ivr_r1.attributor.policy.retry_temperature=0"),
                           tokenizer, server, [{**row(i), "uid": "u7"} for i in range(N)])
    info = record(outputs[0])
    assert (info["status"], info["attribution"]) == ("unattributed", ["malformed"])
    assert sum(1 for c in server.calls if _is_attribution(c["text"])) == 1


def test_self_attribution_prompt_shortens_long_steps_to_fit(tokenizer):
    long_step = "I look at the table and describe it: " + "the wooden table has a cup on it, " * 20
    flawed = f"<think>{long_step.strip()}\n\nI see 2 cups.\n\nSo 2.</think><answer>2</answer>"
    ok_reply = lambda params: '{"step": 2, "reason": "three cups"}'  # noqa: E731
    base = ("ivr_r1.attributor.kind=policy", "ivr_r1.screening.cap_per_group=1",
            "actor_rollout_ref.rollout.response_length=800")
    server = _policy_server(tokenizer, ok_reply, flawed)
    run_sessions(loop_config(*base), tokenizer, server, [{**row(i), "uid": "u8"} for i in range(N)])
    full = next(c for c in server.calls if _is_attribution(c["text"]))
    assert "characters omitted" not in full["text"]
    limit = len(full["prompt_ids"]) - 1  # the full view no longer fits; the rollout prompt does
    server = _policy_server(tokenizer, ok_reply, flawed)
    outputs = run_sessions(loop_config(*base, f"actor_rollout_ref.rollout.prompt_length={limit}"), tokenizer, server,
                           [{**row(i), "uid": "u9"} for i in range(N)])
    info = record(outputs[0])
    assert (info["status"], info["attribution"], info["steps"]) == ("rectified", ["ok"], [2])
    shortened = [c for c in server.calls if _is_attribution(c["text"])]
    assert len(shortened) == 1 and len(shortened[0]["prompt_ids"]) <= limit
    assert "characters omitted" in shortened[0]["text"] and "[2] I see 2 cups." in shortened[0]["text"]


def test_session_score_is_handed_to_verl_only_for_the_recipe_reward():
    from recipe.ivr_r1.settings import owns_reward

    assert owns_reward(compose_config())
    assert not owns_reward(compose_config("reward.reward_manager.source=register", "reward.reward_manager.name=naive"))
    assert not owns_reward(compose_config("reward.reward_model.enable=true"))
