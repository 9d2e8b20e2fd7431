"""Model configs: the shipped YAML files, derived sizes, and errors that name the offending key."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import yaml

from aqr_ros.model.config import ConfigError, available_configs, config_from_dict, load_config, models_dir

TARGET = "cmt_aqr_voxel0100_r50_800x320"


@pytest.fixture()
def target_dict() -> dict:
    with (models_dir() / f"{TARGET}.yaml").open() as f:
        return yaml.safe_load(f)


def test_shipped_configs_load_with_their_settings():
    assert {TARGET, f"{TARGET}_clamp2.5_res0.6", f"{TARGET}_original"} <= set(available_configs())
    cfg = load_config(TARGET)
    assert cfg.lidar.grid_size == (1080, 1080, 40)  # the voxel grid, while sparse_shape stays 1024
    assert cfg.lidar.sparse_shape == (41, 1024, 1024) and cfg.lidar.bev_shape == (128, 128)
    assert cfg.image.feature_shape == (20, 50) and cfg.image.input_size == (320, 800)
    assert cfg.head.class_names[0] == "car" and cfg.head.class_names[-1] == "traffic_cone"
    assert (cfg.aqr.window_sizes, cfg.aqr.max_weight_clamp, cfg.aqr.residual_weight) == ((8, 5), 1.5, 0.7)
    assert cfg.aqr.postprocess_perspective is True  # the fix is the default
    fixed = load_config(f"{TARGET}_clamp2.5_res0.6")
    assert (fixed.aqr.max_weight_clamp, fixed.aqr.residual_weight) == (2.5, 0.6)
    assert fixed.lidar == cfg.lidar and fixed.head == cfg.head
    original = load_config(f"{TARGET}_original")  # the 1.5/0.7 run as trained, with the camera-map bug
    assert original.aqr.postprocess_perspective is False
    assert original.aqr == dataclasses.replace(cfg.aqr, postprocess_perspective=False)


def test_load_by_path(tmp_path, target_dict):
    target_dict["aqr"]["postprocess_perspective"] = False
    path = tmp_path / "buggy.yaml"
    path.write_text(yaml.safe_dump(target_dict))
    assert load_config(path).aqr.postprocess_perspective is False


@pytest.mark.parametrize("section, key, value, message", [
    ("aqr", "max_weight_clampp", 1.5, "aqr.max_weight_clampp: unknown key"),
    ("aqr", "max_weight_clamp", -1.0, "aqr.max_weight_clamp: must be positive"),
    ("aqr", "postprocess_perspective", "yes", "aqr.postprocess_perspective: expected true/false"),
    ("lidar", "voxel_size", [0.1, 0.1], "lidar.voxel_size: expected a list of 3 values"),
    ("lidar", "sparse_shape", [41, 1020, 1024], "lidar.sparse_shape: y and x must be multiples of 8"),
    ("image", "input_size", [320, 810], "image.input_size: must be positive multiples of 32"),
    ("image", "backbone", "vovnet99", "image.backbone: accepted: resnet18, resnet50"),
    ("image", "backbone", "resnet18", "image.neck_in_channels: must be [256, 512] for resnet18"),
    ("head", "num_query", 0, "head.num_query: must be >= 1"),
    ("head", "num_heads", 7, "head.num_heads: must divide head.hidden_dim"),
    ("head", "max_num", 10**6, "head.max_num: must be in [1, num_query * num_classes]"),
])
def test_invalid_values_name_the_key(target_dict, section, key, value, message):
    data = copy.deepcopy(target_dict)
    data[section][key] = value
    with pytest.raises(ConfigError) as err:
        config_from_dict(data)
    assert message in str(err.value)


def test_unknown_section_and_missing_name(target_dict):
    with pytest.raises(ConfigError, match="decoder: unknown key"):
        config_from_dict({**target_dict, "decoder": {}})
    with pytest.raises(ConfigError, match="name: required"):
        config_from_dict({k: v for k, v in target_dict.items() if k != "name"})


def test_unknown_config_name_lists_the_available_ones():
    with pytest.raises(ConfigError, match=f"unknown model config 'nope'.*{TARGET}"):
        load_config("nope")


def test_errors_from_a_file_name_the_file(tmp_path, target_dict):
    target_dict["head"]["depth_num"] = 0
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(target_dict))
    with pytest.raises(ConfigError, match=r"bad\.yaml: head\.depth_num: must be >= 1"):
        load_config(path)
