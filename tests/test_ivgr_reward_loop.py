"""The per-rollout reward through verl's real RewardLoopManager: 2 reward workers on local Ray, the
recipe's manager loaded by importlib from `pkg://recipe.ivgr.reward_manager`, a real judge server."""

import os

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from judge_server import ok
from tensordict import TensorDict
from verl import DataProto

from data_prep.offline_processor import build_tokenizer
from reward_score import compute_score

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivgr", "config")
SIZE = [800, 1000]
BOUNDS = {"min_pixels": 3136, "max_pixels": 1280 * 28 * 28}

CASES = [  # (stream, response, ground truth)
    ("grounded", "<think>the cup <box>[101.5, 201.6, 406, 504]</box> is red</think><answer>B</answer>", "B"),
    ("grounded", "<think>no box here</think><answer>A</answer>", "B"),
    ("textual", "<think>the cup is red</think><answer>It is a shade of crimson</answer>", "red"),
    ("textual", "<think>x</think><answer>yes</answer>", "no"),
    ("single", "<think>2+2</think><answer>4</answer>", "4"),
    ("single", "no tags at all", "4"),
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    build_tokenizer().save_pretrained(path)
    return str(path)


def batch(tokenizer):
    prompts, responses, masks = [], [], []
    encoded = [tokenizer.encode(text, add_special_tokens=False) for _, text, _ in CASES]
    width = max(len(e) for e in encoded) + 3
    for ids in encoded:
        prompt = [5, 6, 7]
        padded = ids + [tokenizer.pad_token_id] * (width - len(ids))
        prompts.append(prompt)
        responses.append(padded)
        masks.append([1] * len(prompt) + [1] * len(ids) + [0] * (width - len(ids)))
    extra = [{"stream": stream, "sample_id": f"s{i}", "question": "What colour is the cup?", "gt_boxes": [[100, 200, 400, 500]],
              "image_size": SIZE, "box_frame": "qwen2_5_vl", **BOUNDS} for i, (stream, _, _) in enumerate(CASES)]
    return DataProto(
        batch=TensorDict({"prompts": torch.tensor(prompts), "responses": torch.tensor(responses),
                          "attention_mask": torch.tensor(masks)}, batch_size=len(CASES)),
        non_tensor_batch={
            "data_source": np.array([f"synthetic/{s}" for s, _, _ in CASES], dtype=object),
            "reward_model": np.array([{"ground_truth": gt} for _, _, gt in CASES], dtype=object),
            "extra_info": np.array(extra, dtype=object),
        },
    )


def test_reward_manager_in_verl_reward_workers(ray_cluster, tokenizer_dir, judge_server):
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    judge_server.reset()
    judge_server.default = ok("The prediction names the same colour. Verdict: 1")
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        config = compose(config_name="ivgr_trainer", overrides=[
            f"actor_rollout_ref.model.path={tokenizer_dir}", "reward.num_workers=2",
            f"reward_score.judge.base_url={judge_server.url}"])
    manager = RewardLoopManager(config)
    data = batch(build_tokenizer())
    out = manager.compute_rm_score(data)

    scores = out.batch["rm_scores"].sum(dim=1).tolist()
    info = out.non_tensor_batch
    # rules alone, then the judge for the one undecided answer ("a shade of crimson" vs "red")
    expected = [compute_score("s", text, gt, dict(data.non_tensor_batch["extra_info"][i]))
                for i, (_, text, gt) in enumerate(CASES)]
    assert scores[0] == pytest.approx(4.0, abs=1e-3) and info["iou"][0] == pytest.approx(1.0, abs=1e-3)
    assert [scores[i] for i in (1, 3, 4, 5)] == pytest.approx([expected[i]["score"] for i in (1, 3, 4, 5)])
    assert expected[2]["acc_undecided"] == 1.0
    assert info["acc"][2] == 1.0 and info["acc_undecided"][2] == 0.0 and scores[2] == pytest.approx(2.0)
    assert judge_server.count == 1
    assert info["think"][0] == "the cup <box>[101.5, 201.6, 406, 504]</box> is red"
    assert {"score", "format", "acc", "iou", "box_valid", "think"} <= set(out.meta_info["reward_extra_keys"])
    # the reward reaches rm_scores on the last valid response token, where verl's GRPO reads it
    last = data.batch["attention_mask"][:, 3:].sum(dim=1) - 1
    assert out.batch["rm_scores"][torch.arange(len(CASES)), last].tolist() == pytest.approx(scores)
