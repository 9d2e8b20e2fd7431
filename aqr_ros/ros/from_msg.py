"""sensor_msgs → numpy: PointCloud2 of any layout, raw and compressed images, CameraInfo intrinsics.

Message buffers are read through ``np.frombuffer``-style views (structured dtypes with explicit offsets and
strides), never element by element. Anything that cannot be converted raises :class:`ConversionError`
whose message is the reason, ready for a warning that names the topic.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from aqr_ros.pipeline.undistort import LensCalibration


class ConversionError(ValueError):
    """A message cannot be converted; ``str(error)`` says why."""


#: PointField datatype → numpy scalar type code (byte order added per message).
_POINTFIELD_TYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1",
    PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4",
    PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}

_REQUIRED_FIELDS = ("x", "y", "z")


@dataclass(frozen=True)
class CloudArray:
    """Points decoded from a PointCloud2, with what was dropped or missing."""

    #: [N, len(fields)] float32 in the requested field order; only finite rows.
    points: np.ndarray
    #: Points in the message (width * height) before dropping non-finite ones.
    num_input: int
    #: Points dropped because a requested value was NaN or infinite.
    num_nonfinite: int
    #: Requested optional fields absent from the message (filled with zeros).
    missing_fields: tuple[str, ...]


def pointcloud2_to_array(msg: PointCloud2, fields: Sequence[str] = ("x", "y", "z", "intensity")) -> CloudArray:
    """Decode the requested ``fields`` of any PointCloud2 layout (offsets, padding, endianness, organized clouds).

    x, y and z must be present; other missing fields become zeros and are listed in ``missing_fields``.
    Rows with a non-finite value are dropped and counted.
    """
    for name in _REQUIRED_FIELDS:
        if name not in fields:
            raise ConversionError(f"requested fields {tuple(fields)} must include x, y and z")
    height, width, point_step, row_step = msg.height, msg.width, msg.point_step, msg.row_step
    num_input = height * width
    if num_input == 0:  # an empty sweep is not malformed, whatever its fields say
        return CloudArray(np.zeros((0, len(fields)), dtype=np.float32), 0, 0, ())
    available = {}
    for field in msg.fields:
        available.setdefault(field.name, field)
    missing_required = [name for name in _REQUIRED_FIELDS if name not in available]
    if missing_required:
        raise ConversionError(f"cloud has no field {', '.join(missing_required)} (fields: "
                              f"{', '.join(f.name for f in msg.fields) or 'none'})")
    present = [name for name in dict.fromkeys(fields) if name in available]
    missing = tuple(name for name in fields if name not in available)
    order = ">" if msg.is_bigendian else "<"
    formats, offsets = [], []
    for name in present:
        field = available[name]
        code = _POINTFIELD_TYPES.get(field.datatype)
        if code is None:
            raise ConversionError(f"field {name!r} has unknown PointField datatype {field.datatype}")
        if field.offset + np.dtype(code).itemsize > point_step:
            raise ConversionError(f"field {name!r} at offset {field.offset} does not fit in point_step {point_step}")
        formats.append(order + code)
        offsets.append(field.offset)
    if row_step < width * point_step:
        raise ConversionError(f"row_step {row_step} is smaller than width {width} x point_step {point_step}")
    data = msg.data
    if len(data) < row_step * height:
        raise ConversionError(f"truncated data: {len(data)} bytes, expected row_step {row_step} x height {height}")
    point_dtype = np.dtype({"names": present, "formats": formats, "offsets": offsets, "itemsize": point_step})
    grid = np.ndarray((height, width), dtype=point_dtype, buffer=data, strides=(row_step, point_step))
    points = np.zeros((num_input, len(fields)), dtype=np.float32)
    organized = points.reshape(height, width, len(fields))
    for column, name in enumerate(fields):
        if name in available:
            organized[:, :, column] = grid[name]
    finite = np.isfinite(points).all(axis=1)
    num_nonfinite = num_input - int(np.count_nonzero(finite))
    if num_nonfinite:
        points = points[finite]
    return CloudArray(points, num_input, num_nonfinite, missing)


def _converted(code: int) -> Callable[[np.ndarray], np.ndarray]:
    """OpenCV's ``code`` conversion of the HxWxC buffer to BGR, into a new array."""
    return lambda a: cv2.cvtColor(np.ascontiguousarray(a), code)


#: Raw image encodings → (bytes per pixel, HxWxC buffer to BGR). The 8-bit RGB family and mono8 are views; packed
#: YUV 4:2:2 (ROS ``yuv422`` is UYVY, ``yuv422_yuy2`` YUYV) and 8-bit Bayer mosaics, as drivers publish them
#: straight from the sensor, are converted. OpenCV names a Bayer pattern after the second row's first two pixels,
#: so ROS ``bayer_rggb8`` is OpenCV's BayerBG.
_IMAGE_ENCODINGS = {
    "bgr8": (3, lambda a: a),
    "rgb8": (3, lambda a: a[:, :, ::-1]),
    "bgra8": (4, lambda a: a[:, :, :3]),
    "rgba8": (4, lambda a: a[:, :, 2::-1]),
    "mono8": (1, lambda a: np.broadcast_to(a, (*a.shape[:2], 3))),
    "yuv422": (2, _converted(cv2.COLOR_YUV2BGR_UYVY)),
    "uyvy": (2, _converted(cv2.COLOR_YUV2BGR_UYVY)),
    "yuv422_yuy2": (2, _converted(cv2.COLOR_YUV2BGR_YUYV)),
    "yuyv": (2, _converted(cv2.COLOR_YUV2BGR_YUYV)),
    "bayer_rggb8": (1, _converted(cv2.COLOR_BayerBG2BGR)),
    "bayer_bggr8": (1, _converted(cv2.COLOR_BayerRG2BGR)),
    "bayer_gbrg8": (1, _converted(cv2.COLOR_BayerGR2BGR)),
    "bayer_grbg8": (1, _converted(cv2.COLOR_BayerGB2BGR)),
}


def image_to_bgr(msg: Image) -> np.ndarray:
    """HxWx3 uint8 BGR of an image in any encoding of ``_IMAGE_ENCODINGS``.

    rgb8, bgr8, rgba8, bgra8 and mono8 give a view without a copy (strides honour ``step``) that may be
    non-contiguous or read-only (mono8 is a broadcast view): copy before writing into it. YUV 4:2:2 and Bayer
    images are converted into a new array.
    """
    encoding = msg.encoding.lower()
    if encoding not in _IMAGE_ENCODINGS:
        raise ConversionError(f"unsupported encoding {msg.encoding!r} (supported: {', '.join(_IMAGE_ENCODINGS)})")
    channels, to_bgr = _IMAGE_ENCODINGS[encoding]
    height, width, step = msg.height, msg.width, msg.step
    if height == 0 or width == 0:
        raise ConversionError(f"empty image ({width}x{height})")
    if step < width * channels:
        raise ConversionError(f"step {step} is smaller than width {width} x {channels} bytes for {encoding}")
    if len(msg.data) != step * height:
        raise ConversionError(f"data has {len(msg.data)} bytes, expected step {step} x height {height}")
    bayer = encoding.startswith("bayer")
    if (channels == 2 or bayer) and width % 2 or bayer and height % 2:  # 2x1 YUV pairs, 2x2 Bayer cells
        raise ConversionError(f"{encoding} needs an even {'width' if width % 2 else 'height'} ({width}x{height})")
    pixels = np.ndarray((height, width, channels), dtype=np.uint8, buffer=msg.data, strides=(step, channels, 1))
    return to_bgr(pixels)


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """Decode a JPEG or PNG CompressedImage into HxWx3 uint8 BGR."""
    fmt = msg.format.lower()
    if fmt and not any(kind in fmt for kind in ("jpeg", "jpg", "png")):
        raise ConversionError(f"unsupported compressed format {msg.format!r} (supported: jpeg, png)")
    if len(msg.data) == 0:
        raise ConversionError("compressed image has no data")
    image = cv2.imdecode(np.frombuffer(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ConversionError(f"cannot decode the {msg.format or 'compressed'} image ({len(msg.data)} bytes)")
    return image


def camera_info_intrinsics(msg: CameraInfo) -> tuple[np.ndarray, tuple[int, int], np.ndarray, str]:
    """(K 3x3 float64, (height, width), distortion coefficients D, distortion model name) of a CameraInfo."""
    K = np.array(msg.k, dtype=np.float64).reshape(3, 3)
    return K, (int(msg.height), int(msg.width)), np.array(msg.d, dtype=np.float64), msg.distortion_model


def camera_info_lens(msg: CameraInfo, rectified: bool = False) -> LensCalibration:
    """The lens of the images a CameraInfo describes (:func:`camera_info_intrinsics` plus the 3x4 projection P).

    A driver that bins (``binning_x/y`` > 1) or crops (a non-zero ``roi``, in full-resolution pixels) publishes
    smaller images than its calibration: K and P are moved onto those images' pixels as image_geometry does.
    Distortion acts on normalised coordinates, so D is unchanged. ``rectified`` images with an ROI are refused:
    their crop lies in the rectified image, which camera_info does not give.
    """
    K, (height, width), D, model = camera_info_intrinsics(msg)
    P = np.array(msg.p, dtype=np.float64).reshape(3, 4)
    bin_x, bin_y = max(int(msg.binning_x), 1), max(int(msg.binning_y), 1)
    roi = msg.roi
    x0, y0, roi_w, roi_h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if roi_w == 0 and roi_h == 0:
        x0, y0, roi_w, roi_h = 0, 0, width, height
    elif rectified:
        raise ConversionError("an roi with rectified images (input.rectified) is not supported: publish the full "
                              "rectified image or the raw ROI images")
    elif roi_w <= 0 or roi_h <= 0 or x0 + roi_w > width or y0 + roi_h > height:
        raise ConversionError(f"roi {roi_w}x{roi_h} at ({x0}, {y0}) does not fit the {width}x{height} calibration")
    if (bin_x, bin_y, x0, y0, roi_w, roi_h) != (1, 1, 0, 0, width, height):
        to_image = np.array([[1.0 / bin_x, 0.0, -x0 / bin_x], [0.0, 1.0 / bin_y, -y0 / bin_y], [0.0, 0.0, 1.0]])
        K, P = to_image @ K, to_image @ P
        height, width = roi_h // bin_y, roi_w // bin_x
    return LensCalibration(K, D, model, (height, width), P)
