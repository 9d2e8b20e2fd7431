"""The node's own pipeline driven from recorded messages instead of DDS: deterministic offline runs over bags.

:class:`OfflineAqrNode` is the live :class:`~aqr_ros.ros.node.AqrNode` with three things swapped: its outputs go
to a sink instead of publishers, its receive clock is the recording's time, and nothing spins it. The
:class:`OfflineRunner` hands it the messages in recording order through the node's own callbacks (synchronizer,
camera_info validation, tf buffer) and processes each frame on the node's own ``_process``, so an offline result
is what the live node computes for the same frame. Unlike the live node nothing is dropped: a frame still
waiting for its cameras is processed before the next cloud is stored.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from rclpy.qos import QoSProfile
from std_msgs.msg import Header

from aqr_ros.pipeline.frame import FrameDetections
from aqr_ros.ros.node import AqrNode
from aqr_ros.ros.params import NodeParams
from aqr_ros.ros.sync import FrameBundle
from aqr_ros.ros.to_msg import nanoseconds_from_stamp

#: A receive-clock time later than any recording: it releases a frame still waiting for cameras.
_END_OF_TIME_NS = 1 << 62

#: Where each output message goes: (resolved topic, message, stamp in ns of the frame it belongs to).
OutputSink = Callable[[str, Any, int], None]


class RecordedOutput:
    """Stands in for one of the node's publishers: hands each message to the sink, and reports a subscriber
    only for the topics the run records (outputs built only for a listener are skipped otherwise)."""

    def __init__(self, topic_name: str, writer: Callable[["RecordedOutput", Any], None], recorded: bool) -> None:
        self.topic_name = topic_name
        self.recorded = recorded
        self._writer = writer

    def publish(self, msg: Any) -> None:
        """Hand ``msg`` to the node's writer (which keeps the frame timings and records what is recorded)."""
        self._writer(self, msg)

    def get_subscription_count(self) -> int:
        """1 when recorded (the node then builds the message), else 0."""
        return int(self.recorded)


@dataclass(frozen=True)
class DetectedFrame:
    """One processed frame: its cloud stamp and frame, the detections in that frame, and the LiDAR pose in
    ``tf.fixed_frame`` at the stamp (None when the fixed frame is empty or has no pose)."""

    stamp_ns: int
    frame_id: str
    detections: FrameDetections
    T_fixed_lidar: Optional[np.ndarray]


class OfflineAqrNode(AqrNode):
    """The live node, recording its outputs: ``record(topic)`` says which resolved output topics are kept."""

    def __init__(self, sink: OutputSink, record: Callable[[str], bool], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sink = sink
        self._record = record
        #: The recording's time of the message being handed in (the synchronizer's receive clock).
        self.recording_ns = 0
        self._frame_stamp_ns = 0
        #: Every frame processed so far, in order.
        self.detected: list[DetectedFrame] = []
        #: Stage -> the time (ms) of every processed frame, from the node's own ``~/debug/frame_report``.
        self.stage_ms: dict[str, list[float]] = {}

    def _receive_clock_ns(self) -> int:
        return self.recording_ns

    def _pose_wait_s(self, p: NodeParams) -> float:
        return 0.0  # the recording is handed in up to the frame's instant: waiting cannot bring more tf

    def _output_publisher(self, msg_type: type, topic: str, qos: QoSProfile) -> RecordedOutput:  # type: ignore[override]
        resolved = self.resolve_topic_name(topic)
        return RecordedOutput(resolved, self._write, self._record(resolved))

    def _write(self, output: RecordedOutput, msg: Any) -> None:
        if output is self.frame_report_pub:
            for value in msg.status[0].values:
                if value.key.endswith(" ms"):
                    self.stage_ms.setdefault(value.key.removesuffix(" ms"), []).append(float(value.value))
        if not output.recorded:
            return
        header = getattr(msg, "header", None)
        stamp_ns = nanoseconds_from_stamp(header.stamp) if header is not None else self._frame_stamp_ns
        self._sink(output.topic_name, msg, stamp_ns)

    def _frame_detected(self, frame: FrameDetections, header: Header, T_fixed_lidar: Optional[np.ndarray]) -> None:
        self.detected.append(DetectedFrame(nanoseconds_from_stamp(header.stamp), header.frame_id, frame,
                                           T_fixed_lidar))

    def process(self, bundle: FrameBundle) -> Optional[str]:
        """Process one frame as the live worker does (errors counted and logged); the reason when it was fatal."""
        self._frame_stamp_ns = bundle.stamp_ns
        try:
            self._process(bundle, self.params)
        except Exception as exc:  # as the live worker: a frame's error is counted, only an unrecoverable one stops
            return self._on_worker_error(exc, bundle) or None
        self._consecutive_oom = 0
        return None


class OfflineRunner:
    """Feeds recorded messages to an :class:`OfflineAqrNode` in recording order and processes its frames.

    A recorded topic feeds the node input whose resolved (remapped) name it has, as over DDS. ``frames``: the
    cloud stamps (ns) to infer on; None infers on every cloud. The other clouds still reach the sweep history, as
    the clouds a busy live node skips do. A decided frame is processed once every message recorded at the same
    time has been handed in (tf of that instant included).
    """

    def __init__(self, node: OfflineAqrNode, frames: Optional[Collection[int]] = None,
                 tf_topics: tuple[str, str] = ("/tf", "/tf_static")) -> None:
        self.node = node
        self._frames = None if frames is None else frozenset(frames)
        self._cloud = node.topics.cloud
        self._camera = {topic: i for i, topic in enumerate(node.topics.images)}
        self._info = {topic: i for i, topic in enumerate(node.topics.infos)}
        self._tf, self._tf_static = tf_topics
        self._pending_frame = False  # the synchronizer holds a cloud to infer on
        self._decided: Optional[tuple[int, FrameBundle]] = None  # (decided at, frame) waiting for its instant
        #: Why processing stopped for good, if it did.
        self.fatal = ""
        self.processed = 0

    def feed(self, topic: str, recorded_ns: int, msg: Any) -> None:
        """Hand in one recorded message (recording order); may process the frames this completes."""
        if self.fatal:
            return
        if self._decided is not None and recorded_ns > self._decided[0]:
            self._run_decided()
        node = self.node
        node.recording_ns = recorded_ns
        if topic == self._cloud:
            if self._pending_frame:  # nothing is dropped offline: the frame goes before the next cloud replaces it
                self._run_decided()
                self._take(_END_OF_TIME_NS)
                self._run_decided()
            node._on_cloud(msg)
            pending = node.sync.pending_stamp_ns  # unchanged when the cloud was rejected
            self._pending_frame = pending is not None and (self._frames is None or pending in self._frames)
        elif topic in self._camera:
            node._on_image(self._camera[topic], msg)
        elif topic in self._info:
            node._on_camera_info(self._info[topic], msg)
        elif topic in (self._tf, self._tf_static):
            store = node.tf.buffer.set_transform_static if topic == self._tf_static else node.tf.buffer.set_transform
            for transform in msg.transforms:
                store(transform, "recording")
        if self._pending_frame and self._decided is None:
            self._take(recorded_ns)

    def finish(self) -> None:
        """The recording ended: process the frame still waiting for cameras, with what it has."""
        if not self.fatal and self._pending_frame:
            self._take(_END_OF_TIME_NS)
        self._run_decided()

    def _take(self, now_ns: int) -> None:
        bundle = self.node.sync.take(now_ns)
        if bundle is not None:
            self._pending_frame = False
            self._decided = (self.node.recording_ns, bundle)

    def _run_decided(self) -> None:
        if self._decided is None or self.fatal:
            return
        _, bundle = self._decided
        self._decided = None
        self.fatal = self.node.process(bundle) or ""
        self.processed += 1

    def input_topics(self) -> list[str]:
        """Every recorded topic the run reads."""
        return [self._cloud, *self._camera, *self._info, self._tf, self._tf_static]


def configure_offline(node: OfflineAqrNode) -> None:
    """Run the node's configure transition (model, outputs, tf buffer); raises RuntimeError with the reason."""
    started = time.perf_counter()
    node.trigger_configure()
    if node.configure_error or node.model is None:
        raise RuntimeError(node.configure_error or "configure failed (see the log)")
    node._publish_label_info()
    node.get_logger().info(f"configured for an offline run in {time.perf_counter() - started:.1f} s")
