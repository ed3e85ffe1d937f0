"""IVR-R1 attribution against a real HTTP attributor on 127.0.0.1 (tests/judge_server.py) and the
re-reasoning loop's control flow and token masks with a scripted generator."""

import asyncio
import json

import pytest
from judge_server import dead_port, garbage, hang, ok, status
from PIL import Image

from recipe.ivr_r1.attribution import ATTRIBUTOR_SYSTEM, JudgeAttributor, PolicyAttributor
from recipe.ivr_r1.rereason import Generation, RereasonSettings, Trajectory, rectify, token_cut
from recipe.ivr_r1.segment import segment_steps
from reward_score.answers import match_answer
from reward_score.judge import JudgeClient, JudgeConfig
from reward_score.parsing import parse_response

CUE = " Look again. "


class CharTokenizer:
    """One token per character: token masks can be checked against text positions."""

    def encode(self, text):
        return [ord(c) for c in text]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


TOK = CharTokenizer()
PROMPT = TOK.encode("<prompt with image>")
FLAWED = "<think>Step 1: There is a cup.\nStep 2: The cup is blue.\nStep 3: So blue.</think><answer>blue</answer>"
STEPS = segment_steps(parse_response(FLAWED).think)
IMAGE = Image.new("RGB", (8, 8), (200, 10, 10))


def client(url, retries=2, timeout=2.0):
    return JudgeClient(JudgeConfig(base_url=url, max_retries=retries, backoff_s=0.01, backoff_max_s=0.02,
                                   timeout_s=timeout, cache_size=0))


def attr(step, reason="the cup is red"):
    return ok(json.dumps({"step": step, "reason": reason}))


# ------------------------------------------------------------------ HTTP attributor
def test_judge_attributor_request_and_reply(judge_server):
    judge_server.reset()
    judge_server.script(attr(2))
    a = JudgeAttributor(client(judge_server.url), send_reference_answer=True)
    result = asyncio.run(a.attribute("What colour is the cup?", STEPS, [IMAGE], "red"))
    assert (result.outcome, result.step, result.reason, result.attempts) == ("ok", 2, "the cup is red", 1)
    body = judge_server.requests[0]["body"]
    assert body["messages"][0]["content"] == ATTRIBUTOR_SYSTEM
    content = body["messages"][1]["content"]
    assert content[0]["image_url"]["url"].startswith("data:image/png;base64,")
    text = content[1]["text"]
    assert "[2] Step 2: The cup is blue." in text and "<reference_answer>\nred" in text and "3 steps" in text


def test_malformed_retried_then_unattributed(judge_server):
    judge_server.reset()
    judge_server.script(ok("Step 2 is wrong."), garbage(), attr(2))
    result = asyncio.run(JudgeAttributor(client(judge_server.url)).attribute("q", STEPS, [IMAGE]))
    assert (result.outcome, result.step, result.attempts) == ("ok", 2, 3)
    judge_server.reset()
    judge_server.script(default=ok("I think step two."))
    result = asyncio.run(JudgeAttributor(client(judge_server.url)).attribute("q", STEPS, [IMAGE]))
    assert (result.outcome, result.step, result.attempts, judge_server.count) == ("malformed", None, 3, 3)
    # reference answer not sent unless enabled
    assert "<reference_answer>" not in judge_server.requests[0]["body"]["messages"][1]["content"][-1]["text"]


def test_out_of_range_retried_then_counted(judge_server):
    judge_server.reset()
    judge_server.script(default=attr(9))
    result = asyncio.run(JudgeAttributor(client(judge_server.url, retries=1)).attribute("q", STEPS, []))
    assert (result.outcome, result.step, judge_server.count) == ("out_of_range", None, 2)


def test_attributor_down_slow_and_5xx(judge_server):
    down = asyncio.run(JudgeAttributor(client(f"http://127.0.0.1:{dead_port()}/v1", retries=1))
                       .attribute("q", STEPS, []))
    assert down.outcome == "connection_error" and down.step is None
    judge_server.reset()
    judge_server.script(default=hang(3.0))
    slow = asyncio.run(JudgeAttributor(client(judge_server.url, retries=0, timeout=0.3)).attribute("q", STEPS, []))
    assert slow.outcome == "timeout"
    judge_server.reset()
    judge_server.script(default=status(503))
    assert asyncio.run(JudgeAttributor(client(judge_server.url, retries=1)).attribute("q", STEPS, [])).outcome \
        == "server_error"


def test_policy_attributor_retries_and_think():
    replies = iter(["garbage", '<think>hmm</think>{"step": 1, "reason": "no cup"}'])
    attempts = []

    async def gen(messages, images, attempt):
        assert messages[1]["content"][0] == {"type": "image"}
        attempts.append(attempt)
        return next(replies)

    result = asyncio.run(PolicyAttributor(gen, max_retries=1).attribute("q", STEPS, [IMAGE]))
    assert (result.outcome, result.step, result.attempts) == ("ok", 1, 2) and attempts == [1, 2]

    async def slow(messages, images, attempt):
        await asyncio.sleep(1)

    assert asyncio.run(PolicyAttributor(slow, max_retries=0, timeout_s=0.05).attribute("q", STEPS)).outcome == "timeout"


@pytest.mark.parametrize("reply", [
    '<think>Step 2 says blue, the image shows red.</think><answer>{"step": 2, "reason": "the cup is red"}</answer>',
    '<think>hm</think>\n<answer>\n```json\n{"step": 2, "reason": "the cup is red"}\n```\n</answer>',
    'The first wrong step:\n```json\n{"step": 2, "reason": "the cup is red"}\n```',
])
def test_policy_reply_in_its_own_format_is_parsed(reply):
    async def gen(messages, images, attempt):
        return reply

    result = asyncio.run(PolicyAttributor(gen, max_retries=2).attribute("q", STEPS, [IMAGE]))
    assert (result.outcome, result.step, result.reason, result.attempts) == ("ok", 2, "the cup is red", 1)


def test_policy_retries_skipped_when_they_cannot_differ():
    calls = []

    async def greedy(messages, images, attempt):  # a greedy request repeated gives the same reply
        calls.append(attempt)
        return "Step 2 is wrong."

    result = asyncio.run(PolicyAttributor(greedy, max_retries=2, retries_differ=False).attribute("q", STEPS))
    assert (result.outcome, result.attempts, calls) == ("malformed", 1, [1])
    calls.clear()
    result = asyncio.run(PolicyAttributor(greedy, max_retries=2).attribute("q", STEPS))
    assert (result.outcome, result.attempts, calls) == ("malformed", 3, [1, 2, 3])


# ------------------------------------------------------------------ loop control flow
class ScriptedAttributor:
    def __init__(self, *steps):
        self.steps, self.calls = list(steps), []

    async def attribute(self, question, steps, images=(), reference_answer=None):
        from recipe.ivr_r1.attribution import AttributionResult
        self.calls.append([s.text for s in steps])
        step = self.steps.pop(0)
        if step == "fail":
            return AttributionResult(None, "", "malformed", 3)
        if step is None:
            return AttributionResult(None, "fine", "no_fault", 1)
        return AttributionResult(step, "because", "ok", 1)


class ScriptedGenerator:
    def __init__(self, *continuations):
        self.continuations, self.prompts, self.budgets = list(continuations), [], []

    async def __call__(self, prompt_ids, max_tokens):
        self.prompts.append(TOK.decode(prompt_ids))
        self.budgets.append(max_tokens)
        ids = TOK.encode(self.continuations.pop(0))
        return Generation(ids, [-1.0] * len(ids))


async def verify_red(text):
    return match_answer(parse_response(text).answer, "red").correct is True


def run(attributor, generator, text=FLAWED, rounds=2, prefix_mask=0, response_length=400):
    settings = RereasonSettings(rounds=rounds, cue=CUE, prefix_mask=prefix_mask, min_continuation_tokens=4)
    ids = TOK.encode(text)
    return asyncio.run(rectify(prompt_ids=PROMPT, original=Trajectory(ids, [1] * len(ids), [-0.5] * len(ids)),
                               question="q", images=[IMAGE], reference_answer="red", tokenizer=TOK,
                               attributor=attributor, generate=generator, verify=verify_red, settings=settings,
                               response_length=response_length))


def test_rectified_in_one_round_with_masks():
    cont = "Step 2: The cup is red.</think><answer>red</answer>"
    gen = ScriptedGenerator(cont)
    result = run(ScriptedAttributor(2), gen)
    assert result.status == "rectified" and result.rounds_used == 1
    prefix = "<think>Step 1: There is a cup.\n"
    t = result.trajectory
    assert TOK.decode(t.ids) == prefix + CUE + cont
    # generator saw prompt + kept prefix + cue (image stays in the prompt)
    assert gen.prompts == ["<prompt with image>" + prefix + CUE]
    assert gen.budgets == [400 - len(prefix) - len(CUE)]
    assert t.mask == [0] * len(prefix) + [0] * len(CUE) + [1] * len(cont)
    assert t.log_probs == [-0.5] * len(prefix) + [0.0] * len(CUE) + [-1.0] * len(cont)
    with_prefix = run(ScriptedAttributor(2), ScriptedGenerator(cont), prefix_mask=1).trajectory
    assert with_prefix.mask == [1] * len(prefix) + [0] * len(CUE) + [1] * len(cont)


def test_two_rounds_keep_only_verified():
    wrong = "Step 2: The cup is green.\nStep 3: green.</think><answer>green</answer>"
    right = "It is red.</think><answer>red</answer>"
    attributor = ScriptedAttributor(2, 2)
    result = run(attributor, ScriptedGenerator(wrong, right), rounds=2)
    assert result.status == "rectified" and result.rounds_used == 2
    assert [r.verified for r in result.rounds] == [False, True]
    # round 2 segmented the round-1 trajectory (with the cue inside the kept part)
    assert CUE.strip() in attributor.calls[1][0] and "green" in attributor.calls[1][0]
    text = TOK.decode(result.trajectory.ids)
    assert text.endswith(right) and text.count(CUE) == 2
    t = result.trajectory
    cue_positions = [i for i in range(len(text)) if text.startswith(CUE, i)]
    for pos in cue_positions:  # both cues masked, even the one inside the kept prefix
        assert set(t.mask[pos:pos + len(CUE)]) == {0}
    assert sum(t.mask) == len(right)  # prefix_mask=0: only the final continuation is trained


def test_rounds_exhausted_not_verified():
    result = run(ScriptedAttributor(2), ScriptedGenerator("x</think><answer>green</answer>"), rounds=1)
    assert result.status == "not_verified" and result.trajectory is None and result.rounds[0].verified is False


@pytest.mark.parametrize("text, steps, status", [
    ("<think>  </think><answer>blue</answer>", [], "empty_think"),
    ("<answer>blue</answer>", [], "empty_think"),
    (FLAWED, ["fail"], "unattributed"),
    (FLAWED, [None], "no_fault"),
    (FLAWED, [4], "unattributed"),  # an attributor that does not range-check
])
def test_stops_without_generation(text, steps, status):
    gen = ScriptedGenerator()
    result = run(ScriptedAttributor(*steps), gen, text=text)
    assert result.status == status and result.trajectory is None and gen.prompts == []


def test_length_budget():
    # no room left for a continuation after prefix + cue
    gen = ScriptedGenerator()
    result = run(ScriptedAttributor(3), gen, response_length=len("<think>Step 1: There is a cup.\nStep 2: The cup is blue.\n") + len(CUE) + 2)
    assert result.status == "length_exceeded" and gen.prompts == []
    # continuation hits the budget (truncated, no answer)
    gen = ScriptedGenerator("y" * 500)
    result = run(ScriptedAttributor(1), gen, response_length=60)
    assert result.status == "length_exceeded" and gen.budgets == [60 - len("<think>") - len(CUE)]


def test_generator_error():
    async def broken(prompt_ids, max_tokens):
        raise RuntimeError("server gone")

    assert run(ScriptedAttributor(1), broken).status == "generation_error"


def test_token_cut_keeps_original_tokens():
    ids = [1, 2, 3, 4]

    class Multi:  # each token decodes to 3 characters
        def decode(self, ids):
            return "".join("abc" for _ in ids)

    assert token_cut(Multi(), ids, 7) == 2 and token_cut(Multi(), ids, 0) == 0 and token_cut(Multi(), ids, 99) == 4
