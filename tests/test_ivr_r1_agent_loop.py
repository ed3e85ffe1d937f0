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
                            "ivr_r1.screening.qualify=has_correct",
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
