"""The node's ``/diagnostics`` status: per-camera sync and calibration state, sweeps, timing, drops, rejections.

Callbacks and the worker record into a thread-safe :class:`FusionDiagnostics`; a timer turns it into one
``DiagnosticStatus`` (OK / WARN / ERROR) with key-value pairs, so the state is visible in
``rqt_runtime_monitor`` or ``ros2 topic echo /diagnostics``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from std_msgs.msg import Header

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


@dataclass
class FrameReport:
    """What the worker learned about the last frame it handled."""

    #: Per camera: "fused", "late", "missing" or "rejected: <reason>".
    camera_state: tuple[str, ...]
    #: Per camera image-minus-cloud time (ms) of the closest image, None when no image.
    camera_dt_ms: tuple[Optional[float], ...]
    num_points: int = 0
    num_sweeps: int = 0
    num_uncompensated: int = 0
    num_detections: int = 0
    processing_ms: float = 0.0
    stage_ms: dict[str, float] = field(default_factory=dict)


class FusionDiagnostics:
    """Thread-safe counters and last-frame state, rendered as a DiagnosticArray."""

    def __init__(self, name: str, hardware_id: str, camera_names: Sequence[str], max_processing_ms: float) -> None:
        """``camera_names`` label the per-camera keys (model view order)."""
        self.name = name
        self.hardware_id = hardware_id
        self.camera_names = tuple(camera_names)
        self.max_processing_ms = max_processing_ms
        self._lock = threading.Lock()
        #: topic -> (rejected count, last reason)
        self._rejected: dict[str, tuple[int, str]] = {}
        self._rejected_reported = 0
        self._calibration: list[str] = ["waiting for camera_info and tf"] * len(self.camera_names)
        self._lidar_pose = "no cloud yet"
        self._skip_reason = ""
        self._frame: Optional[FrameReport] = None
        self.frames_published = 0
        self.frames_skipped = 0
        self.dropped = 0
        self.resets = 0

    def reject(self, topic: str, reason: str) -> int:
        """Count a rejected input on ``topic``; returns how many were rejected there so far."""
        with self._lock:
            count = self._rejected.get(topic, (0, ""))[0] + 1
            self._rejected[topic] = (count, reason)
            return count

    def set_calibration(self, camera: int, state: str) -> None:
        """Record a camera's calibration state ("ok" or what is missing)."""
        with self._lock:
            self._calibration[camera] = state

    def set_lidar_pose(self, state: str) -> None:
        """Record whether the LiDAR pose in the fixed frame was available ("ok" or the reason)."""
        with self._lock:
            self._lidar_pose = state

    def frame_done(self, report: FrameReport) -> None:
        """Record a published frame."""
        with self._lock:
            self._frame = report
            self._skip_reason = ""
            self.frames_published += 1

    def frame_skipped(self, reason: str, report: Optional[FrameReport] = None) -> None:
        """Record a frame that produced no output, and why."""
        with self._lock:
            self._skip_reason = reason
            if report is not None:
                self._frame = report
            self.frames_skipped += 1

    def status(self) -> DiagnosticStatus:
        """The current state as one DiagnosticStatus."""
        with self._lock:
            values: list[tuple[str, str]] = []
            problems: list[tuple[int, str]] = []
            frame = self._frame
            for i, name in enumerate(self.camera_names):
                state = frame.camera_state[i] if frame else "no frame yet"
                dt = frame.camera_dt_ms[i] if frame else None
                values += [(f"camera{i} {name}", state),
                           (f"camera{i} dt_ms", "n/a" if dt is None else f"{dt:.1f}"),
                           (f"camera{i} calibration", self._calibration[i])]
                if frame and state != "fused":
                    problems.append((WARN, f"camera{i} {state}"))
            values.append(("lidar pose in fixed frame", self._lidar_pose))
            if frame:
                values += [("points", str(frame.num_points)), ("sweeps", str(frame.num_sweeps)),
                           ("uncompensated sweeps", str(frame.num_uncompensated)),
                           ("detections", str(frame.num_detections)),
                           ("processing_time_ms", f"{frame.processing_ms:.1f}")]
                values += [(f"stage {k} ms", f"{v:.1f}") for k, v in frame.stage_ms.items()]
                if frame.processing_ms > self.max_processing_ms:
                    problems.append((WARN, f"processing {frame.processing_ms:.0f} ms > "
                                           f"{self.max_processing_ms:.0f} ms"))
                if frame.num_uncompensated:
                    problems.append((WARN, f"{frame.num_uncompensated} sweeps not motion-compensated"))
            values += [("frames published", str(self.frames_published)), ("frames skipped", str(self.frames_skipped)),
                       ("frames dropped", str(self.dropped)), ("time resets", str(self.resets))]
            total_rejected = sum(count for count, _ in self._rejected.values())
            values.append(("inputs rejected", str(total_rejected)))
            values += [(f"rejected {topic}", f"{count} (last: {reason})")
                       for topic, (count, reason) in sorted(self._rejected.items())]
            if total_rejected > self._rejected_reported:
                problems.append((WARN, f"{total_rejected - self._rejected_reported} inputs rejected"))
                self._rejected_reported = total_rejected
            if self._skip_reason:
                problems.insert(0, (ERROR, f"no output: {self._skip_reason}"))
        level = max((lvl for lvl, _ in problems), default=OK)
        message = "; ".join(msg for _, msg in problems) if problems else (
            "ok" if frame else "waiting for the first frame")
        return DiagnosticStatus(level=level, name=self.name, hardware_id=self.hardware_id, message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values])

    def array(self, header: Header) -> DiagnosticArray:
        """DiagnosticArray with :meth:`status`, stamped with ``header``."""
        return DiagnosticArray(header=header, status=[self.status()])
