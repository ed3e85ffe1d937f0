"""A vLLM-free rollout for verl 0.9.1 on CPU: a Ray server actor that generates with the Hugging Face
model, registered as `actor_rollout_ref.rollout.name=hf_cpu`.

Pieces, mirroring verl's vLLM rollout (`workers/rollout/vllm_rollout/`):
- `HFCPUServer`: the Ray actor holding the model and its processor. verl's agent loop calls
  `generate(prompt_ids, sampling_params, request_id, image_data=...)` on it (`llm_server.py`) with
  prompt ids that already hold the expanded `<|image_pad|>` tokens and the images already resized
  by the dataset's `process_vision_info`; the server applies the image processor to get
  `pixel_values`/`image_grid_thw` and samples with `model.generate`.
- `HFCPUReplica`: the `RolloutReplica` that starts one server per replica (hybrid mode).
- `HFCPUServerAdapter`: the `BaseRollout` in the trainer worker. With
  `rollout.checkpoint_engine.backend=naive`, verl calls its `update_weights` in-process after every
  actor update; it sends the state dict to the server, so the next step samples from the updated policy.

For a CPU smoke run of the whole training loop on a tiny model, not for throughput: requests are
served one at a time. Sampling is seeded like verl's vLLM server (`vllm_async_server.py` ~343: engine
seed `rollout.seed + replica_rank`): each request draws from a generator seeded by that seed, the
weights version, the prompt and how many identical prompts came before it under these weights, so
fresh runs with the same seed sample the same rollouts whatever order the agent loop's requests
arrive in (a per-request `seed` in the sampling params, verl's full-determinism mode, wins). Each
weight update and generation is logged with a weight fingerprint, so a run's log shows that the
rollout policy follows the actor.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections import Counter
from typing import Any, Optional

import ray
import torch

from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput

from recipe.cpu_backend.weights import WeightChangeTracker, weight_fingerprint

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "INFO"))

SERVER_PREFIX = "hf_cpu_"


def server_name(replica_rank: int, kind: str = "", suffix: str = "") -> str:
    """Ray actor name of a replica's server (kind: "" for the policy, "reward_" or "teacher_")."""
    return f"{SERVER_PREFIX}server_{kind}{replica_rank}{suffix}"


def request_seed(base_seed: int, weights_version: int, prompt_ids: list[int], occurrence: int) -> int:
    """Sampling seed of one request: a 63-bit hash of the server's seed, its weights version, the prompt
    tokens and the request's rank among identical prompts under these weights (the n rollouts of one
    row share a prompt and must differ; their order of arrival must not matter)."""
    text = f"{int(base_seed)}|{int(weights_version)}|{int(occurrence)}|{','.join(map(str, prompt_ids))}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def generation_config(params: dict[str, Any], max_new_tokens: int, eos_ids: list[int], pad_id: int | None):
    """vLLM-style sampling params -> a complete `GenerationConfig` (temperature 0 = greedy, top_k -1 =
    off). Built from scratch, so no default of the model folder's generation_config.json (a
    repetition penalty, min_new_tokens, ...) leaks into sampling: vLLM samples with what verl sends."""
    from transformers import GenerationConfig

    temperature = float(params.get("temperature", 1.0))
    top_k = int(params.get("top_k", -1) or -1)
    sampled = temperature > 0
    stop_ids = sorted(set(eos_ids) | set(params.get("stop_token_ids") or []))
    stop = params.get("stop")
    return GenerationConfig(
        max_new_tokens=max_new_tokens, eos_token_id=None if params.get("ignore_eos") else stop_ids,
        pad_token_id=pad_id, do_sample=sampled, stop_strings=([stop] if isinstance(stop, str) else stop) or None,
        temperature=temperature if sampled else 1.0, top_p=float(params.get("top_p", 1.0)) if sampled else 1.0,
        # 0, not None, when off: generate() fills an unset top_k with transformers' global default 50
        # (GenerationMixin._prepare_generation_config), a sharper policy than the one verl trains
        top_k=top_k if sampled and top_k > 0 else 0,
        repetition_penalty=float(params.get("repetition_penalty") or 1.0),
        return_dict_in_generate=True, output_logits=True, output_scores=True,
    )


class HFCPUServer:
    """Token-in/token-out generation with a transformers model (one request at a time)."""

    def __init__(self, config, model_config, replica_rank: int) -> None:
        from transformers import AutoModelForImageTextToText

        from verl.utils.config import omega_conf_to_dataclass
        from verl.workers.config import HFModelConfig

        self.config = config
        self.replica_rank = replica_rank
        model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        path = model_config.local_path
        self.tokenizer = model_config.tokenizer
        self.processor = model_config.processor
        self.model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32).eval()
        self.global_steps: Optional[int] = None
        self.weights_version = 0  # number of weight updates received
        self.fingerprint = weight_fingerprint(self.model.state_dict().values())
        eos = {self.tokenizer.eos_token_id}
        generation_eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos.update(generation_eos if isinstance(generation_eos, list) else [generation_eos])
        self.eos_ids = sorted(i for i in eos if i is not None)
        self.generated = 0
        self.generated_version = -1
        # vLLM's engine seed in verl (vllm_async_server.py ~343): rollout.seed + replica rank
        self.seed = int(getattr(config, "seed", 0) or 0) + int(replica_rank)
        self._seen: Counter = Counter()  # (weights version, prompt hash) -> requests so far
        self._lock = asyncio.Lock()
        logger.info("hf_cpu rollout server %d: %s loaded, weight fingerprint %.6f", replica_rank, path,
                    self.fingerprint)

    # ------------------------------------------------------------------ generation
    def _vision_inputs(self, prompt_ids: list[int], image_data, mm_processor_kwargs) -> dict[str, torch.Tensor]:
        if not image_data:
            return {}
        if self.processor is None:
            raise ValueError("the prompt has images but the model folder has no processor")
        out = self.processor.image_processor(images=image_data, return_tensors="pt", **(mm_processor_kwargs or {}))
        grid = out["image_grid_thw"]
        merge = getattr(self.processor.image_processor, "merge_size", 2)
        expected = int((grid.prod(dim=-1) // (merge * merge)).sum())
        image_token = self.model.config.image_token_id
        found = sum(1 for t in prompt_ids if t == image_token)
        if found != expected:
            raise ValueError(f"prompt holds {found} image tokens but the images give {expected} "
                             f"(grid {grid.tolist()}): the agent loop and the server resized differently")
        # transformers >= 5.3 finds the image tokens for Qwen-VL's M-RoPE positions only through
        # mm_token_type_ids; without it every token gets a text position (logits off by several units).
        # Built as verl's agent loop builds it for the actor (agent_loop.py `_compute_position_ids`).
        token_types = torch.tensor([[1 if t == image_token else 0 for t in prompt_ids]], dtype=torch.long)
        return {"pixel_values": out["pixel_values"], "image_grid_thw": grid, "mm_token_type_ids": token_types}

    def _max_tokens(self, prompt_len: int, params: dict[str, Any]) -> int:
        room = self.config.max_model_len - prompt_len if self.config.max_model_len else self.config.response_length
        wanted = params.pop("max_tokens", None) or params.pop("max_new_tokens", None)
        if wanted is None:
            wanted = min(self.config.response_length,
                         self.config.prompt_length + self.config.response_length - prompt_len)
        if room < 1:
            raise ValueError(f"prompt length {prompt_len} leaves no room within max_model_len "
                             f"{self.config.max_model_len}")
        return max(1, min(int(wanted), room))

    def _generate_sync(self, prompt_ids: list[int], params: dict[str, Any], image_data,
                       mm_processor_kwargs) -> TokenOutput:
        params = dict(params)
        want_logprobs = bool(params.pop("logprobs", False))
        max_new = self._max_tokens(len(prompt_ids), params)
        vision = self._vision_inputs(prompt_ids, image_data, mm_processor_kwargs)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        config = generation_config(params, max_new, self.eos_ids, self.tokenizer.pad_token_id)
        if params.get("seed") is not None:  # verl's per-request seed (full determinism); one request at a time
            seed = int(params["seed"])
        else:
            key = (self.weights_version, hashlib.sha256(str(prompt_ids).encode()).hexdigest())
            seed = request_seed(self.seed, self.weights_version, prompt_ids, self._seen[key])
            self._seen[key] += 1
        torch.manual_seed(seed)  # generate() samples from the global generator; this process serves one request
        with torch.no_grad():
            out = self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), **vision,
                                      generation_config=config, tokenizer=self.tokenizer)
        tokens = out.sequences[0, len(prompt_ids):].tolist()
        stops = set(config.eos_token_id or [])
        if any(t in stops for t in tokens):  # keep the stop token, drop anything after it
            tokens = tokens[: next(i for i, t in enumerate(tokens) if t in stops) + 1]
        log_probs = None
        if want_logprobs:
            # vLLM's logprobs_mode: "processed_logprobs" (verl's default) after temperature/top-k/top-p,
            # "raw_logprobs" from the model's logits
            steps = out.scores if self.config.logprobs_mode == "processed_logprobs" else out.logits
            log_probs = [torch.log_softmax(steps[i][0].float(), dim=-1)[t].item() for i, t in enumerate(tokens)]
        if self.generated_version != self.weights_version:
            self.generated_version = self.weights_version
            logger.warning("hf_cpu rollout server %d: generating with weights version %d (step %s), fingerprint %.6f",
                           self.replica_rank, self.weights_version, self.global_steps, self.fingerprint)
        self.generated += 1
        # vLLM reports both "stop" and "length" finishes as "completed"
        return TokenOutput(token_ids=tokens, log_probs=log_probs, stop_reason="completed",
                           extra_fields={"global_steps": self.global_steps, "weights_version": self.weights_version})

    async def generate(self, prompt_ids: list[int], sampling_params: dict[str, Any], request_id: str,
                       image_data: Optional[list[Any]] = None, video_data: Optional[list[Any]] = None,
                       audio_data: Optional[list[Any]] = None, mm_processor_kwargs: Optional[dict[str, Any]] = None,
                       priority: int = 0, **kwargs) -> TokenOutput:
        if video_data or audio_data:
            raise ValueError("the hf_cpu rollout serves text and images only")
        async with self._lock:
            return await asyncio.to_thread(self._generate_sync, list(prompt_ids), sampling_params, image_data,
                                           mm_processor_kwargs)

    # ------------------------------------------------------------------ weights
    def update_weights(self, named_tensors: dict[str, torch.Tensor], global_steps: Optional[int] = None) -> dict:
        """Load the actor's (HF-named) weights; unknown or missing names raise, so a silent partial
        update cannot happen. Returns the new fingerprint and version."""
        state = self.model.state_dict()
        unknown = [k for k in named_tensors if k not in state]
        if unknown:
            raise KeyError(f"hf_cpu rollout: {len(unknown)} weight names unknown to the model, e.g. {unknown[:3]}")
        with torch.no_grad():
            for name, tensor in named_tensors.items():
                state[name].copy_(tensor.to(state[name].dtype))
        tied = getattr(self.model.config, "tie_word_embeddings", False)
        missing = [k for k in state if k not in named_tensors and not (tied and k == "lm_head.weight")]
        self.weights_version += 1
        self._seen.clear()  # occurrences count per weights version
        if global_steps is not None:  # the weight version verl tags trajectories with (as vLLM's server)
            self.global_steps = global_steps
        before, self.fingerprint = self.fingerprint, weight_fingerprint(self.model.state_dict().values())
        logger.warning("hf_cpu rollout server %d: weights update %d (step %s): %d tensors, %d not sent, "
                       "fingerprint %.6f -> %.6f", self.replica_rank, self.weights_version, global_steps,
                       len(named_tensors), len(missing), before, self.fingerprint)
        return {"weights_version": self.weights_version, "fingerprint": self.fingerprint, "not_sent": len(missing)}

    def stats(self) -> dict:
        return {"weights_version": self.weights_version, "fingerprint": self.fingerprint, "generated": self.generated}

    # ------------------------------------------------------------------ lifecycle (no device memory to manage)
    async def set_global_steps(self, global_steps: int):
        self.global_steps = global_steps

    async def wake_up(self, tags: Optional[list[str]] = None):
        return None

    async def sleep(self):
        return None

    async def clear_kv_cache(self):
        return None

    async def release_kv_cache(self):
        return None

    async def resume_kv_cache(self):
        return None

    async def abort_all_requests(self, reset_prefix_cache: bool = True, reject_request: bool = False) -> dict:
        return {"aborted_count": 0, "request_ids": []}

    async def abort_request(self, request_id: str, reset_prefix_cache: bool = True) -> dict:
        return {"aborted": False, "request_id": request_id}

    async def resume_generation(self):
        return None

    async def start_profile(self, **kwargs):
        return None

    async def stop_profile(self):
        return None


class HFCPUReplica(RolloutReplica):
    """One `HFCPUServer` per replica; hybrid mode (the actor workers hold the training engine)."""

    async def launch_servers(self):
        if self.world_size != 1:
            raise ValueError("the hf_cpu rollout runs one process per replica: set "
                             "rollout.tensor_model_parallel_size=1 (and data/pipeline parallel 1)")
        kind = "reward_" if self.is_reward_model else "teacher_" if self.is_teacher_model else ""
        server = ray.remote(HFCPUServer).options(
            name=server_name(self.replica_rank, kind, self.name_suffix), num_cpus=0,
            max_concurrency=self.max_concurrency,
        ).remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"hf-cpu-replica-{self.replica_rank}"
        await server.stats.remote()  # wait until the model is loaded


class HFCPUServerAdapter(BaseRollout):
    """The trainer worker's side of the hf_cpu rollout: pushes weights to its replica's server."""

    def __init__(self, config, model_config, device_mesh, replica_rank: int = -1, **kwargs):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", 0))
        self.replica_rank = rank if replica_rank == -1 else replica_rank
        self._server = None
        self._changes = WeightChangeTracker()

    def _handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]):
        return None

    async def release(self):
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs):
        if wire_format != "named_tensors":
            raise ValueError(f"the hf_cpu rollout takes full named tensors, not {wire_format!r}")
        named = {}
        for name, tensor in weights:
            if hasattr(tensor, "full_tensor"):  # DTensor shard from FSDP2
                tensor = tensor.full_tensor()
            named[name] = tensor.detach().to("cpu", copy=True)
            self._changes.see(name, named[name])
        self._changes.report("hf_cpu", kwargs.get("global_steps"))
        await self._handle().update_weights.remote(named, global_steps=kwargs.get("global_steps"))
