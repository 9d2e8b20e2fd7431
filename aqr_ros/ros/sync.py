"""LiDAR-triggered synchronization of one cloud with N cameras on integer nanosecond stamps.

ROS-free (no rclpy import) so it is unit-tested on its own. Callbacks only call ``add_cloud`` /
``add_image``; the worker calls ``wait_frame`` and gets the newest cloud with, per camera, the image
closest to ``cloud stamp + offset`` among those buffered or received since the cloud (remembered even
when newer images have pushed it out of the small buffer), or a mask when none is close enough.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Generic, Optional, TypeVar

C = TypeVar("C")
I = TypeVar("I")


class CameraStatus(str, enum.Enum):
    """How one camera took part in a frame."""

    FUSED = "fused"  # an image within tolerance was used
    LATE = "late"  # images exist but none within tolerance: masked
    MISSING = "missing"  # no image buffered at all: masked


class Push(str, enum.Enum):
    """Result of storing one message."""

    ACCEPTED = "accepted"
    OUT_OF_ORDER = "out_of_order"  # stamp not newer than the last one of that input (small step back)
    RESET = "reset"  # time jumped back more than the reset threshold: state cleared, message kept


@dataclass(frozen=True)
class SyncConfig:
    """Synchronizer settings; all times in integer nanoseconds."""

    num_cameras: int = 6
    #: Largest accepted |image stamp - offset - cloud stamp|.
    max_delay_ns: int = 100_000_000
    #: Per-camera offset subtracted from the image stamp before matching (shutter timing).
    offsets_ns: tuple[int, ...] = (0, 0, 0, 0, 0, 0)
    #: Images kept per camera.
    queue_size: int = 2
    #: Longest time (receive clock) a cloud waits for cameras that may still deliver a closer image.
    wait_timeout_ns: int = 50_000_000
    #: Frames with fewer fused cameras are skipped.
    min_cameras: int = 0
    #: False skips every frame with a masked camera.
    allow_missing: bool = True
    #: A step back of more than this (bag loop) resets the state instead of being rejected.
    reset_threshold_ns: int = 1_000_000_000
    #: Replaced (dropped) clouds handed to the next frame for the sweep history; 0 keeps none.
    keep_dropped: int = 0

    def __post_init__(self) -> None:
        if len(self.offsets_ns) != self.num_cameras:
            raise ValueError(f"offsets_ns: expected {self.num_cameras} values, got {len(self.offsets_ns)}")
        if self.queue_size < 1:
            raise ValueError("queue_size: must be >= 1")
        if self.max_delay_ns < 0 or self.wait_timeout_ns < 0:
            raise ValueError("max_delay_ns and wait_timeout_ns: must be >= 0")
        if self.keep_dropped < 0:
            raise ValueError("keep_dropped: must be >= 0")


@dataclass(frozen=True)
class FrameBundle(Generic[C, I]):
    """One cloud and its per-camera match; ``images[i]`` is None for a masked camera."""

    stamp_ns: int
    cloud: C
    images: tuple[Optional[I], ...]
    image_stamps_ns: tuple[Optional[int], ...]
    status: tuple[CameraStatus, ...]
    #: image stamp - offset - cloud stamp of the closest buffered image (None when none).
    dt_ns: tuple[Optional[int], ...]
    #: False when the frame is skipped (too few cameras); it is still returned for diagnostics.
    usable: bool
    #: Receive-clock time of the cloud (the wait for cameras is the take time minus this).
    received_ns: int = 0
    #: (stamp, cloud) of the clouds replaced since the previous frame, oldest first (at most
    #: ``keep_dropped``): not inferred on, but still sweeps for the accumulated LiDAR history.
    earlier_clouds: tuple[tuple[int, C], ...] = ()

    @property
    def camera_valid(self) -> tuple[bool, ...]:
        """Per camera, whether its image is used."""
        return tuple(s is CameraStatus.FUSED for s in self.status)


@dataclass
class _Pending:
    stamp_ns: int
    cloud: Any
    received_ns: int
    #: Per camera, the closest (stamp, image) seen since the cloud arrived; kept here so images arriving
    #: while the worker is busy cannot push the best match out of the small per-camera buffer.
    best: list[Optional[tuple[int, Any]]]


class LidarTriggeredSync(Generic[C, I]):
    """Thread-safe LiDAR-triggered matcher keeping only the newest unprocessed cloud.

    A newer cloud replaces an unprocessed one, which is counted in ``dropped``. A cloud is released
    when every camera is decided (its newest image is at or past the target stamp, so no closer
    image can come) or when ``wait_timeout_ns`` has passed since it was received.
    """

    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self._cond = threading.Condition()
        self._images: list[deque[tuple[int, Any]]] = [deque(maxlen=config.queue_size)
                                                      for _ in range(config.num_cameras)]
        self._pending: Optional[_Pending] = None
        self._replaced: deque[tuple[int, Any]] = deque(maxlen=config.keep_dropped)
        self._last_cloud_ns: Optional[int] = None
        self.dropped = 0
        self.resets = 0

    def add_cloud(self, stamp_ns: int, cloud: C, received_ns: int) -> Push:
        """Store a cloud (replacing an unprocessed one) unless its stamp steps back."""
        with self._cond:
            result = Push.ACCEPTED
            last = self._last_cloud_ns
            if last is not None and stamp_ns <= last:
                if last - stamp_ns <= self.config.reset_threshold_ns:
                    return Push.OUT_OF_ORDER
                self._clear_locked()
                result = Push.RESET
            if self._pending is not None:
                self.dropped += 1
                if self.config.keep_dropped:
                    self._replaced.append((self._pending.stamp_ns, self._pending.cloud))
            self._pending = _Pending(stamp_ns, cloud, received_ns, [None] * self.config.num_cameras)
            for cam, buf in enumerate(self._images):
                for item in buf:
                    self._offer_locked(cam, item)
            self._last_cloud_ns = stamp_ns
            self._cond.notify_all()
            return result

    def add_image(self, camera: int, stamp_ns: int, image: I) -> Push:
        """Store an image of camera ``camera``; a big step back clears that camera's buffer."""
        with self._cond:
            buf = self._images[camera]
            result = Push.ACCEPTED
            if buf and stamp_ns <= buf[-1][0]:
                if buf[-1][0] - stamp_ns <= self.config.reset_threshold_ns:
                    return Push.OUT_OF_ORDER
                buf.clear()
                if self._pending is not None:
                    self._pending.best[camera] = None
                result = Push.RESET
            buf.append((stamp_ns, image))
            self._offer_locked(camera, (stamp_ns, image))
            self._cond.notify_all()
            return result

    def reset(self) -> None:
        """Forget all buffered messages and the last cloud stamp."""
        with self._cond:
            self._clear_locked()
            self._cond.notify_all()

    @property
    def pending_stamp_ns(self) -> Optional[int]:
        """Stamp of the cloud waiting for its cameras, None when none waits."""
        with self._cond:
            return None if self._pending is None else self._pending.stamp_ns

    def take(self, now_ns: int) -> Optional[FrameBundle[C, I]]:
        """The pending cloud matched with the cameras if it is decided at ``now_ns`` (receive clock), else None."""
        with self._cond:
            return self._take_locked(now_ns)

    def wait_frame(self, now_fn: Callable[[], int], timeout_s: float) -> Optional[FrameBundle[C, I]]:
        """Block up to ``timeout_s`` for a decided frame; ``now_fn()`` gives the receive clock in ns."""
        with self._cond:
            bundle = self._take_locked(now_fn())
            if bundle is None:
                remaining = timeout_s
                if self._pending is not None:
                    deadline = self._pending.received_ns + self.config.wait_timeout_ns
                    remaining = min(timeout_s, max(0.0, (deadline - now_fn()) * 1e-9))
                self._cond.wait(remaining)
                bundle = self._take_locked(now_fn())
            return bundle

    def _clear_locked(self) -> None:
        for buf in self._images:
            buf.clear()
        self._pending = None
        self._replaced.clear()
        self._last_cloud_ns = None
        self.resets += 1

    def _offer_locked(self, camera: int, item: tuple[int, Any]) -> None:
        """Keep ``item`` as the pending cloud's match for ``camera`` when it is the closest so far."""
        pending = self._pending
        if pending is None:
            return
        target = pending.stamp_ns + self.config.offsets_ns[camera]
        best = pending.best[camera]
        if best is None or abs(item[0] - target) < abs(best[0] - target):
            pending.best[camera] = item

    def _take_locked(self, now_ns: int) -> Optional[FrameBundle[C, I]]:
        pending = self._pending
        if pending is None:
            return None
        cfg = self.config
        expired = now_ns - pending.received_ns >= cfg.wait_timeout_ns
        matches = []
        for cam, buf in enumerate(self._images):
            target = pending.stamp_ns + cfg.offsets_ns[cam]
            if not expired and (not buf or buf[-1][0] < target):
                return None  # a closer image may still arrive
            matches.append(pending.best[cam])
        self._pending = None
        earlier = tuple(self._replaced)
        self._replaced.clear()
        dts = tuple(None if m is None else m[0] - cfg.offsets_ns[cam] - pending.stamp_ns
                    for cam, m in enumerate(matches))
        status = tuple(CameraStatus.MISSING if dt is None
                       else CameraStatus.FUSED if abs(dt) <= cfg.max_delay_ns else CameraStatus.LATE for dt in dts)
        fused = [s is CameraStatus.FUSED for s in status]
        num_fused = sum(fused)
        usable = num_fused >= cfg.min_cameras and (cfg.allow_missing or num_fused == cfg.num_cameras)
        return FrameBundle(
            stamp_ns=pending.stamp_ns,
            cloud=pending.cloud,
            images=tuple(m[1] if ok else None for m, ok in zip(matches, fused)),
            image_stamps_ns=tuple(m[0] if ok else None for m, ok in zip(matches, fused)),
            status=status,
            dt_ns=dts,
            usable=usable,
            received_ns=pending.received_ns,
            earlier_clouds=earlier,
        )
