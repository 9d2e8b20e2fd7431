"""The node's parameters: one table of specs, declared with descriptors, read into a typed dataclass.

Every value is checked at start-up (and on a runtime change of a dynamic one); a bad value raises
:class:`ParameterError` whose message names the parameter and the accepted values.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


class ParameterError(ValueError):
    """A parameter value is invalid; the message names the parameter and what is accepted."""


@dataclass(frozen=True)
class ParamSpec:
    """One declared parameter: default, description and constraints."""

    name: str
    default: Any
    description: str
    #: Inclusive numeric bounds (int or float parameters, applied to every list element).
    bounds: Optional[tuple[float, float]] = None
    choices: Optional[tuple[str, ...]] = None
    #: Dynamic parameters may change while running; all others are read-only.
    dynamic: bool = False


SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("autostart", True,
              "Configure and activate at start-up (ros2 run, launch files); false leaves the node unconfigured for "
              "a lifecycle manager."),
    ParamSpec("model.config", "",
              "Shipped model config name (models/<name>.yaml) or a path to a model config YAML; empty = the "
              "checkpoint's own config (a .safetensors exported by aqr_ros carries it), else "
              "cmt_aqr_voxel0100_r50_800x320. A config that contradicts the checkpoint's is refused."),
    ParamSpec("model.checkpoint", "",
              "Checkpoint (.pth of the original training or .safetensors); empty = random weights, refused unless "
              "model.allow_random_weights is true."),
    ParamSpec("model.allow_random_weights", False,
              "Run with random weights when model.checkpoint is empty (plumbing tests, benchmarks); false: an empty "
              "checkpoint is fatal, so a vehicle never publishes random boxes."),
    ParamSpec("model.device", "auto", "Torch device: auto (cuda if available, else cpu), cpu, cuda or cuda:N."),
    ParamSpec("model.precision", "fp32", "fp16 enables CUDA autocast; ignored on cpu.", choices=("fp32", "fp16")),
    ParamSpec("model.warmup_iters", 1, "Dummy forward passes at start-up.", bounds=(0, 20)),
    ParamSpec("model.threads", 0,
              "torch intra-op CPU threads; 0 = half the CPU cores (at least 1), leaving the rest to the executor "
              "so that an input flood does not oversubscribe the cores.", bounds=(0, 256)),
    ParamSpec("input.lidar_axes", "rep103",
              "Axes of the input cloud's frame: rep103 (x forward, y left) is rotated into the model's nuScenes "
              "LIDAR_TOP axes (x right, y forward); nuscenes_lidar_top is used as is. Boxes go back to it.",
              choices=("rep103", "nuscenes_lidar_top")),
    ParamSpec("score_threshold", 0.3, "Detections below this score are not published.", bounds=(0.0, 1.0),
              dynamic=True),
    ParamSpec("max_detections", 100, "Most detections published per frame (highest scores first).",
              bounds=(1, 1000), dynamic=True),
    ParamSpec("input.compressed_images", False,
              "Subscribe to ~/input/camera{i}/image/compressed (JPEG/PNG) instead of raw images."),
    ParamSpec("input.rectified", False,
              "The images are rectified (image_rect): projected with camera_info P as they are. false: raw images "
              "(image_raw), undistorted with D (plumb_bob, rational_polynomial, equidistant) onto P's pinhole."),
    ParamSpec("input.intensity_scale", 1.0,
              "Factor from the cloud's intensity to the model's 0..255 range (e.g. 255 for 0..1 intensities).",
              bounds=(0.0, 1.0e4)),
    ParamSpec("input.max_points", 1_000_000, "Clouds with more points are rejected.", bounds=(1, 50_000_000)),
    ParamSpec("input.max_sweep_lag", 0.55,
              "Oldest sweep (s before the key cloud) accumulated: nuScenes' 10 sweeps at 20 Hz span 0.5 s, so a "
              "10 Hz LiDAR must not feed the model 0.9 s old points.", bounds=(0.01, 5.0)),
    ParamSpec("sync.max_camera_lidar_delay", 0.1,
              "Largest |image stamp - offset - cloud stamp| (s) for a camera to be fused; else it is masked.",
              bounds=(0.0, 1.0)),
    ParamSpec("sync.camera_offsets", [0.0] * 6, "Per-camera offset (s) subtracted from the image stamp.",
              bounds=(-1.0, 1.0)),
    ParamSpec("sync.wait_timeout", 0.05,
              "Longest wait (s, wall clock) of a cloud for cameras that may still deliver a closer image.",
              bounds=(0.0, 1.0)),
    ParamSpec("sync.queue_size", 2, "Images buffered per camera.", bounds=(1, 10)),
    ParamSpec("sync.allow_missing_cameras", True, "Run with late or missing cameras masked (else skip the frame)."),
    ParamSpec("sync.min_cameras", 0, "Skip frames with fewer fused cameras (0 = LiDAR-only frames run).",
              bounds=(0, 6)),
    ParamSpec("sync.reset_threshold", 1.0,
              "A stamp stepping back more than this (s) resets the node (bag loop); smaller steps are rejected.",
              bounds=(0.0, 3600.0)),
    ParamSpec("output_frame", "",
              "Frame of the published detections and markers (e.g. base_link), looked up in tf at the cloud "
              "stamp; empty = the cloud's own frame."),
    ParamSpec("tf.fixed_frame", "odom",
              "Frame used to motion-compensate past sweeps; empty disables compensation."),
    ParamSpec("tf.time_correct_extrinsics", True,
              "Project each camera through tf.fixed_frame from the cloud stamp to its image stamp, so lidar2img "
              "includes the ego motion in between (as the nuScenes training did); false, or an empty "
              "tf.fixed_frame, uses the static extrinsic."),
    ParamSpec("tf.refresh_period", 0.0, "Re-read camera extrinsics this often (s); 0 = cache forever.",
              bounds=(0.0, 3600.0)),
    ParamSpec("tf.max_wait", 0.05,
              "Longest wait (s, wall clock) of a frame for tf.fixed_frame to reach its newest stamp (the cloud's or "
              "a fused image's) when odometry lags the sensors; 0 = use what tf has.", bounds=(0.0, 1.0)),
    ParamSpec("qos.input_reliability", "best_effort", "Reliability of the input subscriptions.",
              choices=("best_effort", "reliable")),
    ParamSpec("qos.input_depth", 2, "History depth of the input subscriptions.", bounds=(1, 100)),
    ParamSpec("qos.output_reliability", "reliable", "Reliability of the outputs.", choices=("reliable", "best_effort")),
    ParamSpec("qos.output_depth", 1, "History depth of the outputs.", bounds=(1, 100)),
    ParamSpec("output.detected_objects", False,
              "Also publish ~/output/objects (autoware_perception_msgs/DetectedObjects, with the velocity as twist) "
              "for a tracker; needs Autoware's message package."),
    ParamSpec("viz.publish_markers", True, "Publish ~/output/markers.", dynamic=True),
    ParamSpec("viz.marker_lifetime", 0.0, "Marker lifetime (s); 0 = until the next DELETEALL.", bounds=(0.0, 10.0),
              dynamic=True),
    ParamSpec("viz.publish_weight_maps", True, "Publish ~/debug/weight_map/* (only while subscribed).",
              dynamic=True),
    ParamSpec("viz.weight_map_alpha", 0.5, "Opacity of the weight map over the camera image.", bounds=(0.0, 1.0),
              dynamic=True),
    ParamSpec("diag.period", 1.0, "Period (s) of the /diagnostics status.", bounds=(0.05, 60.0)),
    ParamSpec("diag.stale_timeout", 1.0,
              "An input silent for longer (s) is reported: the cloud as ERROR, a camera as WARN.",
              bounds=(0.05, 3600.0), dynamic=True),
    ParamSpec("diag.window", 10.0,
              "Window (s) of the input/output rates, and how long a rejected input keeps the status at WARN.",
              bounds=(1.0, 3600.0), dynamic=True),
    ParamSpec("diag.max_processing_time_ms", 200.0, "Processing time above this is reported as WARN.",
              bounds=(1.0, 1.0e5), dynamic=True),
)

SPEC_BY_NAME: dict[str, ParamSpec] = {s.name: s for s in SPECS}


@dataclass(frozen=True)
class NodeParams:
    """Validated parameter values (times in seconds)."""

    autostart: bool
    model_config: str
    model_checkpoint: str
    allow_random_weights: bool
    model_device: str
    model_fp16: bool
    model_warmup_iters: int
    model_threads: int
    lidar_axes: str
    score_threshold: float
    max_detections: int
    compressed_images: bool
    rectified_images: bool
    intensity_scale: float
    max_points: int
    max_sweep_lag: float
    max_camera_lidar_delay: float
    camera_offsets: tuple[float, ...]
    wait_timeout: float
    queue_size: int
    allow_missing_cameras: bool
    min_cameras: int
    reset_threshold: float
    output_frame: str
    fixed_frame: str
    time_correct_extrinsics: bool
    tf_refresh_period: float
    tf_max_wait: float
    input_reliable: bool
    input_depth: int
    output_reliable: bool
    output_depth: int
    detected_objects: bool
    publish_markers: bool
    marker_lifetime: float
    publish_weight_maps: bool
    weight_map_alpha: float
    diag_period: float
    stale_timeout: float
    diag_window: float
    max_processing_time_ms: float
    #: The validated values by parameter name.
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _check(spec: ParamSpec, value: Any) -> Any:
    """Return ``value`` converted to the spec's type, or raise naming the parameter."""
    d = spec.default
    name = spec.name

    def fail(what: str) -> ParameterError:
        return ParameterError(f"parameter '{name}': {what}, got {value!r}")

    if isinstance(d, bool):
        if not isinstance(value, bool):
            raise fail("expected true or false")
        return value
    if isinstance(d, list):
        if not isinstance(value, (list, tuple)) or any(isinstance(v, bool) or not isinstance(v, (int, float))
                                                       for v in value):
            raise fail("expected a list of numbers")
        items = tuple(float(v) for v in value)
        if spec.bounds and not all(spec.bounds[0] <= v <= spec.bounds[1] for v in items):
            raise fail(f"every value must lie in [{spec.bounds[0]}, {spec.bounds[1]}]")
        return items
    if isinstance(d, (int, float)):
        is_int = isinstance(d, int)
        if isinstance(value, bool) or not isinstance(value, int if is_int else (int, float)):
            raise fail("expected an integer" if is_int else "expected a number")
        if not is_int and not math.isfinite(value):
            raise fail("expected a finite number")
        if spec.bounds and not spec.bounds[0] <= value <= spec.bounds[1]:
            raise fail(f"must lie in [{spec.bounds[0]}, {spec.bounds[1]}]")
        return value if is_int else float(value)
    if not isinstance(value, str):
        raise fail("expected a string")
    if spec.choices and value not in spec.choices:
        raise fail(f"accepted values are {', '.join(spec.choices)}")
    return value


def validate(values: Mapping[str, Any], num_cameras: int = 6) -> NodeParams:
    """Check every parameter (missing ones take their default) and build :class:`NodeParams`."""
    unknown = sorted(set(values) - set(SPEC_BY_NAME))
    if unknown:
        raise ParameterError(f"parameter '{unknown[0]}': unknown parameter")
    v = {s.name: _check(s, values.get(s.name, s.default)) for s in SPECS}
    if not DEVICE_PATTERN.match(v["model.device"]):
        raise ParameterError(f"parameter 'model.device': accepted values are auto, cpu, cuda, cuda:N, "
                             f"got {v['model.device']!r}")
    if len(v["sync.camera_offsets"]) != num_cameras:
        raise ParameterError(f"parameter 'sync.camera_offsets': expected {num_cameras} values (one per camera), "
                             f"got {len(v['sync.camera_offsets'])}")
    if v["sync.min_cameras"] > num_cameras:
        raise ParameterError(f"parameter 'sync.min_cameras': must lie in [0, {num_cameras}], "
                             f"got {v['sync.min_cameras']}")
    return NodeParams(
        autostart=v["autostart"],
        model_config=v["model.config"],
        model_checkpoint=v["model.checkpoint"],
        allow_random_weights=v["model.allow_random_weights"],
        model_device=v["model.device"],
        model_fp16=v["model.precision"] == "fp16",
        model_warmup_iters=v["model.warmup_iters"],
        model_threads=v["model.threads"],
        lidar_axes=v["input.lidar_axes"],
        score_threshold=v["score_threshold"],
        max_detections=v["max_detections"],
        compressed_images=v["input.compressed_images"],
        rectified_images=v["input.rectified"],
        intensity_scale=v["input.intensity_scale"],
        max_sweep_lag=v["input.max_sweep_lag"],
        max_points=v["input.max_points"],
        max_camera_lidar_delay=v["sync.max_camera_lidar_delay"],
        camera_offsets=v["sync.camera_offsets"],
        wait_timeout=v["sync.wait_timeout"],
        queue_size=v["sync.queue_size"],
        allow_missing_cameras=v["sync.allow_missing_cameras"],
        min_cameras=v["sync.min_cameras"],
        reset_threshold=v["sync.reset_threshold"],
        output_frame=v["output_frame"],
        fixed_frame=v["tf.fixed_frame"],
        time_correct_extrinsics=v["tf.time_correct_extrinsics"],
        tf_refresh_period=v["tf.refresh_period"],
        tf_max_wait=v["tf.max_wait"],
        input_reliable=v["qos.input_reliability"] == "reliable",
        input_depth=v["qos.input_depth"],
        output_reliable=v["qos.output_reliability"] == "reliable",
        output_depth=v["qos.output_depth"],
        detected_objects=v["output.detected_objects"],
        publish_markers=v["viz.publish_markers"],
        marker_lifetime=v["viz.marker_lifetime"],
        publish_weight_maps=v["viz.publish_weight_maps"],
        weight_map_alpha=v["viz.weight_map_alpha"],
        diag_period=v["diag.period"],
        stale_timeout=v["diag.stale_timeout"],
        diag_window=v["diag.window"],
        max_processing_time_ms=v["diag.max_processing_time_ms"],
        raw=v,
    )


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of ``spec``: description, accepted values, range, read-only flag."""
    desc = ParameterDescriptor(name=spec.name, description=spec.description, read_only=not spec.dynamic)
    if spec.choices:
        desc.additional_constraints = f"one of: {', '.join(spec.choices)}"
    if spec.bounds is not None and not isinstance(spec.default, (bool, list)):
        lo, hi = spec.bounds
        if isinstance(spec.default, int):
            desc.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        else:
            desc.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
    elif spec.bounds is not None and isinstance(spec.default, list):
        desc.additional_constraints = f"each value in [{spec.bounds[0]}, {spec.bounds[1]}]"
    return desc


def declare_all(node: Node) -> dict[str, Any]:
    """Declare every parameter on ``node`` (``--params-file`` overrides apply) and return the raw values.

    Pass the result to :func:`validate` once the model's camera count is known.
    """
    values: dict[str, Any] = {}
    for spec in SPECS:
        try:
            param = node.declare_parameter(spec.name, spec.default, descriptor(spec))
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            raise ParameterError(f"parameter '{spec.name}': {exc}") from None
        values[spec.name] = param.value
    return values


def dynamic_update(current: NodeParams, changes: Sequence[tuple[str, Any]], num_cameras: int) -> NodeParams:
    """``current`` with dynamic parameter changes applied and validated; read-only names raise."""
    values = dict(current.raw)
    for name, value in changes:
        spec = SPEC_BY_NAME.get(name)
        if spec is None or not spec.dynamic:
            raise ParameterError(f"parameter '{name}': read-only while running")
        values[name] = value
    return validate(values, num_cameras)
