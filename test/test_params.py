"""Parameter specs, validation messages and the shipped config/aqr.yaml."""

from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterDescriptor

from aqr_ros.ros.params import SPEC_BY_NAME, SPECS, ParameterError, descriptor, dynamic_update, validate

REPO = Path(__file__).resolve().parents[1]


def _flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def shipped_values(name="aqr.yaml"):
    data = yaml.safe_load((REPO / "config" / name).read_text())
    return _flatten(data["/**"]["ros__parameters"])


def test_nuscenes_preset_differs_in_the_axes_fixed_frame_and_image_transport_only():
    default, nuscenes = shipped_values(), shipped_values("nuscenes.yaml")
    assert {k for k in default if default[k] != nuscenes[k]} == {"input.lidar_axes", "tf.fixed_frame",
                                                                  "input.compressed_images"}
    params = validate(nuscenes)
    assert params.lidar_axes == "nuscenes_lidar_top" and params.fixed_frame == "map" and params.compressed_images


def test_shipped_yaml_sets_every_declared_parameter_with_its_default():
    values = shipped_values()
    assert set(values) == set(SPEC_BY_NAME)
    for spec in SPECS:
        assert values[spec.name] == spec.default, spec.name
    params = validate(values)
    assert params.model_device == "auto" and params.camera_offsets == (0.0,) * 6
    assert params.input_reliable is False and params.output_reliable is True
    assert params.lidar_axes == "rep103"


def test_defaults_are_valid_and_typed():
    params = validate({})
    assert params.score_threshold == pytest.approx(0.3)
    assert isinstance(params.max_detections, int)
    assert params.model_fp16 is False


@pytest.mark.parametrize("name, value, fragment", [
    ("score_threshold", 1.5, "[0.0, 1.0]"),
    ("score_threshold", "high", "expected a number"),
    ("score_threshold", float("nan"), "finite"),
    ("max_detections", 0, "[1, 1000]"),
    ("max_detections", 2.5, "expected an integer"),
    ("model.device", "tpu", "auto, cpu, cuda, cuda:N"),
    ("model.precision", "int8", "fp32, fp16"),
    ("input.lidar_axes", "enu", "rep103, nuscenes_lidar_top"),
    ("sync.camera_offsets", [0.0] * 5, "expected 6 values"),
    ("sync.camera_offsets", [0.0] * 5 + [2.0], "[-1.0, 1.0]"),
    ("sync.min_cameras", 6, None),
    ("viz.publish_markers", 1, "true or false"),
    ("qos.input_reliability", "sometimes", "best_effort, reliable"),
])
def test_invalid_values_name_the_parameter(name, value, fragment):
    if fragment is None:  # a valid edge value
        validate({name: value})
        return
    with pytest.raises(ParameterError) as err:
        validate({name: value})
    assert f"'{name}'" in str(err.value) and fragment in str(err.value)


def test_min_cameras_is_bounded_by_the_model_camera_count():
    with pytest.raises(ParameterError, match="'sync.min_cameras'.*\\[0, 4\\]"):
        validate({"sync.min_cameras": 5, "sync.camera_offsets": [0.0] * 4}, num_cameras=4)


def test_unknown_parameter_is_rejected():
    with pytest.raises(ParameterError, match="'sync.max_delay'.*unknown"):
        validate({"sync.max_delay": 0.1})


def test_descriptors_carry_ranges_choices_and_read_only():
    d = descriptor(SPEC_BY_NAME["score_threshold"])
    assert isinstance(d, ParameterDescriptor) and not d.read_only
    assert d.floating_point_range[0].from_value == 0.0 and d.floating_point_range[0].to_value == 1.0
    d = descriptor(SPEC_BY_NAME["max_detections"])
    assert d.integer_range[0].to_value == 1000
    d = descriptor(SPEC_BY_NAME["model.device"])
    assert d.read_only and d.description
    assert "fp16" in descriptor(SPEC_BY_NAME["model.precision"]).additional_constraints
    assert all(descriptor(s).description for s in SPECS)


def test_dynamic_update_changes_only_dynamic_parameters():
    base = validate({})
    updated = dynamic_update(base, [("score_threshold", 0.5), ("viz.publish_markers", False)], num_cameras=6)
    assert updated.score_threshold == 0.5 and updated.publish_markers is False
    assert updated.model_config == base.model_config
    with pytest.raises(ParameterError, match="'model.device'.*read-only"):
        dynamic_update(base, [("model.device", "cpu")], num_cameras=6)
    with pytest.raises(ParameterError, match="'score_threshold'"):
        dynamic_update(base, [("score_threshold", -1.0)], num_cameras=6)
