"""numpy → ROS messages: PointCloud2 from structured arrays, Image, CameraInfo, TransformStamped, stamps, and the
per-query AQR weight cloud.

Buffers are copied once from contiguous arrays (``array.frombytes``), never element by element, so a 6-camera
1600x900 frame converts in milliseconds. The inverse direction lives in :mod:`aqr_ros.ros.from_msg`.
"""

from __future__ import annotations

import array
import math

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import TransformStamped
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from aqr_ros.pipeline.rotations import quaternion_from_matrix

#: numpy scalar kind+size → PointField datatype.
_POINTFIELD_DATATYPES = {
    "i1": PointField.INT8, "u1": PointField.UINT8, "i2": PointField.INT16, "u2": PointField.UINT16,
    "i4": PointField.INT32, "u4": PointField.UINT32, "f4": PointField.FLOAT32, "f8": PointField.FLOAT64,
}

#: Image encoding → channels (all 8-bit).
IMAGE_ENCODINGS = {"mono8": 1, "bgr8": 3, "rgb8": 3, "bgra8": 4, "rgba8": 4}

Stamp = Time | float

#: Point layout of the AQR weight cloud (``~/debug/aqr_weights``): a query's reference point (m), its LiDAR and
#: camera weight, and its index (the ``id`` of its detections); padded to 24 bytes so every float stays aligned.
QUERY_WEIGHTS_DTYPE = np.dtype({
    "names": ["x", "y", "z", "lidar_weight", "camera_weight", "query"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<f4", "<u2"],
    "offsets": [0, 4, 8, 12, 16, 20],
    "itemsize": 24,
})


def stamp_from_seconds(seconds: float) -> Time:
    """builtin_interfaces/Time for ``seconds`` since the epoch, rounded to the nearest nanosecond."""
    sec = math.floor(seconds)
    nanosec = round((seconds - sec) * 1e9)
    if nanosec >= 1_000_000_000:
        sec, nanosec = sec + 1, nanosec - 1_000_000_000
    return Time(sec=int(sec), nanosec=int(nanosec))


def seconds_from_stamp(stamp: Time) -> float:
    """Seconds since the epoch of a builtin_interfaces/Time."""
    return stamp.sec + stamp.nanosec * 1e-9


def nanoseconds_from_stamp(stamp: Time) -> int:
    """Exact integer nanoseconds of a builtin_interfaces/Time (stamps compared or used as keys)."""
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def stamp_from_nanoseconds(ns: int) -> Time:
    """builtin_interfaces/Time of integer nanoseconds since the epoch."""
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(frame_id: str, stamp: Stamp) -> Header:
    return Header(frame_id=frame_id, stamp=stamp if isinstance(stamp, Time) else stamp_from_seconds(stamp))


def _bytes_of(buffer: np.ndarray) -> array.array:
    """The bytes of a C-contiguous array as the ``array('B')`` rclpy stores for uint8[] fields (one copy)."""
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(buffer).view(np.uint8).reshape(-1).data)
    return data


def _point_fields(dtype: np.dtype) -> list[PointField]:
    """One PointField per dtype field (name, offset, datatype, count), in offset order."""
    fields = []
    for name, (field_dtype, offset, *_) in sorted(dtype.fields.items(), key=lambda item: item[1][1]):
        base, shape = (field_dtype.subdtype if field_dtype.subdtype is not None else (field_dtype, ()))
        code = f"{base.kind}{base.itemsize}"
        if code not in _POINTFIELD_DATATYPES:
            raise ValueError(f"field {name!r} has dtype {base} with no PointField datatype")
        fields.append(PointField(name=name, offset=offset, datatype=_POINTFIELD_DATATYPES[code],
                                 count=int(np.prod(shape, dtype=np.int64))))
    return fields


def pointcloud2_from_structured(arr: np.ndarray, frame_id: str, stamp: Stamp,
                                point_step: int | None = None) -> PointCloud2:
    """PointCloud2 with one field per field of the structured array ``arr`` (1-D, or 2-D for an organized cloud).

    Offsets follow the dtype (any layout); data is little endian. ``point_step`` larger than the dtype's itemsize
    appends zero padding to every point. ``is_dense`` is true when no floating-point value is NaN or infinite.
    """
    arr = np.asarray(arr)
    if arr.dtype.fields is None:
        raise ValueError(f"expected a structured array, got dtype {arr.dtype}")
    if arr.ndim not in (1, 2):
        raise ValueError(f"expected a 1-D or 2-D (organized) array, got shape {arr.shape}")
    little = arr.dtype.newbyteorder("<")
    arr = np.ascontiguousarray(arr.astype(little, copy=False))
    itemsize = little.itemsize
    step = itemsize if point_step is None else point_step
    if step < itemsize:
        raise ValueError(f"point_step {step} is smaller than the dtype's {itemsize} bytes")
    height, width = (1, arr.shape[0]) if arr.ndim == 1 else arr.shape
    raw = arr.reshape(-1).view(np.uint8).reshape(-1, itemsize)
    if step > itemsize:
        padded = np.zeros((raw.shape[0], step), dtype=np.uint8)
        padded[:, :itemsize] = raw
        raw = padded
    is_dense = all(bool(np.isfinite(arr[name]).all()) for name in little.names if little[name].base.kind == "f")
    return PointCloud2(header=_header(frame_id, stamp), height=height, width=width, fields=_point_fields(little),
                       is_bigendian=False, point_step=step, row_step=step * width, data=_bytes_of(raw),
                       is_dense=is_dense)


def query_weights_cloud(points: np.ndarray, lidar_weights: np.ndarray, camera_weights: np.ndarray,
                        frame_id: str, stamp: Stamp) -> PointCloud2:
    """PointCloud2 of :data:`QUERY_WEIGHTS_DTYPE` with one point per query: row q is query q.

    ``points`` is [Q, 3] (m, in ``frame_id``), the weights are [Q]; at most 65 536 queries (uint16 index).
    """
    points = np.asarray(points).reshape(-1, 3)
    num = len(points)
    if np.shape(lidar_weights) != (num,) or np.shape(camera_weights) != (num,):
        raise ValueError(f"expected {num} LiDAR and camera weights, got shapes {np.shape(lidar_weights)} and "
                         f"{np.shape(camera_weights)}")
    if num > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"{num} queries do not fit the uint16 query field")
    cloud = np.zeros(num, dtype=QUERY_WEIGHTS_DTYPE)
    cloud["x"], cloud["y"], cloud["z"] = points[:, 0], points[:, 1], points[:, 2]
    cloud["lidar_weight"], cloud["camera_weight"] = lidar_weights, camera_weights
    cloud["query"] = np.arange(num)
    return pointcloud2_from_structured(cloud, frame_id, stamp)


def image_from_array(img: np.ndarray, encoding: str, frame_id: str, stamp: Stamp) -> Image:
    """Image from an 8-bit ``[H, W]`` or ``[H, W, C]`` array whose channels match ``encoding`` (see IMAGE_ENCODINGS)."""
    if encoding not in IMAGE_ENCODINGS:
        raise ValueError(f"unsupported encoding {encoding!r} (supported: {', '.join(IMAGE_ENCODINGS)})")
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise ValueError(f"{encoding} needs a uint8 array, got {img.dtype}")
    channels = IMAGE_ENCODINGS[encoding]
    shape_ok = (img.ndim == 3 and img.shape[2] == channels) or (img.ndim == 2 and channels == 1)
    if not shape_ok:
        raise ValueError(f"{encoding} needs shape [H, W{', ' + str(channels) if channels > 1 else ''}], "
                         f"got {img.shape}")
    height, width = img.shape[:2]
    return Image(header=_header(frame_id, stamp), height=height, width=width, encoding=encoding,
                 is_bigendian=0, step=width * channels, data=_bytes_of(img))


def camera_info_msg(K: np.ndarray, width: int, height: int, frame_id: str, stamp: Stamp,
                    D: np.ndarray | None = None, R: np.ndarray | None = None, P: np.ndarray | None = None,
                    distortion_model: str = "plumb_bob") -> CameraInfo:
    """CameraInfo from a 3x3 ``K``; D defaults to five zeros, R to identity, P to ``[K | 0]``."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    D = np.zeros(5) if D is None else np.asarray(D, dtype=np.float64).reshape(-1)
    R = np.eye(3) if R is None else np.asarray(R, dtype=np.float64).reshape(3, 3)
    if P is None:
        P = np.zeros((3, 4))
        P[:, :3] = K
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    return CameraInfo(header=_header(frame_id, stamp), width=int(width), height=int(height),
                      distortion_model=distortion_model, d=D.tolist(), k=K.reshape(-1), r=R.reshape(-1),
                      p=P.reshape(-1))


def transform_stamped(T: np.ndarray, parent: str, child: str, stamp: Stamp) -> TransformStamped:
    """TransformStamped of the 4x4 rigid ``T`` = T_parent_child (maps child-frame points into the parent frame)."""
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"expected a 4x4 transform, got shape {T.shape}")
    msg = TransformStamped(header=_header(parent, stamp), child_frame_id=child)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        float(v) for v in T[:3, 3])
    q = quaternion_from_matrix(T[:3, :3])
    rotation = msg.transform.rotation
    rotation.x, rotation.y, rotation.z, rotation.w = (float(v) for v in q)
    return msg


def tf_message_type() -> type:
    """tf2_msgs/TFMessage, imported on first use: PyPI has no tf2_msgs wheel (the test environment builds it)."""
    try:
        from tf2_msgs.msg import TFMessage
    except ImportError as exc:
        raise RuntimeError("tf2_msgs is not importable: on a ROS 2 install source its setup file; in the test "
                           "environment run `source scripts/env.sh` (scripts/setup.sh builds tf2_msgs)") from exc
    return TFMessage
