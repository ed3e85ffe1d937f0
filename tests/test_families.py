"""The model-family registry against the world: transformers' own Qwen-VL configs (model_type, patch and
merge size), a local checkpoint folder, the hub cache layout huggingface_hub writes, and the consumers
(preflight, SFT preflight, eval) that all answer from it."""

from __future__ import annotations

import json

import pytest

from reward_score.families import (
    FAMILIES,
    detect_family,
    family_for_model_type,
    family_for_patch_size,
    get_family,
    patch_size_problem,
)


@pytest.mark.parametrize("config_class, family", [("Qwen2_5_VLConfig", "qwen2_5_vl"), ("Qwen3VLConfig", "qwen3_vl"),
                                                  ("Qwen3VLMoeConfig", "qwen3_vl")])
def test_family_facts_are_transformers_configs(config_class, family):
    import transformers

    config = getattr(transformers, config_class)()
    found = family_for_model_type(config.model_type)
    assert found is not None and found.name == family
    assert (found.patch_size, found.merge_size) == (config.vision_config.patch_size,
                                                    config.vision_config.spatial_merge_size)
    assert family_for_patch_size(config.vision_config.patch_size) is found


def test_qwen2_vl_is_not_guessed_and_default_bounds_are_the_papers_token_budget():
    import transformers

    assert family_for_model_type(transformers.Qwen2VLConfig().model_type) is None
    for family in FAMILIES.values():  # 4 .. 4,096 image tokens of (patch x merge)^2 pixels
        assert family.default_min_pixels == 4 * family.resize_factor ** 2
        assert family.default_max_pixels == 4096 * family.resize_factor ** 2
    assert get_family("qwen2_5_vl").default_max_pixels == 3_211_264  # the paper's max_pixels for Qwen2.5-VL
    with pytest.raises(ValueError, match="unknown model family"):
        get_family("llava")


def test_detection_from_config_folder_hub_cache_and_name(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    folder = tmp_path / "Qwen3-VL-finetune"  # the folder's config wins over a misleading name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2_5_vl"}))
    assert detect_family(str(folder))[0].name == "qwen2_5_vl"
    qwen2 = tmp_path / "Qwen2.5-VL-looking-name"
    qwen2.mkdir()
    (qwen2 / "config.json").write_text(json.dumps({"model_type": "qwen2_vl"}))
    family, why = detect_family(str(qwen2))
    assert family is None and "qwen2_vl" in why
    snapshot = tmp_path / "hub" / "models--acme--vision-8b" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"model_type": "qwen3_vl_moe"}))
    (tmp_path / "hub" / "models--acme--vision-8b" / "refs").mkdir()
    (tmp_path / "hub" / "models--acme--vision-8b" / "refs" / "main").write_text("0123abcd")
    family, why = detect_family("acme/vision-8b")
    assert family.name == "qwen3_vl" and "hub cache" in why
    assert detect_family("Qwen/Qwen2.5-VL-72B-Instruct")[0].name == "qwen2_5_vl"
    assert detect_family("/ckpt/qwen3vl-8b-grpo")[0].name == "qwen3_vl"
    assert detect_family("acme/unknown-7b")[0] is None and detect_family(None)[0] is None


def test_patch_size_rule_and_its_consumers_agree(tmp_path):
    """The dataset and both preflights ask the registry: pixel frames need the model's resize factor."""
    from recipe.ivgr.eval.main import detect_box_frame
    from recipe.ivgr.preflight.config import compose_config
    from recipe.ivgr.preflight.model import check_frames
    from recipe.ivgr.preflight.report import Findings

    assert patch_size_problem("qwen2_5_vl", 14) is None and patch_size_problem("qwen3_vl", 16) is None
    assert "resizes by 32" in patch_size_problem("qwen2_5_vl", 16)
    assert patch_size_problem("qwen3_vl", 14) is None  # relative boxes hold at any known resize
    assert "no model family" in patch_size_problem("qwen3_vl", 15)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3_vl"}))
    assert detect_box_frame(str(folder))[0] == "qwen3_vl"
    findings = Findings()
    config = compose_config([f"actor_rollout_ref.model.path={folder}", "ivgr.box_frame=qwen2_5_vl",
                             "data.image_patch_size=14"])
    check_frames(config, {}, findings)
    assert any("the model looks like qwen3_vl (patch 16)" in p for p in findings.problems)
    assert any("ivgr.box_frame=qwen2_5_vl but the model looks like qwen3_vl" in p for p in findings.problems)
