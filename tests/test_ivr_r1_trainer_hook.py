"""IVRR1Trainer's step hook on real TransferQueue (local Ray): it reads the agent loop's per-rollout
`extra_fields["ivr_r1"]` records of the step's real rows, skips verl's padding rows, logs `ivr_r1/`
metrics and dumps original vs rectified chains. The trainer is built with `__new__` (its GPU worker
groups cannot exist on CPU; this method does not use them)."""

import json
import os

import torch
from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from transfer_queue import KVBatchMeta
from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
from verl.utils.tensordict_utils import list_of_dict_to_tensordict

from recipe.ivr_r1.trainer import IVRR1Trainer

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "recipe", "ivr_r1", "config")

INFOS = [  # one group of 4: two correct, one rectified in round 2, one that could not be attributed
    {"screen": "correct", "status": "not_screened", "correct": True},
    {"screen": "correct", "status": "not_screened", "correct": True},
    {"screen": "selected", "status": "rectified", "correct": False, "rounds": 2, "steps": [3, 5],
     "attribution": ["ok", "ok"], "verified": [False, True], "seconds": 1.5,
     "original_text": "<think>1. a\n2. b\n3. wrong</think><answer>A</answer>",
     "rectified_text": "<think>1. a\n2. b\nLet me look again.</think><answer>B</answer>"},
    {"screen": "selected", "status": "unattributed", "correct": False, "rounds": 1, "steps": [None],
     "attribution": ["malformed"], "verified": [None], "seconds": 0.5},
]
SCORES = [2.0, 2.0, 2.0, 1.0]


def trajectory(i):
    rm = torch.zeros(4)
    rm[-1] = SCORES[i]
    fields = {"uid": "g0", "prompts": torch.arange(3), "responses": torch.arange(4) + 9,
              "response_mask": torch.ones(4, dtype=torch.int64), "rm_scores": rm,
              "extra_fields": {"ivr_r1": INFOS[i]}}
    return fields, {"status": "success", "prompt_len": 3, "response_len": 4, "seq_len": 7, "global_steps": 5}


def test_step_metrics_and_dump_from_transfer_queue_rows(transfer_queue, tmp_path):
    tq = transfer_queue
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        config = compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", "ivr_r1.attributor.judge.base_url=http://127.0.0.1:9/v1",
            "ivr_r1.dump.every_k_steps=5", f"ivr_r1.dump.dir={tmp_path}"])
    rows = [trajectory(i) for i in range(4)]
    keys = [f"g0_{i}_0" for i in range(4)]
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict([r[0] for r in rows]),
                    tags=[r[1] for r in rows])
    batch = upsample_batch_to_divisible_size(KVBatchMeta(partition_id="train", keys=keys, tags=[r[1] for r in rows]),
                                             8, eos_token_id=0)  # 4 padding rows copying row 0's fields

    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.config, trainer.global_steps, trainer._mode = config, 5, "replace"
    trainer._rounds, trainer._dump_every, trainer._step_started = 2, 5, None
    metrics = {}
    out = trainer.collect_ivr_metrics(batch, metrics)

    assert out["ivr_r1/rollouts"] == 4.0  # padding rows are not counted
    assert out["ivr_r1/screened_share"] == 0.5
    assert out["ivr_r1/status/rectified"] == 1.0 and out["ivr_r1/status/unattributed"] == 1.0
    assert out["ivr_r1/attribution/success_rate"] == 0.5
    assert out["ivr_r1/attribution/step_3"] == 1.0 and out["ivr_r1/attribution/step_5"] == 1.0
    assert out["ivr_r1/rectify/success_round_1"] == 0.0 and out["ivr_r1/rectify/success_round_2"] == 1.0
    assert out["ivr_r1/acc/original_all"] == 0.5 and out["ivr_r1/acc/after_rectification"] == 0.75
    assert out["ivr_r1/score/rectified_mean"] == 2.0
    assert metrics == out
    dumped = [json.loads(line) for line in open(tmp_path / "step_5.jsonl")]
    assert [d["status"] for d in dumped] == ["rectified", "unattributed"]
    assert dumped[0]["original_text"] != dumped[0]["rectified_text"]
    tq.kv_clear(keys=batch.keys, partition_id="train")


def test_aux_nll_marks_demonstration_tokens_for_the_loss(transfer_queue):
    from recipe.ivr_r1.settings import DEMO_FIELD

    tq = transfer_queue
    masks = [[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]  # row 1: a demonstration whose prefix and cue are masked
    fields, tags = [], []
    for i, mask in enumerate(masks):
        extra = {"ivr_r1": INFOS[2]}
        if i == 1:
            extra[DEMO_FIELD] = True
        fields.append({"uid": "g1", "prompts": torch.arange(3), "responses": torch.arange(4) + 9,
                       "response_mask": torch.tensor(mask), "rm_scores": torch.zeros(4), "extra_fields": extra})
        tags.append({"status": "success", "prompt_len": 3, "response_len": 4, "seq_len": 7, "global_steps": 1})
    keys = ["g1_0_0", "g1_0_1", "g1_1_0"]
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    batch = upsample_batch_to_divisible_size(KVBatchMeta(partition_id="train", keys=keys, tags=tags), 4, eos_token_id=0)

    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer._aux_nll_weight = 0.25
    metrics = {}
    meta = trainer.mark_demonstrations(batch, metrics)
    assert "rollout_is_weights" in meta.fields and meta.keys == batch.keys and meta.tags == batch.tags
    weights = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rollout_is_weights"])
    rows = [w.tolist() for w in weights["rollout_is_weights"].unbind()]
    assert rows[0] == [1.0] * 4 and rows[2] == [1.0] * 4
    assert rows[1] == [0.0, 0.0, -0.25, -0.25]
    assert all(set(r) == {1.0} for r in rows[3:])  # padding row
    assert metrics["ivr_r1/aux_nll/demonstrations"] == 1.0
    tq.kv_clear(keys=batch.keys, partition_id="train")


def _aux_nll_config(weight):
    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        return compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", "actor_rollout_ref.rollout.n=4",
            "ivr_r1.attributor.kind=policy", "ivr_r1.optimization.mode=aux_nll",
            f"ivr_r1.optimization.aux_nll_weight={weight}",
            "actor_rollout_ref.actor.policy_loss.loss_mode=ivr_r1_aux_nll",
            "actor_rollout_ref.actor.use_kl_loss=false"])


def test_aux_nll_demonstration_reaches_the_actor_loss_as_nll(transfer_queue):
    """The batch metadata `_compute_advantage` hands on is what verl dispatches to the actor worker:
    the worker loads exactly `meta.fields` (tqbridge -> `async_kv_batch_meta2batch_meta` ->
    `select_fields`). Load it that way, run verl's `ppo_loss` with the registered policy loss, and check
    that the demonstration's tokens get the NLL gradient (-λ per token, normalized like every token)."""
    from verl.utils import transferqueue_utils
    from verl.utils.config import omega_conf_to_dataclass
    from verl.utils.tensordict_utils import assign_non_tensor
    from verl.workers.utils.losses import ppo_loss

    from recipe.ivr_r1.settings import DEMO_FIELD

    tq, lam = transfer_queue, 0.5
    config = _aux_nll_config(lam)
    # one GRPO group of 4 sessions; session 0 returned [demonstration, flawed rollout] (verl keys uid_session_index)
    rows = [  # key, reward, response_mask, demonstration
        ("g3_0_0", 0.0, [0, 0, 1, 1, 1], True), ("g3_0_1", 0.0, [1, 1, 1, 1], False),
        ("g3_1_0", 1.0, [1, 1, 1], False), ("g3_2_0", 1.0, [1, 1, 1, 1, 1, 1], False),
        ("g3_3_0", 0.0, [1, 1], False)]
    fields, tags = [], []
    for key, reward, mask, demo in rows:
        n = len(mask)
        rm = torch.zeros(n)
        rm[-1] = reward
        extra = {"ivr_r1": {"screen": "selected" if key.startswith("g3_0") else "correct"}}
        if demo:
            extra[DEMO_FIELD] = True
        fields.append({"uid": "g3", "prompts": torch.arange(3) + 1, "responses": torch.arange(n) + 9,
                       "response_mask": torch.tensor(mask), "loss_mask": torch.tensor(mask), "rm_scores": rm,
                       "extra_fields": extra})
        tags.append({"status": "success", "prompt_len": 3, "response_len": n, "seq_len": 3 + n, "global_steps": 1})
    keys = [r[0] for r in rows]
    tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    batch = upsample_batch_to_divisible_size(KVBatchMeta(partition_id="train", keys=keys, tags=tags), 6,
                                             eos_token_id=0)
    # what verl's _compute_old_log_prob does: write old log-probs, continue with the metadata the put returns
    old = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["response_mask"])["response_mask"]
    old_lp = torch.nested.as_nested_tensor([-0.3 * torch.ones(m.numel()) for m in old.unbind()], layout=torch.jagged)
    batch = tq.kv_batch_put(keys=batch.keys, partition_id="train",
                            fields=TensorDict({"old_log_probs": old_lp}, batch_size=len(batch.keys)))

    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.config, trainer._aux_nll_weight, trainer._mode = config, lam, "aux_nll"
    metrics = {}
    meta = trainer._compute_advantage(batch, metrics)  # verl's GRPO, then the recipe's marking
    assert metrics["ivr_r1/aux_nll/demonstrations"] == 1.0

    actor_config = omega_conf_to_dataclass(config.actor_rollout_ref.actor)
    chunks = meta.chunk(2)  # dispatch over dp=2, as make_nd_compute_dataproto_dispatch_fn does
    loaded = [transferqueue_utils._meta_to_realdata(chunk) for chunk in chunks]  # the worker's fetch
    total_tokens = sum(int(d["loss_mask"].values().sum()) for d in loaded)
    demo_checked = False
    for chunk, data in zip(chunks, loaded):
        assert "rollout_is_weights" in data.keys()
        assign_non_tensor(data, dp_size=2, batch_num_tokens=total_tokens, global_batch_size=len(meta))
        seq_lens = (data["prompts"].offsets().diff() + data["responses"].offsets().diff()).tolist()
        log_probs = torch.full((sum(seq_lens),), -0.3, requires_grad=True)  # = old log-probs: ratio 1
        nested = torch.nested.nested_tensor_from_jagged(log_probs, lengths=torch.tensor(seq_lens))
        loss, _ = ppo_loss(actor_config, {"log_probs": nested}, data)
        loss.backward()
        offset = 0
        for key, seq_len, adv in zip(chunk.keys, seq_lens, data["advantages"].unbind()):
            n = seq_len - 3
            grad = log_probs.grad[offset + 2: offset + 2 + n]  # log-prob of response token t sits at prompt_len+t-1
            mask = torch.tensor(dict((r[0], r[2]) for r in rows).get(key, [0] * n), dtype=torch.float32)
            if key == "g3_0_0":  # the demonstration: -λ·NLL, whatever advantage GRPO broadcast to it
                assert adv.abs().max() > 0.1  # the flawed sibling's advantage is really there
                assert torch.allclose(grad, -lam * 2 / total_tokens * mask)
                demo_checked = True
            else:  # ordinary rows: PPO with their own advantage (ratio 1, unclipped): -A per token
                assert torch.allclose(grad, -adv * 2 / total_tokens * mask, atol=1e-6)
            offset += seq_len
    assert demo_checked
    tq.kv_clear(keys=meta.keys, partition_id="train")


def test_aux_nll_demonstrations_do_not_add_a_padding_mini_batch():
    """2048 rollouts (256 prompts x 8) + 100 demonstrations, dp=8, ppo_mini_batch_size=64. verl's sizing
    pads to a multiple of 512: 2560 rows, 5 optimizer steps, the 5th of 100 real rows in 512. The recipe
    keeps verl's 4 updates: padded to a multiple of 4 x lcm(8, 8), 4 mini-batches of 544 rows. The number
    of updates is counted as the actor worker does (EngineWorker.train_mini_batch's arithmetic)."""
    from verl.trainer.ppo.v1.trainer_base import PPOTrainer

    with initialize_config_dir(config_dir=os.path.abspath(CONFIG_DIR), version_base=None):
        config = compose(config_name="ivr_r1_trainer", overrides=[
            "actor_rollout_ref.model.path=/nonexistent", "ivr_r1.attributor.kind=policy",
            "ivr_r1.optimization.mode=aux_nll", "actor_rollout_ref.actor.policy_loss.loss_mode=ivr_r1_aux_nll"])
    trainer = IVRR1Trainer.__new__(IVRR1Trainer)
    trainer.config, trainer._aux_nll_weight, trainer.use_critic, trainer.global_steps = config, 0.1, False, 1
    trainer._mode = "aux_nll"
    dp, rows = 8, 256 * 8 + 100

    def padded(multiple):
        return -(-rows // multiple) * multiple

    verl_rows = padded(PPOTrainer._get_required_batch_multiple(trainer, dp))
    assert (verl_rows, verl_rows // (64 * 8)) == (2560, 5)  # measured: 412 padding rows, one extra update
    ours = padded(trainer._get_required_batch_multiple(dp))
    assert ours - rows < 32

    class ActorGroup:  # the GPU worker group cannot exist on CPU: record what verl dispatches to it
        def update_actor(self, batch):
            self.extra_info = dict(batch.extra_info)
            return {"metrics": {"mfu": [0.0]}}

    trainer.actor_rollout_wg, trainer.distillation_config = ActorGroup(), None
    batch = KVBatchMeta(partition_id="train", keys=[f"k{i}_0_0" for i in range(ours)], tags=[{}] * ours)
    from omegaconf import OmegaConf

    OmegaConf.set_readonly(config, True)  # a frozen run config must not break the override
    trainer._update_actor(batch, {})
    info = trainer.actor_rollout_wg.extra_info
    per_gpu = info["mini_batch_size"] // dp  # EngineWorker.train_mini_batch
    assert info["mini_batch_size"] % dp == 0 and (ours // dp) // per_gpu * info["epochs"] == 4
    assert info["global_batch_size"] == info["mini_batch_size"] == ours // 4
    assert config.actor_rollout_ref.actor.ppo_mini_batch_size == 64  # restored
