"""`python -m recipe.ivr_r1.preflight [overrides]`: compose the IVR-R1 config with the launch overrides
and run verl's validate_config plus the recipe's checks, without Ray or GPUs. Prints the ivr_r1 section."""

from __future__ import annotations

import os
import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from recipe.ivr_r1.main import check_config

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "config")


def preflight(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base=None):
        config = compose(config_name="ivr_r1_trainer", overrides=overrides)
    settings = check_config(config)
    return config, settings


def main(argv: list[str]) -> int:
    try:
        config, settings = preflight(argv)
    except Exception as e:  # noqa: BLE001 - report any config error as a failed preflight
        print(f"PREFLIGHT FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(OmegaConf.to_yaml(config.ivr_r1))
    print(f"preflight ok: {settings.attributor_kind} attributor, rounds={settings.rereason.rounds}, "
          f"qualify={settings.screen.qualify}, cap={settings.screen.cap_per_group}, mode={settings.optimization_mode}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
