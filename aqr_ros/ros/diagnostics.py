"""The node's ``/diagnostics`` status: lifecycle state, input rates and staleness, per-camera sync and
calibration, sweeps, timing, drops, rejections and worker failures.

Callbacks and the worker record into a thread-safe :class:`FusionDiagnostics`; a timer turns it into one
``DiagnosticStatus`` (OK / WARN / ERROR) with key-value pairs, so the state is visible in
``rqt_runtime_monitor`` or ``ros2 topic echo /diagnostics``. Rates and ages follow diagnostic_updater's
FrequencyStatus / TimeStampStatus: arrivals within a sliding window, and the age of the newest one.
"""

from __future__ import annotations

import threading
from collections import deque
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


class ArrivalWindow:
    """Arrival times (monotonic s) of one stream within a sliding window: rate and age of the newest."""

    def __init__(self) -> None:
        self._times: deque[float] = deque()
        self.last: Optional[float] = None

    def add(self, now_s: float) -> None:
        """Record one arrival."""
        self._times.append(now_s)
        self.last = now_s

    def rate_hz(self, now_s: float, window_s: float) -> float:
        """Arrivals per second over the window ending now (0 when fewer than two)."""
        while self._times and now_s - self._times[0] > window_s:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0


@dataclass
class _CalibrationState:
    """Per camera the calibration state, the extrinsic used and the lens handling, and the LiDAR pose state."""

    calibration: list[str]
    extrinsic: list[str]
    lens: list[str]
    lidar_pose: str

    def copy(self) -> "_CalibrationState":
        return _CalibrationState(list(self.calibration), list(self.extrinsic), list(self.lens), self.lidar_pose)


class FusionDiagnostics:
    """Thread-safe counters, input/output arrivals and last-frame state, rendered as a DiagnosticArray."""

    def __init__(self, name: str, hardware_id: str, camera_names: Sequence[str], max_processing_ms: float,
                 stale_timeout_s: float = 1.0, window_s: float = 10.0, model: str = "") -> None:
        """``camera_names`` label the per-camera keys (model view order); ``model`` names the model and weights."""
        self.name = name
        self.model = model
        self.hardware_id = hardware_id
        self.camera_names = tuple(camera_names)
        self._lock = threading.Lock()
        self._limits = (max_processing_ms, stale_timeout_s, window_s)
        #: topic -> (rejected count, last reason); recent rejections as (time s, topic, reason)
        self._rejected: dict[str, tuple[int, str]] = {}
        self._recent_rejections: deque[tuple[float, str, str]] = deque()
        views = len(self.camera_names)
        #: The frame in progress records its calibration here; it is shown once that frame ends (done or skipped),
        #: so one status never mixes the last frame's results with the next one's calibration.
        self._staged = _CalibrationState(["waiting for camera_info and tf"] * views, ["no image yet"] * views,
                                         ["no camera_info yet"] * views, "no cloud yet")
        self._shown = self._staged.copy()
        self._skip_reason = ""
        self._frame: Optional[FrameReport] = None
        self._state = "unconfigured"
        self._fatal = ""
        self._worker_errors = 0
        self._last_worker_error = ""
        self._cloud_topic = ""
        self._camera_topics: tuple[str, ...] = ()
        self._inputs: dict[str, ArrivalWindow] = {}
        self._since = 0.0
        self._output = ArrivalWindow()
        self._counts = {"published": 0, "skipped": 0, "dropped": 0, "resets": 0}

    # ------------------------------------------------------------- recording

    def set_limits(self, max_processing_ms: float, stale_timeout_s: float, window_s: float) -> None:
        """Thresholds of the status (dynamic parameters)."""
        with self._lock:
            self._limits = (max_processing_ms, stale_timeout_s, window_s)

    def set_state(self, state: str, now_s: float) -> None:
        """Record the lifecycle state; entering ``active`` starts the staleness clock of every input."""
        with self._lock:
            self._state = state
            if state == "active":
                self._since = now_s
                self._fatal = ""

    def watch_inputs(self, cloud_topic: str, camera_topics: Sequence[str]) -> None:
        """The resolved input topics whose rates and staleness are reported."""
        with self._lock:
            self._cloud_topic = cloud_topic
            self._camera_topics = tuple(camera_topics)
            self._inputs = {t: ArrivalWindow() for t in (cloud_topic, *camera_topics)}

    def received(self, topic: str, now_s: float) -> None:
        """Record a message arriving on an input topic."""
        with self._lock:
            window = self._inputs.get(topic)
            if window is not None:
                window.add(now_s)

    def reject(self, topic: str, reason: str, now_s: float) -> int:
        """Count a rejected input on ``topic``; returns how many were rejected there so far."""
        with self._lock:
            count = self._rejected.get(topic, (0, ""))[0] + 1
            self._rejected[topic] = (count, reason)
            self._recent_rejections.append((now_s, topic, reason))
            return count

    def set_calibration(self, camera: int, state: str) -> None:
        """Record a camera's calibration state ("ok" or what is missing)."""
        with self._lock:
            self._staged.calibration[camera] = state

    def set_extrinsic(self, camera: int, source: str) -> None:
        """Record which extrinsic a camera's last image was projected with ("time-corrected via ..." or "static: ...")."""
        with self._lock:
            self._staged.extrinsic[camera] = source

    def set_lens(self, camera: int, description: str) -> None:
        """Record how a camera's images reach the model's pinhole (undistorted, rectified input, distortion ignored)."""
        with self._lock:
            self._staged.lens[camera] = description

    def set_lidar_pose(self, state: str) -> None:
        """Record whether the LiDAR pose in the fixed frame was available ("ok" or the reason)."""
        with self._lock:
            self._staged.lidar_pose = state

    def frame_done(self, report: FrameReport, now_s: float) -> None:
        """Record a published frame."""
        with self._lock:
            self._frame = report
            self._shown = self._staged.copy()
            self._skip_reason = ""
            self._counts["published"] += 1
            self._output.add(now_s)

    def frame_skipped(self, reason: str, report: Optional[FrameReport] = None) -> None:
        """Record a frame that produced no output, and why."""
        with self._lock:
            self._skip_reason = reason
            self._shown = self._staged.copy()
            if report is not None:
                self._frame = report
            self._counts["skipped"] += 1

    def count_reset(self) -> None:
        """Count a time reset (a stamp jumped back)."""
        with self._lock:
            self._counts["resets"] += 1

    def set_dropped(self, dropped: int) -> None:
        """The synchronizer's count of clouds replaced before processing."""
        with self._lock:
            self._counts["dropped"] = dropped

    def worker_error(self, summary: str) -> int:
        """Count an unexpected error of the worker; returns the count so far."""
        with self._lock:
            self._worker_errors += 1
            self._last_worker_error = summary
            return self._worker_errors

    def set_fatal(self, reason: str) -> None:
        """Processing stopped for good (until reconfigured): the status is ERROR with ``reason``."""
        with self._lock:
            self._fatal = reason

    @property
    def frames_published(self) -> int:
        """Frames published so far."""
        with self._lock:
            return self._counts["published"]

    # --------------------------------------------------------------- report

    def _silences(self, now_s: float) -> list[tuple[str, str]]:
        """(topic, what) of every input silent for longer than the stale timeout while active (lock held)."""
        stale_s = self._limits[1]
        silences = []
        for topic, window in self._inputs.items():
            age = now_s - (window.last if window.last is not None else self._since)
            if self._state == "active" and age > stale_s:
                silences.append((topic, f"nothing received on {topic} for {age:.1f} s" if window.last is None
                                 else f"{topic} silent for {age:.1f} s"))
        return silences

    def silent_inputs(self, now_s: float) -> list[tuple[str, str]]:
        """(topic, what) of every input silent for longer than ``diag.stale_timeout`` (none unless active)."""
        with self._lock:
            return self._silences(now_s)

    def _input_values(self, now_s: float) -> tuple[list[tuple[str, str]], list[tuple[int, str]]]:
        """Rate/age pairs per input and output, and the staleness problems (lock held)."""
        window_s = self._limits[2]
        values: list[tuple[str, str]] = []
        for topic, window in self._inputs.items():
            age = now_s - window.last if window.last is not None else None
            values += [(f"rate {topic} Hz", f"{window.rate_hz(now_s, window_s):.2f}"),
                       (f"age {topic} s", "never received" if age is None else f"{age:.2f}")]
        values.append(("rate output Hz", f"{self._output.rate_hz(now_s, window_s):.2f}"))
        problems = [(ERROR if topic == self._cloud_topic else WARN, what) for topic, what in self._silences(now_s)]
        return values, problems

    def status(self, now_s: float) -> DiagnosticStatus:
        """The current state as one DiagnosticStatus (``now_s``: monotonic seconds)."""
        with self._lock:
            max_ms, _, window_s = self._limits
            values: list[tuple[str, str]] = [("lifecycle state", self._state), ("model", self.model)]
            problems: list[tuple[int, str]] = []
            inputs, stale = self._input_values(now_s)
            values += inputs
            problems += stale
            frame = self._frame
            for i, name in enumerate(self.camera_names):
                state = frame.camera_state[i] if frame else "no frame yet"
                values += _camera_values(i, name, state, frame.camera_dt_ms[i] if frame else None)
                values += [(f"camera{i} calibration", self._shown.calibration[i]),
                           (f"camera{i} extrinsic", self._shown.extrinsic[i]),
                           (f"camera{i} lens", self._shown.lens[i])]
                if frame and state != "fused":
                    problems.append((WARN, f"camera{i} {state}"))
                elif self._shown.extrinsic[i].startswith("static: no pose"):
                    problems.append((WARN, f"camera{i} extrinsic not time-corrected (no pose in the fixed frame)"))
            values.append(("lidar pose in fixed frame", self._shown.lidar_pose))
            if frame:
                values += _fused_values(frame) + [("processing_time_ms", f"{frame.processing_ms:.1f}")]
                values += [(f"stage {k} ms", f"{v:.1f}") for k, v in frame.stage_ms.items()]
                if frame.processing_ms > max_ms:
                    problems.append((WARN, f"processing {frame.processing_ms:.0f} ms > {max_ms:.0f} ms"))
                if frame.num_uncompensated:
                    problems.append((WARN, f"{frame.num_uncompensated} sweeps not motion-compensated"))
            values += [(f"frames {k}", str(v)) for k, v in self._counts.items() if k != "resets"]
            values.append(("time resets", str(self._counts["resets"])))
            values.append(("worker errors", str(self._worker_errors)
                           + (f" (last: {self._last_worker_error})" if self._worker_errors else "")))
            total_rejected = sum(count for count, _ in self._rejected.values())
            values.append(("inputs rejected", str(total_rejected)))
            values += [(f"rejected {topic}", f"{count} (last: {reason})")
                       for topic, (count, reason) in sorted(self._rejected.items())]
            recent = self._recent_rejections
            while recent and now_s - recent[0][0] > window_s:
                recent.popleft()
            if recent:
                _, topic, reason = recent[-1]
                problems.append((WARN, f"{len(recent)} inputs rejected in the last {window_s:g} s "
                                       f"(last on {topic}: {reason})"))
            if self._skip_reason:
                problems.insert(0, (ERROR, f"no output: {self._skip_reason}"))
            if self._fatal:
                problems.insert(0, (ERROR, f"processing stopped: {self._fatal}"))
            idle = self._state != "active" and not self._fatal
        if idle:  # an inactive node reports its state, not the silence it chose
            problems = []
        level = max((lvl for lvl, _ in problems), default=OK)
        message = "; ".join(msg for _, msg in problems) if problems else (
            self._state if idle else "ok" if frame else "waiting for the first frame")
        return DiagnosticStatus(level=level, name=self.name, hardware_id=self.hardware_id, message=message,
                                values=[KeyValue(key=k, value=v) for k, v in values])

    def array(self, header: Header, now_s: float) -> DiagnosticArray:
        """DiagnosticArray with :meth:`status`, stamped with ``header``."""
        return DiagnosticArray(header=header, status=[self.status(now_s)])


def _camera_values(camera: int, name: str, state: str, dt_ms: Optional[float]) -> list[tuple[str, str]]:
    """A camera's state and image-minus-cloud time, keyed as in the status and the frame report."""
    return [(f"camera{camera} {name}", state), (f"camera{camera} dt_ms", "n/a" if dt_ms is None else f"{dt_ms:.1f}")]


def _fused_values(frame: FrameReport) -> list[tuple[str, str]]:
    """What a frame fused: points, sweeps (and how many of them uncompensated) and detections."""
    return [("points", str(frame.num_points)), ("sweeps", str(frame.num_sweeps)),
            ("uncompensated sweeps", str(frame.num_uncompensated)), ("detections", str(frame.num_detections))]


def frame_report(header: Header, name: str, camera_names: Sequence[str], frame: FrameReport,
                 latency_ms: float) -> DiagnosticArray:
    """One published frame's report, stamped with the frame's own header so tools pair it with its outputs: the
    stage times (``<stage> ms``, ``total ms``, ``latency ms``), each camera's state and what was fused."""
    values = [(f"{stage} ms", f"{ms:.3f}") for stage, ms in frame.stage_ms.items()]
    values += [("total ms", f"{frame.processing_ms:.3f}"), ("latency ms", f"{latency_ms:.3f}")]
    for i, camera in enumerate(camera_names):
        values += _camera_values(i, camera, frame.camera_state[i], frame.camera_dt_ms[i])
    values += _fused_values(frame)
    return DiagnosticArray(header=header, status=[DiagnosticStatus(
        level=OK, name=name, message="frame report", values=[KeyValue(key=k, value=v) for k, v in values])])
