"""Teacher continuations (`ivr_r1.rereason.continuation=teacher`) against real OpenAI-compatible HTTP
servers on 127.0.0.1 (tests/judge_server.py): the request (images as data URLs, the question with its
options, the partial response), the reply contract, the tokens and masks of the demonstration, the
bounds (concurrency, deadline, retries) and the counted failures; plus the screening switch for
length-truncated rollouts, the options reaching the attributor and the cue-in-loss switch."""

import asyncio
import json

import pytest
from judge_server import FakeJudgeServer, hang, ok, status
from PIL import Image
from test_ivr_r1_agent_loop import CUE, Server, compose_config, loop_config, record, row, run_sessions
from verl.workers.rollout.replica import TokenOutput

from data_prep.offline_processor import build_tokenizer
from recipe.ivr_r1.main import check_config
from recipe.ivr_r1.rereason import Generation, RereasonSettings, Trajectory, rectify
from recipe.ivr_r1.settings import DEMO_FIELD
from recipe.ivr_r1.teacher import TEACHER_SYSTEM, TeacherPolicy, TeacherWriter, parse_continuation
from recipe.ivr_r1.trainer import step_metrics
from reward_score.judge import JudgeClient, JudgeConfig

N = 4
QUESTION = "Which colour is the cup?"
CHOICES = ["red", "blue", "green"]
FLAWED = "<think>The cup is in the middle.\n\nIt looks dark, so blue.</think><answer>B</answer>"
CORRECT = "<think>The cup is in the middle.\n\nIt is red.</think><answer>A</answer>"
TEACHER_TEXT = "The cup is clearly red.</think><answer>A</answer>"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.fixture()
def teacher_server():
    server = FakeJudgeServer(models=("teacher",)).start()
    yield server
    server.stop()


def choice_row(session, uid):
    return {**row(session), "uid": uid, "reward_model": {"ground_truth": "A"},
            "raw_prompt": [{"role": "user", "content": f"{QUESTION} (s{session})"}],
            "extra_info": {"question": QUESTION, "choices": CHOICES, "answer_type": "choice"}}


def policy_server(tokenizer, flawed_sessions=(0,), distinct=False):
    """The policy: FLAWED for `flawed_sessions` (with `distinct`, each its own text), CORRECT otherwise;
    a continuation request fails the test (the teacher writes continuations here)."""
    def reply(text, params):
        assert not text.endswith(CUE), "the policy was asked for a continuation"
        session = int(text.split("(s")[1][0])
        if session not in flawed_sessions:
            return CORRECT
        return FLAWED.replace("middle", f"middle (seen {session})") if distinct else FLAWED

    return Server(tokenizer, reply)


def attributions(judge_server, step=2):
    judge_server.reset()
    judge_server.script(default=ok(json.dumps({"step": step, "reason": "the cup is red"})))


def teacher_config(judge_url, teacher_url, *overrides):
    return loop_config(f"ivr_r1.attributor.judge.base_url={judge_url}", "ivr_r1.rereason.continuation=teacher",
                       f"ivr_r1.rereason.teacher.base_url={teacher_url}", "ivr_r1.rereason.teacher.backoff_s=0.01",
                       *overrides)


# ------------------------------------------------------------------ the reply contract
@pytest.mark.parametrize("reply, expected", [
    (TEACHER_TEXT, TEACHER_TEXT),
    ("  It is red.</think>\n<answer>A</answer>\n\nHope this helps!", "It is red.</think>\n<answer>A</answer>"),
])
def test_parse_continuation_ok(reply, expected):
    assert parse_continuation(reply) == expected


@pytest.mark.parametrize("reply", [
    "The cup is red, so A.",                                    # never closes the reasoning
    "<think>Let me see.</think><answer>A</answer>",             # opens a new <think>
    "It is red.</think><answer>A</answer></think>",            # closes twice
    "It is red.</think>A",                                      # no answer
    "It is red.</think><answer>  </answer>",                    # empty answer
    "<answer>A</answer> It is red.</think>",                    # answer before the close
    "",
])
def test_parse_continuation_rejects(reply):
    assert parse_continuation(reply) is None


# ------------------------------------------------------------------ the request
def test_teacher_request_has_images_options_partial_and_optional_reference(teacher_server):
    teacher_server.script(default=ok(TEACHER_TEXT))
    client = JudgeClient(JudgeConfig(base_url=teacher_server.url, model="teacher", cache_size=0))
    image = Image.new("RGB", (8, 8), (200, 10, 10))
    partial = "<think>The cup is in the middle.\n\n" + CUE
    for send_reference in (False, True):
        writer = TeacherWriter(client, TeacherPolicy(send_reference_answer=send_reference))
        reply = asyncio.run(writer.continuation("Which colour?\nOptions:\nA. red\nB. blue", partial, [image], "A"))
        assert (reply.ok, reply.text, reply.outcome, reply.attempts) == (True, TEACHER_TEXT, "ok", 1)
    first, second = (r["body"] for r in teacher_server.requests)
    assert first["model"] == "teacher" and first["messages"][0]["content"] == TEACHER_SYSTEM
    content = first["messages"][1]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    text = content[-1]["text"]
    assert "Options:\nA. red\nB. blue" in text and f"<partial_response>\n{partial}\n</partial_response>" in text
    assert "<reference_answer>" not in text and "<reference_answer>\nA\n" in second["messages"][1]["content"][-1]["text"]


# ------------------------------------------------------------------ in the agent loop
def test_teacher_continuation_becomes_a_demonstration_in_policy_tokens(judge_server, teacher_server, tokenizer):
    attributions(judge_server)
    teacher_server.script(default=ok(TEACHER_TEXT))
    config = teacher_config(judge_server.url, teacher_server.url, "ivr_r1.screening.cap_per_group=1")
    server = policy_server(tokenizer)
    outputs = run_sessions(config, tokenizer, server, [choice_row(i, "t1") for i in range(N)])
    demo, flawed = outputs[0]  # join mode (the default): [demonstration, flawed rollout]
    assert demo.extra_fields[DEMO_FIELD] is True and DEMO_FIELD not in flawed.extra_fields
    prefix = "<think>The cup is in the middle.\n\n"
    enc = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    stop = enc("<|im_end|>")
    # the policy's tokens: prefix (its own), cue, the teacher's text tokenized by the policy, its stop token
    assert demo.response_ids == enc(prefix) + enc(CUE) + enc(TEACHER_TEXT) + stop
    n_prefix, n_cue = len(enc(prefix)), len(enc(CUE))
    assert demo.response_mask == [0] * (n_prefix + n_cue) + [1] * (len(enc(TEACHER_TEXT)) + 1)
    assert demo.response_logprobs == [-0.1] * n_prefix + [0.0] * (len(demo.response_ids) - n_prefix)
    info = record(outputs[0])
    assert info["status"] == "rectified" and info["continuation"] == "teacher"
    assert [c["outcome"] for c in info["teacher"]] == ["ok"] and info["teacher"][0]["tokens"] == len(enc(TEACHER_TEXT)) + 1
    assert info["rectified_score"] > info["original_score"] == flawed.reward_score
    # the attributor and the teacher were shown the options
    options = "Options:\nA. red\nB. blue\nC. green"
    assert options in judge_server.requests[0]["body"]["messages"][1]["content"][-1]["text"]
    assert options in teacher_server.requests[0]["body"]["messages"][1]["content"][-1]["text"]
    m = step_metrics([record(o) for o in outputs], [2.0] * N, max_rounds=2)
    assert (m["ivr_r1/teacher/calls"], m["ivr_r1/teacher/usable"], m["ivr_r1/teacher/failed"]) == (1.0, 1.0, 0.0)
    assert m["ivr_r1/teacher/ok"] == 1.0


def test_cue_in_loss_trains_the_cue_tokens(judge_server, teacher_server, tokenizer):
    attributions(judge_server)
    teacher_server.script(default=ok(TEACHER_TEXT))
    config = teacher_config(judge_server.url, teacher_server.url, "ivr_r1.screening.cap_per_group=1",
                            "ivr_r1.optimization.cue_in_loss=true")
    outputs = run_sessions(config, tokenizer, policy_server(tokenizer), [choice_row(i, "t2") for i in range(N)])
    demo = outputs[0][0]
    n_prefix = len(tokenizer.encode("<think>The cup is in the middle.\n\n", add_special_tokens=False))
    assert demo.response_mask == [0] * n_prefix + [1] * (len(demo.response_ids) - n_prefix)


@pytest.mark.parametrize("reply, outcome, requests", [
    (status(503), "server_error", 2),
    (ok("The cup is red, so A."), "bad_reply", 2),  # unusable: retried with another seed, then counted
    (hang(5.0), "deadline", 1),
])
def test_teacher_failures_are_counted_and_keep_the_original(judge_server, teacher_server, tokenizer, reply, outcome,
                                                           requests):
    attributions(judge_server)
    teacher_server.script(default=reply)
    config = teacher_config(judge_server.url, teacher_server.url, "ivr_r1.screening.cap_per_group=1",
                            "ivr_r1.rereason.teacher.max_retries=1", "ivr_r1.rereason.teacher.deadline_s=0.5")
    outputs = run_sessions(config, tokenizer, policy_server(tokenizer), [choice_row(i, "t3") for i in range(N)])
    assert not isinstance(outputs[0], list)  # nothing verified: the session returns its rollout only
    info = record(outputs[0])
    assert info["status"] == "generation_error" and [c["outcome"] for c in info["teacher"]] == [outcome]
    assert teacher_server.count == requests
    if outcome == "bad_reply":  # a retry of an unusable reply asks with another seed
        seeds = [r["body"]["seed"] for r in teacher_server.requests]
        assert seeds[0] != seeds[1]
    m = step_metrics([record(o) for o in outputs], [1.0] * N, max_rounds=2)
    assert (m["ivr_r1/teacher/failed"], m[f"ivr_r1/teacher/{outcome}"]) == (1.0, 1.0)
    assert m["ivr_r1/status/generation_error"] == 1.0


def test_teacher_concurrency_is_bounded(judge_server, teacher_server, tokenizer):
    attributions(judge_server)
    teacher_server.script(default=ok(TEACHER_TEXT, delay_s=0.2))
    config = teacher_config(judge_server.url, teacher_server.url, "ivr_r1.screening.cap_per_group=0",
                            "ivr_r1.rereason.teacher.max_concurrency=1")
    rows = [choice_row(i, "t4") for i in range(N)]
    outputs = run_sessions(config, tokenizer, policy_server(tokenizer, flawed_sessions=range(N), distinct=True), rows)
    assert [record(o)["status"] for o in outputs] == ["rectified"] * N
    assert teacher_server.count == N and teacher_server.max_inflight == 1


def test_truncated_rollouts_are_not_rectified(judge_server, tokenizer):
    """A wrong rollout the length limit cut off (the whole budget, no stop token) is skipped before any
    attribution call with skip_truncated (default); without it, it is selected."""
    attributions(judge_server)
    budget = 60
    enc = lambda t: tokenizer.encode(t, add_special_tokens=False)  # noqa: E731
    cut = (enc("<think>There is a cup.\n\nI see 2 cups.</think><answer>2</answer>") + enc(" and more") * 60)[:budget]

    def reply(text, params):
        session = int(text.split("(s")[1][0])
        if text.endswith(CUE):
            return "I see 3 cups.</think><answer>3</answer>"
        if session == 0:
            return TokenOutput(token_ids=cut, log_probs=[-0.1] * budget, stop_reason="completed")
        return "<think>There is a cup.\n\nI see 2 cups.</think><answer>2</answer>" if session == 1 else \
            "<think>There is a cup.\n\nI see 3 cups.</think><answer>3</answer>"

    base = (f"ivr_r1.attributor.judge.base_url={judge_server.url}", f"actor_rollout_ref.rollout.response_length={budget}",
            "ivr_r1.rereason.min_continuation_tokens=4")
    outputs = run_sessions(loop_config(*base), tokenizer, Server(tokenizer, reply),
                           [{**row(i), "uid": "t5"} for i in range(N)])
    assert [record(o)["screen"] for o in outputs] == ["truncated", "selected", "correct", "correct"]
    assert judge_server.count == 1  # only session 1 was attributed
    attributions(judge_server)
    outputs = run_sessions(loop_config(*base, "ivr_r1.screening.skip_truncated=false"), tokenizer,
                           Server(tokenizer, reply), [{**row(i), "uid": "t6"} for i in range(N)])
    assert [record(o)["screen"] for o in outputs][:2] == ["selected", "selected"]


def test_rectify_fills_log_probs_for_a_generator_without_them():
    """A teacher gives no log-probs: its tokens get 0.0 (like the cue) when the rollout carries log-probs,
    so the row keeps one log-prob per token."""
    class Chars:
        def encode(self, text):
            return [ord(c) for c in text]

        def decode(self, ids):
            return "".join(chr(i) for i in ids)

    class Attributor:
        async def attribute(self, question, steps, images=(), reference_answer=None):
            from recipe.ivr_r1.attribution import AttributionResult

            return AttributionResult(2, "x", "ok")

    tok, text = Chars(), "<think>A.\n\nB wrong.</think><answer>b</answer>"

    async def generate(ids, budget):
        return Generation(tok.encode("B right.</think><answer>a</answer>"), None, truncated=False)

    async def verify(t):
        return t.endswith("<answer>a</answer>")

    result = asyncio.run(rectify(
        prompt_ids=[1, 2], original=Trajectory(tok.encode(text), [1] * len(text), [-0.5] * len(text)), question="q",
        images=[], reference_answer="a", tokenizer=tok, attributor=Attributor(), generate=generate, verify=verify,
        settings=RereasonSettings(cue=" Look. ", continuation="teacher"), response_length=200))
    t = result.trajectory
    k = len("<think>A.\n\n")
    assert result.status == "rectified" and len(t.log_probs) == len(t.ids)
    assert t.log_probs[:k] == [-0.5] * k and set(t.log_probs[k:]) == {0.0}


def test_config_checks_for_teacher_and_join():
    with pytest.raises(ValueError, match="teacher.base_url"):
        check_config(compose_config("ivr_r1.attributor.kind=policy", "ivr_r1.rereason.continuation=teacher"))
    with pytest.raises(ValueError, match="continuation"):
        check_config(compose_config("ivr_r1.attributor.kind=policy", "ivr_r1.rereason.continuation=oracle"))
    with pytest.raises(ValueError, match="deadline_s"):
        check_config(compose_config("ivr_r1.attributor.kind=policy", "ivr_r1.rereason.continuation=teacher",
                                    "ivr_r1.rereason.teacher.base_url=http://127.0.0.1:1/v1",
                                    "ivr_r1.rereason.teacher.deadline_s=0"))
    settings = check_config(compose_config("ivr_r1.attributor.kind=policy", "ivr_r1.rereason.continuation=teacher",
                                           "ivr_r1.rereason.teacher.base_url=http://127.0.0.1:1/v1"))
    assert settings.optimization_mode == "join" and settings.rereason.continuation == "teacher"
    with pytest.raises(ValueError, match="mode=join"):
        check_config(compose_config("ivr_r1.attributor.kind=policy", "reward.reward_manager.source=register",
                                    "reward.reward_manager.name=naive"))
    assert check_config(compose_config("ivr_r1.attributor.kind=policy", "reward.reward_manager.source=register",
                                       "reward.reward_manager.name=naive", "ivr_r1.optimization.mode=replace"))

