"""The sensor doctor's checks, without ROS: each turns what was heard on one topic (or looked up in tf) into an
OK / WARN / ERROR :class:`Check` whose reason names the topic or parameter and what to change.

Inputs are plain values (stamps in seconds, numpy arrays, strings), so every check is unit-tested on crafted
inputs; :mod:`aqr_ros.tools.doctor` listens to the node's topics and feeds them. Calibration maths and lens
handling are the node's own (:mod:`aqr_ros.pipeline.calibration`, :mod:`aqr_ros.pipeline.undistort`).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import cv2
import numpy as np

from aqr_ros.pipeline.calibration import lidar2img, points_to_model, validate_intrinsics
from aqr_ros.pipeline.undistort import DISTORTION_MODELS, ignored_distortion

#: Stamps further ahead of the local clock on arrival (s) are "in the future" (an unsynchronised sensor clock).
FUTURE_TOLERANCE_S = 0.2
#: Share of clouds whose nearest image is beyond ``sync.max_camera_lidar_delay`` above which a camera warns.
MASKED_SHARE_WARN = 0.1
#: Free share of the shared-memory filesystem below which the doctor warns.
SHM_FREE_WARN = 0.1
#: Fewest clouds between a camera's images for that share to mean anything (drops leave fewer; the rate says so).
MIN_SYNC_CLOUDS = 5
#: A gap between consecutive images longer than this many camera periods (the 10th percentile of the gaps, which
#: survives drops) is taken as dropped messages.
DROP_GAP = 1.5
#: Intensities above this (after ``input.intensity_scale``) are outside the model's trained 0..255 range.
INTENSITY_CEILING = 255.0 * 1.05
#: Half-thickness (m) of the layer counted as the ground plane when looking for the cloud's up axis.
GROUND_LAYER_M = 0.3
#: Depth (m) at the far end of the overlay colour scale.
OVERLAY_MAX_DEPTH_M = 50.0
#: Radius (px) of a point drawn on an overlay.
OVERLAY_POINT_RADIUS = 2
#: Forward axis of the cloud's frame in each convention ``input.lidar_axes`` accepts (both have z up).
FORWARD_AXIS = {"rep103": "+x", "nuscenes_lidar_top": "+y"}
_AXIS_NAMES = ("x", "y", "z")


class Level(enum.IntEnum):
    """Severity of a check; the report's worst level decides the exit code."""

    OK = 0
    WARN = 1
    ERROR = 2


@dataclass(frozen=True)
class Check:
    """One finding: what was checked (``name``) on which topic, frame pair or parameter (``subject``), the level,
    a one-line reason (what is wrong and what to change, or what was measured) and the measured values."""

    name: str
    subject: str
    level: Level
    reason: str
    values: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """The check as one line of the text report."""
        return f"{self.level.name:<5} {self.name:<12} {self.subject}: {self.reason}"

    def as_json(self) -> dict[str, Any]:
        """The check as a JSON object."""
        return {"name": self.name, "subject": self.subject, "level": self.level.name, "reason": self.reason,
                "values": self.values}


def worst(checks: Sequence[Check]) -> Level:
    """The highest level among ``checks`` (OK when there are none)."""
    return max((c.level for c in checks), default=Level.OK)


def rate_check(topic: str, receive_times: Sequence[float], listened_s: float, hint: str) -> Check:
    """Message rate on ``topic`` from its arrival times (s); silence is an ERROR whose reason ends with ``hint``
    (which option or parameter names the topic)."""
    n = len(receive_times)
    if n == 0:
        return Check("rate", topic, Level.ERROR, f"silent: no message in {listened_s:.1f} s; {hint}", {"count": 0})
    if n == 1:
        return Check("rate", topic, Level.WARN, f"one message in {listened_s:.1f} s: is the sensor publishing at "
                     f"its rate, or only latched?", {"count": 1})
    span = float(receive_times[-1] - receive_times[0])
    hz = (n - 1) / span if span > 0 else float("inf")
    return Check("rate", topic, Level.OK, f"{hz:.1f} Hz ({n} messages)", {"count": n, "hz": hz})


def stamp_check(topic: str, stamps: Sequence[float], receive_times: Sequence[float], stale_s: float) -> Optional[Check]:
    """Stamps against the local clock at arrival: zero, in the future, older than ``stale_s`` (the node's
    ``diag.stale_timeout``) or going back; None when nothing arrived."""
    if not stamps:
        return None
    s, r = np.asarray(stamps, dtype=np.float64), np.asarray(receive_times, dtype=np.float64)
    age = r - s
    values = {"median_age_s": float(np.median(age)), "min_age_s": float(age.min()), "max_age_s": float(age.max())}
    if np.any(s <= 0.0):
        return Check("stamps", topic, Level.ERROR, "zero or negative header stamps: the driver does not stamp its "
                     "messages (the node rejects negative stamps and cannot synchronise zero ones)", values)
    if np.any(np.diff(s) <= 0.0):
        return Check("stamps", topic, Level.WARN, "stamps repeat or go back: the node rejects out-of-order messages "
                     "(a bag loop needs a step back beyond sync.reset_threshold)", values)
    if -age.min() > FUTURE_TOLERANCE_S:
        return Check("stamps", topic, Level.WARN, f"stamps up to {-age.min():.3f} s in the future of the local clock: "
                     f"synchronise the sensor clock (PTP/chrony)", values)
    if np.median(age) > stale_s:
        return Check("stamps", topic, Level.WARN, f"stamps {np.median(age):.2f} s behind the local clock on arrival "
                     f"(more than diag.stale_timeout {stale_s:g} s): a replayed bag needs use_sim_time and --clock, "
                     f"else synchronise the sensor clock", values)
    return Check("stamps", topic, Level.OK, f"age on arrival median {values['median_age_s'] * 1e3:.0f} ms, max "
                 f"{values['max_age_s'] * 1e3:.0f} ms", values)


def frame_check(topic: str, frame_ids: Sequence[str]) -> Optional[Check]:
    """The header frame ids seen on ``topic``: empty is an ERROR (no tf possible), several a WARN; None when
    nothing arrived."""
    seen = sorted(set(frame_ids))
    if not seen:
        return None
    if "" in seen:
        return Check("frame_id", topic, Level.ERROR, "empty header.frame_id: set the driver's frame_id parameter (tf "
                     "needs it for the extrinsics)", {"frame_ids": seen})
    if len(seen) > 1:
        return Check("frame_id", topic, Level.WARN, f"several frame ids {seen}: one sensor, one frame",
                     {"frame_ids": seen})
    return Check("frame_id", topic, Level.OK, seen[0], {"frame_ids": seen})


def image_check(topic: str, encoding: str, size: Optional[tuple[int, int]], error: Optional[str]) -> Check:
    """Whether the latest image on ``topic`` decodes as the node decodes it (``error`` is the conversion's
    reason, None when it decoded to ``size`` (H, W))."""
    if error is not None or size is None:
        return Check("image", topic, Level.ERROR, f"{error or 'not decodable'}: the node masks this camera; publish "
                     "an encoding it decodes (or JPEG/PNG with --compressed / input.compressed_images)",
                     {"encoding": encoding})
    return Check("image", topic, Level.OK, f"{encoding} {size[1]}x{size[0]}",
                 {"encoding": encoding, "width": size[1], "height": size[0]})


def cloud_fields_check(topic: str, fields: Sequence[str], error: Optional[str]) -> Check:
    """The latest cloud's point fields: not decodable (``error``) is an ERROR, no intensity a WARN."""
    values = {"fields": list(fields)}
    if error is not None:
        return Check("fields", topic, Level.ERROR, f"{error}: the node rejects these clouds", values)
    if "intensity" not in fields:
        return Check("fields", topic, Level.WARN, f"no intensity field (fields: {', '.join(fields)}): the model gets "
                     f"zeros where it was trained on 0..255 intensities", values)
    return Check("fields", topic, Level.OK, ", ".join(fields), values)


def shared_memory_check(path: str, total_bytes: int, free_bytes: int, fastdds_bytes: int,
                        fastdds_files: int) -> Check:
    """Room in the filesystem Fast DDS maps its shared-memory segments from: a ROS process killed with SIGKILL (or
    by the OOM killer) leaves its segments there until reboot, counted as used memory; WARN below
    :data:`SHM_FREE_WARN` free, naming how much Fast DDS files hold."""
    gib = 1024.0 ** 3
    values = {"total_gib": total_bytes / gib, "free_gib": free_bytes / gib, "fastdds_gib": fastdds_bytes / gib,
              "fastdds_files": fastdds_files}
    measured = (f"{free_bytes / gib:.1f} GiB free of {total_bytes / gib:.1f} GiB; {fastdds_files} Fast DDS files "
                f"hold {fastdds_bytes / gib:.2f} GiB")
    if total_bytes > 0 and free_bytes < SHM_FREE_WARN * total_bytes:
        return Check("shared_memory", path, Level.WARN, f"{measured}: segments of killed ROS processes stay until "
                     "reboot and large images need room for new ones; `fastdds shm clean` removes those of dead "
                     "processes (in a container, also raise its --shm-size)", values)
    return Check("shared_memory", path, Level.OK, measured, values)


def intensity_check(topic: str, intensity: np.ndarray, scale: float) -> Check:
    """The intensity range against ``input.intensity_scale``: the model was trained on 0..255."""
    i = np.asarray(intensity, dtype=np.float64)
    if i.size == 0:
        return Check("intensity", topic, Level.WARN, "the latest cloud has no points")
    lo, hi = float(i.min()), float(i.max())
    values = {"min": lo, "max": hi, "intensity_scale": scale}
    if hi <= 0.0:
        return Check("intensity", topic, Level.WARN, "every intensity is 0: the driver does not fill the intensity "
                     "field", values)
    if hi <= 1.0 and hi * scale <= 1.0:
        return Check("intensity", topic, Level.WARN, f"intensity range {lo:g}..{hi:g} (max <= 1): the cloud is 0..1; "
                     f"set input.intensity_scale: 255.0 (now {scale:g})", values)
    if hi * scale > INTENSITY_CEILING:
        return Check("intensity", topic, Level.WARN, f"intensity up to {hi:g} x input.intensity_scale {scale:g} = "
                     f"{hi * scale:g}, beyond the model's 0..255: set input.intensity_scale to {255.0 / hi:.4g}",
                     values)
    return Check("intensity", topic, Level.OK, f"{lo:g}..{hi:g} x input.intensity_scale {scale:g}", values)


def camera_info_check(topic: str, K: np.ndarray, size: tuple[int, int], D: np.ndarray, distortion_model: str,
                      frame_id: str, rectified: bool, image_frame: Optional[str] = None,
                      image_size: Optional[tuple[int, int]] = None) -> Check:
    """A CameraInfo as the node will use it: K sane, size (H, W) > 0, the distortion model undistortable (raw
    images), frame_id non-empty and equal to the image's, size equal to the image's. Any failure is an ERROR."""
    values = {"frame_id": frame_id, "width": size[1], "height": size[0], "distortion_model": distortion_model}
    problems = []
    if size[0] <= 0 or size[1] <= 0:
        problems.append(f"image size {size[1]}x{size[0]} is not positive")
    reason = validate_intrinsics(K, size if not problems else None)
    if reason is not None:
        problems.append(reason)
    if not rectified:
        ignored = ignored_distortion(D, distortion_model)
        if ignored is not None:
            problems.append(ignored)
        elif distortion_model not in DISTORTION_MODELS and np.any(D):
            problems.append(f"unknown distortion model {distortion_model!r}")
    if not frame_id:
        problems.append("empty frame_id (the optical frame is needed for tf)")
    elif image_frame is not None and image_frame != frame_id:
        problems.append(f"frame_id {frame_id!r} differs from the image's {image_frame!r}")
    if image_size is not None and tuple(image_size) != tuple(size):
        problems.append(f"size {size[1]}x{size[0]} differs from the image's {image_size[1]}x{image_size[0]} (the node "
                        f"rejects those images)")
    if problems:
        return Check("camera_info", topic, Level.ERROR, "; ".join(problems) + ": fix the camera driver's calibration",
                     values)
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    return Check("camera_info", topic, Level.OK, f"fx {K[0, 0]:.1f}, fy {K[1, 1]:.1f}, {size[1]}x{size[0]}, "
                 f"{distortion_model or 'no distortion model'}, frame {frame_id}", values)


def sync_check(camera: int, topic: str, cloud_stamps: Sequence[float], cloud_receive: Sequence[float],
               image_stamps: Sequence[float], image_receive: Sequence[float], offset: float,
               max_delay: float) -> Optional[Check]:
    """This camera's stamps against the LiDAR's, with ``sync.camera_offsets[i]`` and ``sync.max_camera_lidar_delay``.

    Two measures: the median and max |dt| between each cloud and the camera's nearest image (clouds within the
    images' time span and outside gaps of dropped images, :data:`DROP_GAP`; WARN when more than
    :data:`MASKED_SHARE_WARN` of at least :data:`MIN_SYNC_CLOUDS` would have the camera masked), and the
    stamp offset relative to arrival (smallest image age minus smallest cloud age on arrival): a periodic camera whose
    stamps are shifted still has a near image for every cloud, but the node would fuse the wrong exposure, so a
    shift beyond the delay warns too. None when there is nothing to compare.
    """
    clouds = np.asarray(cloud_stamps, dtype=np.float64)
    images = np.sort(np.asarray(image_stamps, dtype=np.float64)) - offset
    if clouds.size == 0 or images.size == 0:
        return None
    # The smallest age on arrival is the stamp's offset plus the bare transport time; queueing only adds to it.
    image_age = np.asarray(image_receive, dtype=np.float64) - np.asarray(image_stamps, dtype=np.float64)
    shift = float(np.min(np.asarray(cloud_receive, dtype=np.float64) - clouds) - np.min(image_age)) - offset
    clouds = clouds[(clouds >= images[0] - max_delay) & (clouds <= images[-1] + max_delay)]
    if clouds.size == 0:
        return Check("sync", topic, Level.WARN, f"no cloud within {max_delay:g} s of the images' stamps "
                     f"({images[0] + offset:.3f}..{images[-1] + offset:.3f} s): the camera and LiDAR clocks disagree")
    j = np.clip(np.searchsorted(images, clouds), 1, max(images.size - 1, 1))
    before, after = images[j - 1], images[np.minimum(j, images.size - 1)]
    if images.size > 2:  # clouds in a gap left by dropped images measure the drops (see the rate), not the timing
        kept = after - before <= DROP_GAP * np.percentile(np.diff(images), 10)
        clouds, before, after = clouds[kept], before[kept], after[kept]
    if clouds.size == 0:
        return None
    dt = np.where(np.abs(before - clouds) <= np.abs(after - clouds), before - clouds, after - clouds)
    adt = np.abs(dt)
    masked = float(np.mean(adt > max_delay))
    values = {"median_abs_dt_ms": float(np.median(adt)) * 1e3, "max_abs_dt_ms": float(adt.max()) * 1e3,
              "median_dt_ms": float(np.median(dt)) * 1e3, "masked_share": masked, "clouds": int(clouds.size),
              "stamp_shift_ms": shift * 1e3}
    measured = (f"nearest image |dt| median {values['median_abs_dt_ms']:.0f} ms, max {values['max_abs_dt_ms']:.0f} ms "
                f"over {clouds.size} clouds; stamps {shift * 1e3:+.0f} ms vs the LiDAR's on arrival")
    if masked > MASKED_SHARE_WARN and clouds.size >= MIN_SYNC_CLOUDS:
        return Check("sync", topic, Level.WARN, f"{measured}: {masked:.0%} of frames beyond "
                     f"sync.max_camera_lidar_delay {max_delay:g} s would mask camera{camera}; fix the stamps or set "
                     f"sync.camera_offsets[{camera}] to {offset + float(np.median(dt)):.3f}", values)
    if shift > max_delay:
        return Check("sync", topic, Level.WARN, f"{measured}: beyond sync.max_camera_lidar_delay {max_delay:g} s, the "
                     f"node would fuse exposures {shift * 1e3:.0f} ms older than the cloud (images stamped on "
                     f"arrival?); fix the driver's stamps or set sync.camera_offsets[{camera}] to "
                     f"{offset + shift:.3f}", values)
    if shift < -max_delay:  # slow transport looks exactly like early stamps: both are named
        return Check("sync", topic, Level.WARN, f"{measured}: the images reach this process {-shift * 1e3:.0f} ms "
                     f"later after their stamps than the clouds, beyond sync.max_camera_lidar_delay {max_delay:g} s. Either "
                     f"they travel slowly (large raw images over DDS on a loaded host: compressed images or a "
                     f"shared-memory transport help, and sync.wait_timeout must cover it) or their stamps are early: "
                     f"then set sync.camera_offsets[{camera}] to {offset + shift:.3f}", values)
    return Check("sync", topic, Level.OK, measured, values)


def extrinsic_check(camera_frame: str, lidar_frame: str, matrix: Optional[np.ndarray], reason: str = "",
                    source: str = "") -> Check:
    """Whether tf gives ``T(camera_frame <- lidar_frame)``; missing is an ERROR naming both frames."""
    subject = f"{lidar_frame} -> {camera_frame}"
    if matrix is None:
        return Check("tf", subject, Level.ERROR, f"no transform from {lidar_frame} to {camera_frame} ({reason}): "
                     f"publish the camera extrinsic on /tf_static (robot_state_publisher or "
                     f"static_transform_publisher)")
    t = np.asarray(matrix)[:3, 3]
    return Check("tf", subject, Level.OK, f"{source or 'found'}; LiDAR at ({t[0]:.2f}, {t[1]:.2f}, {t[2]:.2f}) m "
                 f"in the optical frame", {"T_camera_lidar": np.asarray(matrix).tolist()})


def fixed_frame_check(fixed_frame: str, lidar_frame: str, at_stamp: Optional[np.ndarray], latest: Optional[np.ndarray],
                      reason: str = "") -> Check:
    """The LiDAR's pose in ``tf.fixed_frame`` at the cloud stamp (sweep motion compensation and time-corrected
    extrinsics need it); only a latest pose is a WARN, none an ERROR."""
    subject = f"{fixed_frame} -> {lidar_frame}"
    if not fixed_frame:
        return Check("fixed_frame", "tf.fixed_frame", Level.OK, "empty: sweeps are not motion-compensated and "
                     "extrinsics are static")
    if at_stamp is not None:
        return Check("fixed_frame", subject, Level.OK, "pose found at the cloud stamp")
    if latest is not None:
        return Check("fixed_frame", subject, Level.WARN, f"a pose exists but not at the cloud stamps ({reason}): "
                     f"publish {fixed_frame} -> ... on /tf at the sensor rate, or stamp it like the sensors")
    return Check("fixed_frame", subject, Level.ERROR, f"no transform from {lidar_frame} to {fixed_frame} ({reason}): "
                 f"publish the odometry on /tf or set tf.fixed_frame (empty disables motion compensation)")


def ground_up_axis(points: np.ndarray) -> tuple[str, float]:
    """The signed axis ('+z', '-y', ...) of the cloud's frame that points away from the ground, and the share of
    points on the ground layer: the ground is the flat layer at the low end of that axis holding the most points."""
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    best, share = "+z", 0.0
    for k, name in enumerate(_AXIS_NAMES):
        for sign, label in ((1.0, "+"), (-1.0, "-")):
            h = sign * xyz[:, k]
            floor = np.percentile(h, 5.0)
            s = float(np.mean(np.abs(h - floor) < GROUND_LAYER_M))
            if s > share:
                best, share = label + name, s
    return best, share


def forward_axis(T_cam_lidar: np.ndarray) -> tuple[str, np.ndarray]:
    """The signed LiDAR axis the camera's optical axis is closest to, and that optical axis in the LiDAR frame."""
    axis = np.asarray(T_cam_lidar, dtype=np.float64)[2, :3]  # R_lidar_cam @ (0, 0, 1) = row 2 of R_cam_lidar
    k = int(np.argmax(np.abs(axis)))
    return ("+" if axis[k] > 0 else "-") + _AXIS_NAMES[k], axis


def axes_check(topic: str, configured: str, points: np.ndarray, T_front_lidar: Optional[np.ndarray],
               front_frame: str) -> Check:
    """``input.lidar_axes`` against the evidence: the ground must be below along -z (both conventions are z up),
    and the front camera's optical axis must lie along the convention's forward axis (+x for rep103, +y for
    nuscenes_lidar_top)."""
    values: dict[str, Any] = {"configured": configured}
    if len(points):
        up, share = ground_up_axis(points)
        values.update(up_axis=up, ground_share=share)
        if up != "+z":
            down = ("-" if up[0] == "+" else "+") + up[1]
            return Check("axes", topic, Level.WARN, f"the ground lies along {down} "
                         f"of the cloud's frame ({share:.0%} of points), so its z does not point up: neither rep103 "
                         f"nor nuscenes_lidar_top; fix the driver's frame (input.lidar_axes assumes z up)", values)
    if T_front_lidar is None:
        return Check("axes", topic, Level.WARN, f"cannot check input.lidar_axes ({configured}): no tf for the front "
                     f"camera {front_frame or '(no camera_info)'}", values)
    forward, axis = forward_axis(T_front_lidar)
    values.update(forward_axis=forward, front_optical_axis=axis.tolist())
    suspected = next((name for name, axis_name in FORWARD_AXIS.items() if axis_name == forward), None)
    values["suspected"] = suspected
    looks = f"the front camera ({front_frame}) looks along {forward} of the cloud's frame"
    if suspected is None:
        return Check("axes", topic, Level.WARN, f"{looks}: neither rep103 (+x forward) nor nuscenes_lidar_top (+y "
                     f"forward); is camera0 the front camera (--camera-namespaces order)?", values)
    if suspected != configured:
        return Check("axes", topic, Level.WARN, f"{looks}, so the cloud is {suspected}: set input.lidar_axes: "
                     f"{suspected} (now {configured})", values)
    return Check("axes", topic, Level.OK, f"{configured}: z up (ground {values.get('ground_share', 0.0):.0%} of "
                 f"points), front camera along {forward}", values)


def project_points(points: np.ndarray, T_cam_lidar: np.ndarray, K: np.ndarray, size: tuple[int, int],
                   lidar_axes: str) -> tuple[np.ndarray, np.ndarray]:
    """Pixels [M, 2] and depths [M] of the cloud's points that land in an image of ``size`` (H, W), with the
    node's projection: the cloud rotated into the model frame, then ``lidar2img`` with the full-resolution K."""
    K4 = np.eye(4)
    K4[:3, :3] = K
    P = lidar2img(K4, T_cam_lidar, lidar_axes)
    xyz = points_to_model(np.asarray(points, dtype=np.float32)[:, :3], lidar_axes).astype(np.float64)
    h = xyz @ P[:3, :3].T + P[:3, 3]
    depth = h[:, 2]
    front = depth > 1e-3
    uv = h[front, :2] / depth[front, None]
    depth = depth[front]
    height, width = size
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    return uv[inside], depth[inside]


def draw_overlay(image: np.ndarray, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """A BGR copy of ``image`` with the points drawn as dots coloured by depth (TURBO, red near, blue at
    :data:`OVERLAY_MAX_DEPTH_M`), far points first so that near ones stay on top."""
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    if len(depth) == 0:
        return out
    scale = np.clip(255.0 * (1.0 - depth / OVERLAY_MAX_DEPTH_M), 0, 255).astype(np.uint8)
    colors = cv2.applyColorMap(scale.reshape(-1, 1), cv2.COLORMAP_TURBO).reshape(-1, 3)
    for k in np.argsort(-depth):
        u, v = np.round(uv[k]).astype(int)
        cv2.circle(out, (int(u), int(v)), OVERLAY_POINT_RADIUS, tuple(int(c) for c in colors[k]), -1, cv2.LINE_8)
    return out


def overlay_check(topic: str, num_points: int, path: str, dt_s: float, extrinsic_source: str) -> Check:
    """How many LiDAR points landed in this camera's overlay; none is a WARN (wrong extrinsic or axes)."""
    values = {"points": num_points, "path": path, "image_minus_cloud_s": dt_s, "extrinsic": extrinsic_source}
    if num_points == 0:
        return Check("overlay", topic, Level.WARN, f"no LiDAR point lands in the image: check the extrinsic and "
                     f"input.lidar_axes ({path})", values)
    return Check("overlay", topic, Level.OK, f"{num_points} points projected ({path})", values)
