"""``aqr_node``: the AQR-CMT LiDAR + 6-camera 3D detector as a ROS 2 managed (lifecycle) node.

Callbacks only store messages in a LiDAR-triggered synchronizer; one worker thread takes the newest
decided frame, converts it, calibrates every camera from camera_info and tf, runs the model and
publishes detections, markers, the per-query AQR weights and weight-map images (all three only while subscribed),
a frame report (stage times, camera states) and diagnostics, all stamped with the input cloud's stamp.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Optional, Sequence

import numpy as np
import rclpy
import torch
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from std_msgs.msg import Float64, Header
from vision_msgs.msg import Detection3DArray, LabelInfo
from visualization_msgs.msg import MarkerArray

from aqr_ros.model import ConfigError, ModelConfig, load_config
from aqr_ros.model.timing import StageTimer
from aqr_ros.pipeline.boxes import transform_boxes, transform_points
from aqr_ros.pipeline.calibration import points_from_model, validate_intrinsics
from aqr_ros.pipeline.frame import CameraCalibration, FrameAssembler, FrameDetections
from aqr_ros.pipeline.undistort import Rectification, RectificationCache
from aqr_ros.ros.diagnostics import FrameReport, FusionDiagnostics, frame_report
from aqr_ros.ros.from_msg import (ConversionError, camera_info_lens, compressed_to_bgr, image_to_bgr,
                                  pointcloud2_to_array)
from aqr_ros.ros.markers import build_detection_array, build_label_info, build_markers
from aqr_ros.ros.params import (SPEC_BY_NAME, SPECS, NodeParams, ParameterError, declare_all, dynamic_update,
                                validate)
from aqr_ros.ros.sync import FrameBundle, LidarTriggeredSync, Push, SyncConfig
from aqr_ros.ros.tf_source import TfSource, TfUnavailableError
from aqr_ros.ros.to_msg import image_from_array, nanoseconds_from_stamp, query_weights_cloud

if TYPE_CHECKING:
    from aqr_ros.model import AqrCmt, Detections

NODE_NAME = "aqr_node"
#: Seconds between two warnings about the same input topic.
WARN_PERIOD_S = 2.0
#: Seconds between two warnings about the same silent input topic.
SILENT_WARN_PERIOD_S = 10.0
#: Points farther than this (m) from the sensor are treated as corrupt values and dropped.
MAX_POINT_RANGE_M = 1000.0
#: Longest wait (s) for the worker's frame to stop at its next model stage when stopping (the full model's image
#: backbone, its longest stage, takes 2-5 s on a CPU); an abandoned thread still in torch aborts the process at exit.
WORKER_STOP_S = 30.0
#: Period (s) of the check for a worker that stopped for good.
FAILURE_CHECK_S = 0.2
#: Consecutive CUDA out-of-memory frames that stop processing.
MAX_OOM_FRAMES = 3
#: Period (s) at which a frame polls tf for a lagging pose (tf.max_wait).
POSE_POLL_S = 0.002
#: Seed of the random weights an empty checkpoint gives (model.allow_random_weights).
RANDOM_WEIGHTS_SEED = 0
#: Executor threads: callbacks only store messages; the model has its own thread budget (model.threads).
EXECUTOR_THREADS = 2


class StartupError(RuntimeError):
    """The node cannot start; the message names the parameter and the value at fault."""


@dataclass(frozen=True)
class InputTopics:
    """The resolved (remapped) names of the node's inputs: what logs and diagnostics name, what it subscribes to."""

    cloud: str
    images: tuple[str, ...]
    infos: tuple[str, ...]

    @classmethod
    def of(cls, node: "rclpy.node.Node", views: int, compressed: bool) -> "InputTopics":
        """The ``~/input/...`` names of ``node`` for ``views`` cameras, expanded and remapped."""
        suffix = "image/compressed" if compressed else "image"
        return cls(node.resolve_topic_name("~/input/pointcloud"),
                   tuple(node.resolve_topic_name(f"~/input/camera{i}/{suffix}") for i in range(views)),
                   tuple(node.resolve_topic_name(f"~/input/camera{i}/camera_info") for i in range(views)))


@dataclass(frozen=True)
class Intrinsics:
    """A validated camera_info: the pinhole K the model projects with, image size, optical frame id, and how the
    camera's images reach that pinhole (undistortion maps, or as they come)."""

    K: np.ndarray
    size: tuple[int, int]
    frame_id: str
    rectification: Rectification


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; a CUDA device that is absent raises StartupError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise StartupError(f"parameter 'model.device': {name!r} requested but CUDA is not available to this torch (a "
                           "CUDA build: scripts/setup.sh --cuda; or use auto or cpu)")
    return device


def model_config_of(config_param: str, checkpoint: str) -> tuple[ModelConfig, str]:
    """(the model config to build, where it came from): the checkpoint's own when it carries one, checked
    against ``model.config`` if that is given; else ``model.config``, else the default config."""
    from aqr_ros.model.checkpoint import CheckpointError, bind_config, read_carried_config
    from aqr_ros.model.detector import DEFAULT_CONFIG

    try:
        chosen = load_config(config_param) if config_param else None
    except ConfigError as exc:
        raise StartupError(f"parameter 'model.config': {exc}") from None
    try:
        carried = read_carried_config(checkpoint) if checkpoint else None
    except CheckpointError as exc:
        raise StartupError(f"parameter 'model.checkpoint': {exc}") from None
    try:
        config = bind_config(carried, chosen, checkpoint, DEFAULT_CONFIG)
    except CheckpointError as exc:
        raise StartupError(f"parameter 'model.config': {exc}") from None
    source = "carried by the checkpoint" if carried is not None else (
        "parameter model.config" if chosen is not None else "the default")
    return config, source


def checkpoint_identity(checkpoint: str) -> str:
    """How logs and diagnostics name the weights: the file and the start of its SHA-256, or RANDOM."""
    if not checkpoint:
        return f"RANDOM weights (seed {RANDOM_WEIGHTS_SEED})"
    digest = hashlib.sha256()
    with open(checkpoint, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"{os.path.basename(checkpoint)} (sha256 {digest.hexdigest()[:12]})"


def load_model(config: ModelConfig, checkpoint: str, device: torch.device) -> "AqrCmt":
    """Build the model and load ``checkpoint`` ('' = random weights); errors name ``model.checkpoint``."""
    from aqr_ros.model import AqrCmt  # the model tree is imported only when a node is built

    if checkpoint:
        if os.path.isdir(checkpoint):
            raise StartupError(f"parameter 'model.checkpoint': {checkpoint!r} is a directory, not a checkpoint file")
        if not os.path.isfile(checkpoint):
            raise StartupError(f"parameter 'model.checkpoint': no such file {checkpoint!r}")
        if not os.access(checkpoint, os.R_OK):
            raise StartupError(f"parameter 'model.checkpoint': cannot read {checkpoint!r} (permission denied)")
    try:
        with torch.random.fork_rng(devices=[]):  # random weights are the same in every run, so runs compare
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            return AqrCmt.from_checkpoint(checkpoint or None, config=config, device=device)
    except Exception as exc:  # any unreadable/mismatched checkpoint must end start-up with a clear message
        raise StartupError(f"parameter 'model.checkpoint': cannot load {checkpoint!r}: {exc}") from exc


def query_points(reference_points: np.ndarray, point_cloud_range: Sequence[float], lidar_axes: str) -> np.ndarray:
    """[Q, 3] float64 reference point of every decoder query in metres, in the input cloud's frame.

    ``reference_points`` are the head's learned [Q, 3] points, normalised to ``point_cloud_range`` in the model
    frame; they are rotated out of the model axes like the box centres (``to_ros_boxes``), so each query sits
    under the boxes it decodes.
    """
    lo = np.asarray(point_cloud_range[:3], dtype=np.float64)
    hi = np.asarray(point_cloud_range[3:], dtype=np.float64)
    return points_from_model(np.asarray(reference_points, dtype=np.float64).reshape(-1, 3) * (hi - lo) + lo,
                             lidar_axes)


class AqrNode(LifecycleNode):
    """AQR-CMT detector as a managed node: LiDAR-triggered sync, tf/camera_info calibration, one inference worker.

    configure validates the parameters, loads and warms up the model and creates the publishers; activate
    creates the subscriptions and starts the worker; deactivate stops both; cleanup frees the model (and the
    GPU memory); a failed transition goes through error processing back to unconfigured. With ``autostart``
    :func:`main` runs configure and activate itself.
    """

    def __init__(self, **kwargs: Any) -> None:
        """Declare the parameters; everything else happens in the lifecycle transitions."""
        self._stop = threading.Event()  # set before Node's own set-up, which may fail and destroy the node
        self._worker: Optional[threading.Thread] = None
        super().__init__(NODE_NAME, **kwargs)
        self._raw = declare_all(self)
        self._warn_unknown_parameters()
        self.params: Optional[NodeParams] = None
        self.model: Optional["AqrCmt"] = None
        self.device = torch.device("cpu")
        self.tf: Optional[TfSource] = None
        #: Publishers configure made (all lifecycle ones); cleanup destroys them.
        self._publishers_made: list[LifecyclePublisher] = []
        #: Why the last configure failed (for the fatal line of an autostarted node).
        self.configure_error = ""
        #: Why the worker stopped for good (unrecoverable error); handled once by :meth:`_check_failure`.
        self._failure = ""
        self._failure_handled = False
        self._input_subs: list[Any] = []
        self._warn_lock = threading.Lock()
        self._last_warn: dict[str, tuple[float, str]] = {}
        self._reported_errors: set[str] = set()
        self._consecutive_oom = 0
        #: Exit code of :func:`main` after the executor stops.
        self.exit_code = 0
        self.add_on_set_parameters_callback(self._on_set_parameters)
        # Diagnostics live as long as the node, so a supervisor also sees an inactive or failed one.
        self.diag: Optional[FusionDiagnostics] = None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", QoSProfile(depth=10))
        self.create_timer(self._raw["diag.period"], self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.create_timer(FAILURE_CHECK_S, self._check_failure, callback_group=MutuallyExclusiveCallbackGroup(),
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def _warn_unknown_parameters(self) -> None:
        """Warn about each given parameter (params file, -p) that this node does not have: it would be ignored."""
        for name in sorted(self._parameter_overrides):
            if self.has_parameter(name) or name.startswith("qos_overrides."):
                continue
            close = difflib.get_close_matches(name, SPEC_BY_NAME, n=1)
            self.get_logger().warning(f"parameter '{name}' is not a parameter of this node and is ignored"
                                      + (f" (did you mean '{close[0]}'?)" if close else ""))

    # ------------------------------------------------------------ transitions

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load and warm up the model, create the publishers and the tf listener."""
        try:
            self._configure()
        except (StartupError, ParameterError) as exc:
            self.configure_error = str(exc)
            self._release()
            if not self._raw["autostart"]:  # an autostarted node logs it as FATAL in main
                self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.diag.set_state("inactive", time.monotonic())
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the inputs and start the worker; the lifecycle publishers go live."""
        views = self.model_config.image.num_views
        self._make_subscriptions(views)
        self.diag.watch_inputs(self.topics.cloud, list(self.topics.images))
        self.diag.set_state("active", time.monotonic())
        self.sync.reset()
        # Sweeps from before a deactivation are stale; tf is not: the listener kept receiving while inactive, and the
        # poses already buffered are what the first frames need.
        self.assembler.reset()
        self._failure, self._failure_handled = "", False
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name="aqr_inference", daemon=True)
        self._worker.start()
        result = super().on_activate(state)
        self._publish_label_info()
        self.get_logger().info(f"active: listening on {self.topics.cloud} and {views} cameras")
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the worker and the subscriptions; a worker that failed for good makes this an error transition."""
        self._stop_processing()
        self.diag.set_state("inactive", time.monotonic())
        if self._failure:
            self.get_logger().error(f"deactivated after an unrecoverable error: {self._failure}")
            return TransitionCallbackReturn.ERROR
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Free the model (and the GPU memory it held), the publishers and the tf listener."""
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop everything from any state."""
        self._stop_processing()
        self._release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Error processing: stop and release everything, back to unconfigured (a manager may configure again)."""
        self._stop_processing()
        self._release()
        self.get_logger().error("error processing: node released, now unconfigured")
        return TransitionCallbackReturn.SUCCESS

    # ------------------------------------------------------------------ set-up

    def _configure(self) -> None:
        raw = {name: self.get_parameter(name).value for name in self._raw}  # values set since start-up count
        self.model_config, config_source = model_config_of(raw["model.config"], raw["model.checkpoint"])
        views = self.model_config.image.num_views
        self.params = p = validate(raw, num_cameras=views)
        if not p.model_checkpoint and not p.allow_random_weights:
            raise StartupError("parameter 'model.checkpoint': empty, so the model would run on RANDOM weights and "
                               "publish meaningless boxes; give a checkpoint (models/README.md), or set "
                               "model.allow_random_weights true for plumbing tests and benchmarks")
        self.device = resolve_device(p.model_device)
        threads = apply_thread_budget(p.model_threads)
        self.get_logger().info(f"loading model {self.model_config.name} ({config_source}) from "
                               f"{p.model_checkpoint or 'RANDOM weights'} onto {self.device} ...")
        self.model = load_model(self.model_config, p.model_checkpoint, self.device)
        self.weights = checkpoint_identity(p.model_checkpoint)
        if not p.model_checkpoint:
            self.get_logger().warning("model.checkpoint is empty: RANDOM weights (model.allow_random_weights), "
                                      "detections are meaningless")
        self.assembler = FrameAssembler(self.model_config, p.lidar_axes, self.device, p.intensity_scale,
                                        p.max_sweep_lag)
        #: Reference point of every query in the cloud's frame (the learned points are fixed after loading).
        self.query_points = query_points(self.model.pts_bbox_head.reference_points.weight.detach().cpu().numpy(),
                                         self.model_config.lidar.point_cloud_range, p.lidar_axes)
        self._warm_up(p.model_warmup_iters)

        self.sync: LidarTriggeredSync[PointCloud2, Any] = LidarTriggeredSync(SyncConfig(
            num_cameras=views,
            max_delay_ns=int(p.max_camera_lidar_delay * 1e9),
            offsets_ns=tuple(int(o * 1e9) for o in p.camera_offsets),
            queue_size=p.queue_size,
            wait_timeout_ns=int(p.wait_timeout * 1e9),
            min_cameras=p.min_cameras,
            allow_missing=p.allow_missing_cameras,
            reset_threshold_ns=int(p.reset_threshold * 1e9),
            keep_dropped=self.model_config.lidar.num_sweeps,
        ))
        try:
            self.tf = TfSource(self, p.tf_refresh_period)
        except TfUnavailableError as exc:
            raise StartupError(str(exc)) from None
        self.diag = FusionDiagnostics(f"{self.get_name()}: fusion", self.get_fully_qualified_name(),
                                      self.model_config.image.camera_names, p.max_processing_time_ms,
                                      p.stale_timeout, p.diag_window,
                                      model=f"{self.model_config.name}, weights {self.weights}")
        self._intrinsics: list[Optional[Intrinsics]] = [None] * views
        self._intrinsics_lock = threading.Lock()
        self._rectifications = RectificationCache(p.rectified_images)
        self._reset_pending = threading.Event()
        self.topics = InputTopics.of(self, views, p.compressed_images)
        self._make_publishers(views)
        precision = "fp16" if p.model_fp16 and self.device.type == "cuda" else "fp32"
        if p.model_fp16 and precision == "fp32":
            self.get_logger().warning(f"model.precision fp16 needs CUDA: running fp32 on {self.device}")
        self.get_logger().info(
            f"ready: model {self.model_config.name} ({config_source}), weights {self.weights}, on {self.device} "
            f"({precision}, {threads} CPU threads), {views} cameras; "
            + ("camera-map post-processing on (the fix)" if self.model_config.aqr.postprocess_perspective else
               "camera-map post-processing OFF: the original training's behaviour, for checkpoints trained with it"))

    def _release(self) -> None:
        """Drop what configure created; the model's GPU memory goes back to the device. The diagnostics stay."""
        for pub in self._publishers_made:
            self.destroy_lifecycle_publisher(pub)
        self._publishers_made = []
        if self.diag is not None:
            self.diag.set_state("unconfigured", time.monotonic())
        if self.tf is not None:
            self.tf.close()
            self.tf = None
        on_gpu = self.model is not None and self.device.type == "cuda"
        self.model = None
        self.params = None
        if on_gpu:
            torch.cuda.empty_cache()

    def _warm_up(self, iterations: int) -> None:
        cfg = self.model_config
        points = torch.zeros((1, cfg.lidar.num_point_features))
        images = torch.zeros((cfg.image.num_views, 3, *cfg.image.input_size))
        lidar2img = torch.eye(4).repeat(cfg.image.num_views, 1, 1)
        for _ in range(iterations):
            self.model.infer(points.to(self.device), images.to(self.device), lidar2img.to(self.device),
                             fp16=self.params.model_fp16)

    def _make_publishers(self, views: int) -> None:
        p = self.params
        out_qos = QoSProfile(depth=p.output_depth, history=HistoryPolicy.KEEP_LAST,
                             reliability=ReliabilityPolicy.RELIABLE if p.output_reliable
                             else ReliabilityPolicy.BEST_EFFORT)

        def managed(msg_type: type, topic: str, qos: QoSProfile = out_qos) -> LifecyclePublisher:
            return self._output_publisher(msg_type, topic, qos)

        self.detections_pub = managed(Detection3DArray, "~/output/detections")
        self.markers_pub = managed(MarkerArray, "~/output/markers")
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.label_info_pub = managed(LabelInfo, "~/output/label_info", latched)
        self.bev_pub = managed(Image, "~/debug/weight_map/bev")
        self.camera_map_pubs = [managed(Image, f"~/debug/weight_map/camera{i}") for i in range(views)]
        self.query_weights_pub = managed(PointCloud2, "~/debug/aqr_weights")
        self.processing_time_pub = managed(Float64, "~/debug/processing_time_ms")
        self.latency_pub = managed(Float64, "~/debug/pipeline_latency_ms")
        self.frame_report_pub = managed(DiagnosticArray, "~/debug/frame_report")
        self.objects_pub = None
        if p.detected_objects:
            try:  # Autoware's messages are needed only for this output
                from autoware_perception_msgs.msg import DetectedObjects

                from aqr_ros.ros.autoware_objects import build_detected_objects
            except ImportError:
                raise StartupError("parameter 'output.detected_objects': autoware_perception_msgs is not installed "
                                   "(install Autoware's message package, or set it false)") from None
            self.objects_pub = managed(DetectedObjects, "~/output/objects")
            self._build_objects = build_detected_objects

    def _output_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> LifecyclePublisher:
        """One output: a lifecycle publisher that cleanup destroys (an offline run records the outputs instead)."""
        pub = self.create_lifecycle_publisher(msg_type, topic, qos)
        self._publishers_made.append(pub)
        return pub

    def _publish_label_info(self) -> None:
        """Latched class map with the current score threshold."""
        self.label_info_pub.publish(build_label_info(self.model_config.head.class_names, self.params.score_threshold,
                                                     Header(stamp=self.get_clock().now().to_msg())))

    def _make_subscriptions(self, views: int) -> None:
        """One mutually exclusive callback group per input: a topic's messages stay in order, topics run in parallel."""
        p = self.params
        in_qos = QoSProfile(depth=p.input_depth, history=HistoryPolicy.KEEP_LAST,
                            reliability=ReliabilityPolicy.RELIABLE if p.input_reliable
                            else ReliabilityPolicy.BEST_EFFORT)
        topics = self.topics
        image_type = CompressedImage if p.compressed_images else Image
        cloud_sub = self.create_subscription(PointCloud2, topics.cloud, self._on_cloud, in_qos,
                                             callback_group=MutuallyExclusiveCallbackGroup())
        image_subs = [self.create_subscription(image_type, topics.images[i], lambda msg, i=i: self._on_image(i, msg),
                                               in_qos, callback_group=MutuallyExclusiveCallbackGroup())
                      for i in range(views)]
        info_subs = [self.create_subscription(CameraInfo, topics.infos[i],
                                              lambda msg, i=i: self._on_camera_info(i, msg), in_qos,
                                              callback_group=MutuallyExclusiveCallbackGroup())
                     for i in range(views)]
        self._input_subs = [cloud_sub, *image_subs, *info_subs]

    def _stop_processing(self) -> None:
        """Stop the worker, then the input subscriptions (deactivate, shutdown, error processing)."""
        self.stop_worker()
        for sub in self._input_subs:
            self.destroy_subscription(sub)
        self._input_subs = []

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        current = self.params
        if current is None:  # not configured: the values are validated by configure
            return SetParametersResult(successful=True)
        try:
            updated = dynamic_update(current, [(x.name, x.value) for x in params], self.model_config.image.num_views)
        except ParameterError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        self.params = updated
        self.diag.set_limits(updated.max_processing_time_ms, updated.stale_timeout, updated.diag_window)
        if any(x.name == "score_threshold" for x in params) and self._input_subs:
            self._publish_label_info()
        return SetParametersResult(successful=True)

    # --------------------------------------------------------------- callbacks

    def _due(self, key: str, reason: str, period_s: float = WARN_PERIOD_S) -> bool:
        """Whether a warning about ``key`` is due: ``period_s`` passed or the reason (digits aside) changed."""
        now = time.monotonic()
        kind = re.sub(r"\d+", "#", reason)
        with self._warn_lock:
            last_time, last_kind = self._last_warn.get(key, (-period_s, ""))
            if kind == last_kind and now - last_time < period_s:
                return False
            self._last_warn[key] = (now, kind)
        return True

    def _reject(self, topic: str, reason: str) -> None:
        """Count a rejected input and warn (throttled per topic unless the reason changes)."""
        count = self.diag.reject(topic, reason, time.monotonic())
        if self._due(topic, reason):
            self.get_logger().warning(f"rejected input on {topic}: {reason} ({count} rejected so far on this topic)")

    def _receive_clock_ns(self) -> int:
        """The clock a cloud's wait for its cameras runs on: monotonic time (an offline run's is the recording's)."""
        return time.monotonic_ns()

    def _on_cloud(self, msg: PointCloud2) -> None:
        topic = self.topics.cloud
        self.diag.received(topic, time.monotonic())
        stamp = nanoseconds_from_stamp(msg.header.stamp)
        if stamp < 0:
            self._reject(topic, f"negative stamp {msg.header.stamp.sec} s")
            return
        result = self.sync.add_cloud(stamp, msg, self._receive_clock_ns())
        if result is Push.OUT_OF_ORDER:
            self._reject(topic, "stamp not newer than the previous cloud (out of order)")
        elif result is Push.RESET:
            self._reset_pending.set()
            self.diag.count_reset()
            if self._due(f"{topic} reset", "time jumped back"):
                self.get_logger().warning(f"time jumped back on {topic} (bag loop, or two sources with skewed "
                                          "clocks?): resetting buffers, sweeps and tf cache")

    def _on_image(self, camera: int, msg: Any) -> None:
        topic = self.topics.images[camera]
        self.diag.received(topic, time.monotonic())
        stamp = nanoseconds_from_stamp(msg.header.stamp)
        if stamp < 0:
            self._reject(topic, f"negative stamp {msg.header.stamp.sec} s")
        elif self.sync.add_image(camera, stamp, msg) is Push.OUT_OF_ORDER:
            self._reject(topic, "stamp not newer than the previous image (out of order)")

    def _on_camera_info(self, camera: int, msg: CameraInfo) -> None:
        topic = self.topics.infos[camera]
        try:
            lens = camera_info_lens(msg, self.params.rectified_images)
        except ConversionError as exc:
            self._reject(topic, str(exc))
            return
        K, size = lens.K, lens.size
        reason = f"image size {size[1]}x{size[0]} is not positive" if size[0] <= 0 or size[1] <= 0 else None
        reason = reason or validate_intrinsics(K, size)
        if reason is None and not msg.header.frame_id:
            reason = "empty frame_id (the optical frame is needed for tf)"
        if reason is not None:
            self._reject(topic, reason)
            return
        # The same object while K, D, P and size are unchanged up to driver float noise; maps are built on a change.
        rect = self._rectifications.get(camera, lens)
        new = Intrinsics(rect.K, size, msg.header.frame_id, rect)
        with self._intrinsics_lock:
            old = self._intrinsics[camera]
            if old is not None and old.rectification is rect and old.frame_id == new.frame_id:
                return
            self._intrinsics[camera] = new
        if old is not None:
            self.get_logger().info(f"camera{camera}: camera_info changed on {topic}; intrinsics re-read")
        if rect.ignored is not None:  # once per calibration: unchanged ones returned above
            self.get_logger().warning(f"camera{camera} ({topic}): {rect.ignored}")

    # ------------------------------------------------------------------ worker

    def _work(self) -> None:
        while not self._stop.is_set():
            bundle = self.sync.wait_frame(self._receive_clock_ns, timeout_s=0.1)
            if bundle is None or self._stop.is_set():
                continue
            try:
                self._process(bundle, self.params)
                self._consecutive_oom = 0
            except Exception as exc:  # the worker must survive anything a frame can do, or say why it cannot
                if self._stop.is_set() or not self.context.ok():
                    return  # shutting down: publishing on a closed context is expected to fail
                fatal = self._on_worker_error(exc, bundle)
                if fatal:
                    self.diag.set_fatal(fatal)
                    self.get_logger().fatal(f"processing stopped: {fatal}")
                    self._failure = fatal
                    return

    def _on_worker_error(self, exc: Exception, bundle: FrameBundle) -> str:
        """Count and log an unexpected frame error (the traceback once per kind); the reason when it is fatal."""
        summary = f"{type(exc).__name__}: {exc}"
        count = self.diag.worker_error(summary)
        self.diag.frame_skipped(f"error while processing: {summary}")
        kind = f"{type(exc).__name__}: {re.sub(r'[0-9.]+', '#', str(exc))}"
        if kind not in self._reported_errors:
            self._reported_errors.add(kind)
            self.get_logger().error(f"frame {bundle.stamp_ns * 1e-9:.3f} failed ({count} errors so far):\n"
                                    + "".join(traceback.format_exception(exc)))
        elif self._due("worker", summary):
            self.get_logger().error(f"frame {bundle.stamp_ns * 1e-9:.3f} failed again ({count} errors so far): "
                                    f"{summary}")
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            self._consecutive_oom += 1
            torch.cuda.empty_cache()
        return unrecoverable(exc, self._consecutive_oom)

    def _calibration(self, camera: int, header: Header, image_header: Optional[Header],
                     p: NodeParams) -> tuple[Optional[CameraCalibration], Optional[Intrinsics], str]:
        """Camera ``camera``'s calibration for a cloud with ``header`` and its image's header (None: no image, the
        static extrinsic), the camera_info snapshot it used, and "ok" or what is missing."""
        with self._intrinsics_lock:
            intr = self._intrinsics[camera]
        if intr is None:
            return None, None, "no valid camera_info yet"
        self.diag.set_lens(camera, intr.rectification.description)
        if image_header is None:
            ext = self.tf.extrinsic(intr.frame_id, header.frame_id)
        else:
            ext = self.tf.camera_extrinsic(intr.frame_id, header.frame_id, Time.from_msg(image_header.stamp),
                                           Time.from_msg(header.stamp),
                                           p.fixed_frame if p.time_correct_extrinsics else "")
            self.diag.set_extrinsic(camera, ext.source)
        if ext.matrix is None:
            return None, intr, ext.reason
        return CameraCalibration(K=intr.K, size=intr.size, T_cam_lidar=ext.matrix), intr, "ok"

    def _decode_images(self, bundle: FrameBundle, p: NodeParams) -> tuple[list[Optional[np.ndarray]], list[str]]:
        images: list[Optional[np.ndarray]] = []
        states: list[str] = []
        decode = compressed_to_bgr if p.compressed_images else image_to_bgr
        for i, msg in enumerate(bundle.images):
            state = bundle.status[i].value
            image = None
            if msg is not None:
                try:
                    image = decode(msg)
                except ConversionError as exc:
                    self._reject(self.topics.images[i], str(exc))
                    state = f"rejected: {exc}"
            images.append(image)
            states.append(state)
        return images, states

    def _decode_cloud(self, msg: PointCloud2, p: NodeParams) -> Optional[np.ndarray]:
        topic = self.topics.cloud
        num = msg.width * msg.height
        if num > p.max_points:
            self._reject(topic, f"{num} points exceed input.max_points {p.max_points}")
            return None
        try:
            cloud = pointcloud2_to_array(msg, ("x", "y", "z", "intensity"))
        except ConversionError as exc:
            self._reject(topic, str(exc))
            return None
        points = cloud.points
        in_range = np.abs(points[:, :3]).max(axis=1, initial=0.0) <= MAX_POINT_RANGE_M
        if not in_range.all():
            points = points[in_range]
        dropped = cloud.num_nonfinite + int(len(in_range) - np.count_nonzero(in_range))
        if len(points) == 0:
            self._reject(topic, "cloud has no finite points (empty or all NaN/inf); running on cameras only")
        elif dropped:
            self._reject(topic, f"dropped {dropped} of {cloud.num_input} points (NaN/inf or beyond "
                                f"{MAX_POINT_RANGE_M:.0f} m)")
        return points

    def _calibrate(self, images: list[Optional[np.ndarray]], bundle: FrameBundle, header: Header,
                   p: NodeParams) -> tuple[list[Optional[CameraCalibration]], dict[int, str]]:
        """Per camera calibration (or None), and camera → what is missing for cameras that delivered an image.

        Images are undistorted in place onto the pinhole of their calibration (same camera_info snapshot).
        """
        calibs: list[Optional[CameraCalibration]] = []
        missing: dict[int, str] = {}
        for i, image in enumerate(images):
            image_header = bundle.images[i].header if image is not None else None
            calib, intr, state = self._calibration(i, header, image_header, p)
            self.diag.set_calibration(i, state)
            calibs.append(calib)
            if image is not None and calib is None:
                missing[i] = state
            elif image is not None:
                images[i] = intr.rectification.apply(image)
        return calibs, missing

    def _skip_uncalibrated(self, reason: str, report: FrameReport) -> None:
        """Count a frame skipped for missing calibration and warn (throttled)."""
        self.diag.frame_skipped(reason, report)
        if self._due("calibration", reason):
            self.get_logger().warning(f"no output: {reason}")

    def _pose_wait_s(self, p: NodeParams) -> float:
        """How long a frame may wait for a lagging pose (an offline run's recording holds all it will ever have)."""
        return p.tf_max_wait

    def _wait_for_pose(self, bundle: FrameBundle, header: Header, p: NodeParams) -> None:
        """Give an odometry that lags the sensors up to ``tf.max_wait`` to deliver the LiDAR pose in the fixed frame
        at the frame's newest stamp (its cloud's or a fused image's): the motion compensation and the time-corrected
        extrinsics need it. Polls without blocking a callback (the worker is no executor thread)."""
        wait_s = self._pose_wait_s(p)
        if not p.fixed_frame or wait_s <= 0.0:
            return
        newest = Time(nanoseconds=max([bundle.stamp_ns, *(s for s in bundle.image_stamps_ns if s is not None)]),
                      clock_type=ClockType.ROS_TIME)
        deadline = time.monotonic() + wait_s
        while (self.tf.lookup(p.fixed_frame, header.frame_id, newest).matrix is None
               and time.monotonic() < deadline and not self._stop.is_set()):
            time.sleep(POSE_POLL_S)

    def _output_transform(self, header: Header, p: NodeParams) -> Optional[np.ndarray] | str:
        """``T(output_frame <- cloud frame)`` at the cloud stamp; None when boxes stay in the cloud's frame,
        or what is missing when tf has no such transform yet."""
        out = p.output_frame
        if not out or out == header.frame_id:
            return None
        lookup = self.tf.lookup(out, header.frame_id, Time.from_msg(header.stamp))
        return lookup.matrix if lookup.matrix is not None else f"output_frame {out} ({lookup.reason})"

    def _lidar_pose(self, header: Header, p: NodeParams) -> Optional[np.ndarray]:
        """LiDAR pose in ``tf.fixed_frame`` at the cloud stamp, None when disabled or unavailable."""
        fixed = p.fixed_frame
        if not fixed:
            self.diag.set_lidar_pose("motion compensation disabled (tf.fixed_frame is empty)")
            return None
        lookup = self.tf.lookup(fixed, header.frame_id, Time.from_msg(header.stamp))
        self.diag.set_lidar_pose("ok" if lookup.matrix is not None else lookup.reason)
        return lookup.matrix

    def _process(self, bundle: FrameBundle, p: NodeParams) -> None:
        """Convert, calibrate, infer and publish one synchronized frame (worker thread; ``p``: this frame's
        parameter snapshot, so a change mid-frame never mixes two settings)."""
        taken_ns = self._receive_clock_ns()
        start = time.perf_counter()
        if self._reset_pending.is_set():
            self._reset_pending.clear()
            self.assembler.reset()
            self.tf.forget()
        header = Header(stamp=bundle.cloud.header.stamp, frame_id=bundle.cloud.header.frame_id)
        stages = {"wait": (taken_ns - bundle.received_ns) * 1e-6}  # cloud received -> processing starts
        dts = tuple(None if dt is None else dt * 1e-6 for dt in bundle.dt_ns)

        t0 = time.perf_counter()
        points = self._decode_cloud(bundle.cloud, p)
        images, states = self._decode_images(bundle, p)
        stages["convert"] = (time.perf_counter() - t0) * 1e3
        report = FrameReport(camera_state=tuple(states), camera_dt_ms=dts)
        if points is None:
            self.diag.frame_skipped(f"cloud rejected on {self.topics.cloud}", report)
            return
        if not bundle.usable:
            self.diag.frame_skipped("too few cameras fused (sync.min_cameras / sync.allow_missing_cameras)", report)
            return
        if not header.frame_id:
            self._reject(self.topics.cloud, "empty frame_id")
            self.diag.frame_skipped("cloud without frame_id", report)
            return

        t0 = time.perf_counter()
        self._wait_for_pose(bundle, header, p)
        stages["pose_wait"] = (time.perf_counter() - t0) * 1e3
        t0 = time.perf_counter()
        calibs, uncalibrated = self._calibrate(images, bundle, header, p)
        for i, why in uncalibrated.items():  # masked like a late camera, and said so
            images[i] = None
            states[i] = f"masked: uncalibrated ({why})"
            if self._due(f"camera{i} calibration", why):
                self.get_logger().warning(f"camera{i} masked: it delivers images but has no calibration ({why})")
        report = FrameReport(camera_state=tuple(states), camera_dt_ms=dts)
        fused = sum(image is not None for image in images)
        if uncalibrated and (fused < p.min_cameras or not p.allow_missing_cameras):
            reason = ("calibration incomplete: " + "; ".join(f"camera{i} ({why})" for i, why in uncalibrated.items())
                      + f"; {fused} calibrated cameras remain (sync.min_cameras {p.min_cameras}, "
                      f"sync.allow_missing_cameras {p.allow_missing_cameras})")
            self._skip_uncalibrated(reason, report)
            return
        T_out_lidar = self._output_transform(header, p)
        if isinstance(T_out_lidar, str):
            self._skip_uncalibrated(f"calibration incomplete: {T_out_lidar}", report)
            return
        for stamp_ns, earlier in bundle.earlier_clouds:  # dropped clouds still count as past sweeps
            earlier_points = self._decode_cloud(earlier, p)
            if earlier_points is not None:
                self.assembler.push_cloud(earlier_points, stamp_ns * 1e-9, self._lidar_pose(earlier.header, p))
        T_fixed_lidar = self._lidar_pose(header, p)
        self.assembler.push_cloud(points, bundle.stamp_ns * 1e-9, T_fixed_lidar)
        model_input = self.assembler.assemble(images, calibs)
        for i, issue in enumerate(model_input.camera_issues):
            if issue is not None:
                self._reject(self.topics.images[i], issue)
                states[i] = f"rejected: {issue}"
        stages["preprocess"] = (time.perf_counter() - t0) * 1e3

        t0 = time.perf_counter()
        timer = StageTimer(self.device, synchronize=False, cancel=self._stop)  # stopping ends it at a stage
        det = self.model.infer(model_input.points, model_input.images, model_input.lidar2img,
                               model_input.camera_valid, fp16=p.model_fp16, timer=timer).to("cpu")
        stages["model"] = (time.perf_counter() - t0) * 1e3
        if self._stop.is_set():  # stopping: the publishers may be gone
            return
        stages.update({f"model/{k}": v for k, v in timer.ms.items()})

        t0 = time.perf_counter()
        frame = self.assembler.detections(det, p.score_threshold, p.max_detections)
        self._frame_detected(frame, header, T_fixed_lidar)
        out_header = header
        if T_out_lidar is not None:
            frame = replace(frame, boxes=transform_boxes(frame.boxes, T_out_lidar))
            out_header = Header(stamp=header.stamp, frame_id=p.output_frame)
        self.detections_pub.publish(build_detection_array(frame, out_header))
        if self.objects_pub is not None:
            self.objects_pub.publish(self._build_objects(frame, out_header))
        if p.publish_markers and self.markers_pub.get_subscription_count() > 0:  # built only for a listener
            self.markers_pub.publish(build_markers(frame, out_header, p.marker_lifetime))
        if self.query_weights_pub.get_subscription_count() > 0:
            self.query_weights_pub.publish(query_weights_cloud(
                transform_points(self.query_points, T_out_lidar), det.lidar_weights.numpy(),
                det.camera_weights.numpy(), out_header.frame_id, out_header.stamp))
        if p.publish_weight_maps:
            self._publish_weight_maps(bundle, images, model_input.camera_valid, model_input.lidar2img,
                                      det, frame, header, p)
        stages["publish"] = (time.perf_counter() - t0) * 1e3

        total_ms = (time.perf_counter() - start) * 1e3
        latency_ms = (self.get_clock().now().nanoseconds - bundle.stamp_ns) * 1e-6
        self.processing_time_pub.publish(Float64(data=total_ms))
        self.latency_pub.publish(Float64(data=latency_ms))
        report = FrameReport(camera_state=tuple(states), camera_dt_ms=dts, num_points=model_input.num_points,
                             num_sweeps=model_input.num_sweeps, num_uncompensated=model_input.num_uncompensated,
                             num_detections=len(frame), processing_ms=total_ms, stage_ms=stages)
        self.frame_report_pub.publish(frame_report(header, f"{self.get_name()}: frame report",
                                                   self.model_config.image.camera_names, report, latency_ms))
        self.diag.frame_done(report, time.monotonic())
        if self.diag.frames_published == 1:
            self.get_logger().info(f"first frame published: {len(frame)} detections, "
                                   f"{sum(s == 'fused' for s in states)} cameras fused, {total_ms:.0f} ms")

    def _frame_detected(self, frame: FrameDetections, header: Header, T_fixed_lidar: Optional[np.ndarray]) -> None:
        """Every frame's selected detections in the cloud's frame, before publishing, with the LiDAR pose in
        ``tf.fixed_frame`` it was compensated with (None: none): a live node needs nothing more than its messages; an
        offline run (:mod:`aqr_ros.ros.offline`) keeps them for its results file."""

    def _publish_weight_maps(self, bundle: FrameBundle, images: Sequence[Optional[np.ndarray]],
                             valid: np.ndarray, lidar2imgs: torch.Tensor, det: Detections, frame: FrameDetections,
                             header: Header, p: NodeParams) -> None:
        """BEV picture (cloud header) and per-camera overlays with the detections projected through that camera's
        [V, 4, 4] ``lidar2imgs`` entry (that image's header), titled with their stamps, for subscribed topics only."""
        if self.bev_pub.get_subscription_count() > 0:
            stamp_s = header.stamp.sec + header.stamp.nanosec * 1e-9
            picture = self.assembler.bev_picture(det.bev_weight_map.numpy(), frame, stamp_s)
            self.bev_pub.publish(image_from_array(picture, "rgb8", header.frame_id, header.stamp))
        maps = None
        for i, pub in enumerate(self.camera_map_pubs):
            if not valid[i] or pub.get_subscription_count() == 0:
                continue
            if maps is None:
                maps, projections = det.camera_weight_map.numpy(), lidar2imgs.cpu().numpy()
            msg = bundle.images[i]
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            picture = self.assembler.camera_picture(images[i], maps[i], p.weight_map_alpha, i, frame, projections[i],
                                                    stamp_s)
            pub.publish(image_from_array(picture, "rgb8", msg.header.frame_id, msg.header.stamp))

    def _publish_diagnostics(self) -> None:
        if self.diag is None:  # never configured: the lifecycle state tells all there is
            return
        now = time.monotonic()
        if self.params is not None:
            self.diag.set_dropped(self.sync.dropped)
        self.diagnostics_pub.publish(self.diag.array(Header(stamp=self.get_clock().now().to_msg()), now))
        for topic, what in self.diag.silent_inputs(now):
            if self._due(f"silent {topic}", what, SILENT_WARN_PERIOD_S):
                self.get_logger().warning(f"{what}: is it published, and remapped onto this input?")

    def _check_failure(self) -> None:
        """After the worker stopped for good: an error transition (released, unconfigured); an autostarted node
        then exits with code 1, as no lifecycle manager is there to see the state."""
        if not self._failure or self._failure_handled:
            return
        self._failure_handled = True
        self._publish_diagnostics()  # the ERROR status goes out before error processing releases the publishers
        self.trigger_deactivate()
        if self._raw["autostart"]:
            self.diagnostics_pub.wait_for_all_acked(Duration(seconds=1.0))
            self.exit_code = 1
            self.context.try_shutdown()

    def stop_worker(self) -> None:
        """Stop the worker thread: a frame in the model ends at its next stage (FrameCancelled), which is waited for
        up to WORKER_STOP_S; after that the thread is abandoned."""
        self._stop.set()
        worker, self._worker = self._worker, None
        if worker is None:
            return
        worker.join(timeout=1.0)
        if worker.is_alive():
            self.get_logger().info("stopping: waiting for the frame in the model to reach its next stage")
            worker.join(timeout=WORKER_STOP_S - 1.0)
        if worker.is_alive():
            self.get_logger().warning(f"the worker is still in a frame after {WORKER_STOP_S:g} s; not waiting "
                                      "for it (it publishes nothing more)")

    def destroy_node(self) -> None:
        """Stop the worker, then destroy the node."""
        self.stop_worker()
        super().destroy_node()


def apply_thread_budget(threads: int) -> int:
    """Set torch's intra-op CPU threads (0 = half the cores, at least one); returns the count in force."""
    count = threads or max(1, (os.cpu_count() or 2) // 2)
    torch.set_num_threads(count)
    return count


def unrecoverable(exc: Exception, consecutive_oom: int) -> str:
    """Why ``exc`` ends processing for good ('' when the next frame may succeed): a CUDA error leaves the
    context unusable (device-side assert, illegal address, ...); out-of-memory is tolerated MAX_OOM_FRAMES - 1
    times in a row."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return (f"CUDA out of memory in {consecutive_oom} consecutive frames" if consecutive_oom >= MAX_OOM_FRAMES
                else "")
    text = str(exc)
    if isinstance(exc, RuntimeError) and ("CUDA error" in text or "device-side assert" in text
                                          or "CUBLAS_STATUS" in text or "cuDNN error" in text):
        return f"unrecoverable CUDA error: {text.splitlines()[0] if text else type(exc).__name__}"
    return ""


def _log_fatal(message: str) -> int:
    rclpy.logging.get_logger(NODE_NAME).fatal(message)
    return 1


def _start(node: AqrNode) -> Optional[int]:
    """configure + activate for an autostarted node; the exit code when that failed, else None."""
    if node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
        if not rclpy.ok():  # rclpy's SIGINT handler shut the context down during configure
            return _interrupted_start_up()
        return _log_fatal(node.configure_error or "configure failed (see the errors above)")
    if node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
        return _interrupted_start_up() if not rclpy.ok() else _log_fatal("activate failed (see the errors above)")
    return None


def _interrupted_start_up() -> int:
    """Log and exit code of a start-up stopped by Ctrl-C (a requested stop, not a failure)."""
    rclpy.logging.get_logger(NODE_NAME).info("interrupted during start-up")
    return 0


#: The node's topics as ``--help`` lists them (relative names are remapped with ``-r <name>:=<topic>``).
TOPICS = (
    ("in", "~/input/pointcloud", "sensor_msgs/PointCloud2"),
    ("in", "~/input/camera{i}/image (or .../image/compressed)", "sensor_msgs/Image (CompressedImage), i = 0..5"),
    ("in", "~/input/camera{i}/camera_info", "sensor_msgs/CameraInfo"),
    ("in", "/tf, /tf_static", "tf2"),
    ("out", "~/output/detections", "vision_msgs/Detection3DArray"),
    ("out", "~/output/objects", "autoware_perception_msgs/DetectedObjects (output.detected_objects)"),
    ("out", "~/output/markers", "visualization_msgs/MarkerArray"),
    ("out", "~/output/label_info", "vision_msgs/LabelInfo"),
    ("out", "~/debug/weight_map/bev, ~/debug/weight_map/camera{i}", "sensor_msgs/Image"),
    ("out", "~/debug/aqr_weights", "sensor_msgs/PointCloud2"),
    ("out", "~/debug/frame_report", "diagnostic_msgs/DiagnosticArray"),
    ("out", "/diagnostics", "diagnostic_msgs/DiagnosticArray"),
)


def usage() -> str:
    """``--help`` text: how to run the node, its parameters with defaults, and its topics."""
    lines = ["usage: ros2 run aqr_ros aqr_node --ros-args [--params-file FILE] [-p NAME:=VALUE] "
             "[-r FROM:=TO] [--log-level LEVEL]",
             "",
             "AQR-CMT LiDAR + 6-camera 3D detector, a lifecycle node (autostart configures and activates it).",
             "",
             "parameters (read-only unless marked dynamic):"]
    for spec in SPECS:
        flag = ", dynamic" if spec.dynamic else ""
        lines.append(f"  {spec.name} (default {spec.default!r}{flag})")
        lines.append(f"      {spec.description}")
    lines += ["", "topics:"]
    lines += [f"  {direction:<4}{name}  [{kind}]" for direction, name, kind in TOPICS]
    return "\n".join(lines)


def main(args: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ros2 run aqr_ros aqr_node``.

    Exit code 1 with a FATAL line when an autostarted node cannot configure or its worker fails for good (a
    managed node goes through error processing to unconfigured instead and keeps serving its lifecycle); 0 on
    Ctrl-C, also during start-up.
    """
    own = list(sys.argv[1:] if args is None else args)
    own = own[:own.index("--ros-args")] if "--ros-args" in own else own
    if "-h" in own or "--help" in own:  # answered before rclpy starts or a model is built
        print(usage())
        return 0
    rclpy.init(args=args)
    try:
        node = AqrNode()
    except ParameterError as exc:
        rclpy.try_shutdown()
        return _log_fatal(str(exc))
    except (KeyboardInterrupt, ExternalShutdownException):
        rclpy.try_shutdown()
        return _interrupted_start_up()
    autostart = bool(node.get_parameter("autostart").value)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    starting = True
    try:
        if autostart:
            code = _start(node)
            if code is not None:
                return code
        starting = False
        executor.spin()
        return node.exit_code
    except (KeyboardInterrupt, ExternalShutdownException):
        return _interrupted_start_up() if starting else node.exit_code
    finally:
        node.stop_worker()
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
