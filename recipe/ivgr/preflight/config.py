"""The preflight's config: composed as the entry point composes it, read without raising, and checked
by the recipe's own `check_config` and settings parsers (never re-implemented here)."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recipe.ivgr.preflight.report import Findings

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"
CONFIG_NAME = "ivgr_trainer"
REPO_ROOT = Path(__file__).resolve().parents[3]


def select(config, key: str, default: Any = None) -> Any:
    """`OmegaConf.select` that never raises (missing `???` or broken interpolations give `default`)."""
    from omegaconf import OmegaConf

    try:
        value = OmegaConf.select(config, key, default=default, throw_on_missing=False)
    except Exception:  # noqa: BLE001  (interpolation errors are reported by check_config)
        return default
    return default if value is None else value


def plain(value: Any) -> Any:
    """OmegaConf containers as plain Python objects (resolved); anything else unchanged."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


def file_list(value: Any) -> list[str]:
    """A `data.*_files` value (one path or a list) as a list of strings."""
    value = plain(value)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def compose_config(overrides: Sequence[str], config_dir: Path = CONFIG_DIR, config_name: str = CONFIG_NAME):
    """The config `python -m recipe.ivgr.main <overrides>` runs with (the `hydra` node excluded);
    another recipe passes its own config folder and name."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name=config_name, overrides=list(overrides))


def run_check_config(config, findings: Findings, check_config=None) -> None:
    """The recipe's `check_config` (default `recipe.ivgr.main.check_config`): verl's validate_config plus
    the recipe's own invariants."""
    logging.disable(logging.WARNING)  # verl's import-time "no accelerator" chatter on CPU boxes
    try:
        if check_config is None:
            from recipe.ivgr.main import check_config
    finally:
        logging.disable(logging.NOTSET)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            check_config(config)
    except Exception as err:  # noqa: BLE001  (verl raises ValueError, AssertionError, omegaconf errors)
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        findings.problem(f"config: check_config (verl validate_config + recipe rules) failed: {message}")
        return
    findings.note("config: verl validate_config and the recipe's checks passed")


def check_recipe_settings(config, findings: Findings) -> None:
    """`reward_score` and `reward_score.judge` through the parsers the reward workers use; verl's reward model off."""
    from reward_score.config import reward_config
    from reward_score.judge import JudgeConfig

    try:
        reward_config(plain(select(config, "reward_score", {})))
    except (ValueError, TypeError) as err:
        findings.problem(f"reward_score: {err}")
    try:
        from reward_score.judge.policy import split_judge_settings  # the step policy keys beside the client's

        JudgeConfig.from_mapping(split_judge_settings(plain(select(config, "reward_score.judge", {})))[0])
    except (ValueError, TypeError) as err:
        findings.problem(f"reward_score.judge: {err}")
    if select(config, "reward.reward_model.enable", False):
        findings.problem("reward.reward_model.enable=true: the iVGR recipe does not read verl's reward model; its "
                         "judge is reward_score.judge.base_url (an OpenAI-compatible server, scripts/serve_judge.sh). See "
                         "scripts/README.md 'Judge inside the Ray cluster?'")
    if select(config, "reward.custom_reward_function.path") is not None:
        findings.warn("reward.custom_reward_function.path is set but the recipe's IVGRRewardManager ignores it")
