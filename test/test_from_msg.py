"""sensor_msgs → numpy conversion for every supported PointCloud2 layout and image encoding."""

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField

from aqr_ros.ros.from_msg import (
    ConversionError,
    camera_info_intrinsics,
    camera_info_lens,
    compressed_to_bgr,
    image_to_bgr,
    pointcloud2_to_array,
)

DATATYPES = {
    PointField.INT8: "i1", PointField.UINT8: "u1", PointField.INT16: "i2", PointField.UINT16: "u2",
    PointField.INT32: "i4", PointField.UINT32: "u4", PointField.FLOAT32: "f4", PointField.FLOAT64: "f8",
}


def make_cloud(
    fields: list[tuple[str, int, int]],
    values: dict[str, np.ndarray],
    point_step: int,
    height: int = 1,
    row_pad: int = 0,
    big_endian: bool = False,
) -> PointCloud2:
    """A PointCloud2 with (name, offset, datatype) fields, filled from ``values`` [height * width] each."""
    order = ">" if big_endian else "<"
    dtype = np.dtype({"names": [f[0] for f in fields], "formats": [order + DATATYPES[f[2]] for f in fields],
                      "offsets": [f[1] for f in fields], "itemsize": point_step})
    n = len(next(iter(values.values())))
    width = n // height
    rows = np.zeros((height, width * point_step + row_pad), dtype=np.uint8)
    grid = np.zeros((height, width), dtype=dtype)
    for name, column in values.items():
        grid[name] = column.reshape(height, width)
    rows[:, : width * point_step] = grid.view(np.uint8).reshape(height, -1)
    msg = PointCloud2()
    msg.height, msg.width = height, width
    msg.fields = [PointField(name=name, offset=offset, datatype=datatype, count=1) for name, offset, datatype in fields]
    msg.is_bigendian = big_endian
    msg.point_step = point_step
    msg.row_step = width * point_step + row_pad
    msg.data = rows.tobytes()
    msg.is_dense = True
    return msg


def xyz_values(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random coordinates for n points."""
    rng = np.random.default_rng(seed)
    return {axis: rng.uniform(-50, 50, n).astype(np.float32) for axis in "xyz"}


F32 = PointField.FLOAT32


def test_plain_xyzi_cloud():
    values = {**xyz_values(100), "intensity": np.linspace(0, 255, 100, dtype=np.float32)}
    msg = make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32)], values, 16)
    cloud = pointcloud2_to_array(msg)
    assert cloud.points.dtype == np.float32 and cloud.points.shape == (100, 4)
    np.testing.assert_array_equal(cloud.points, np.stack([values[k] for k in ("x", "y", "z", "intensity")], 1))
    assert cloud.num_input == 100 and cloud.num_nonfinite == 0 and cloud.missing_fields == ()


def test_velodyne_like_layout_with_padding_ring_and_time():
    values = {**xyz_values(50), "intensity": np.arange(50, dtype=np.float32),
              "ring": np.arange(50, dtype=np.float32) % 32, "time": np.linspace(-0.1, 0, 50, dtype=np.float32)}
    fields = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 16, F32),
              ("ring", 20, PointField.UINT16), ("time", 24, F32)]
    msg = make_cloud(fields, values, 32)
    cloud = pointcloud2_to_array(msg, fields=("x", "y", "z", "intensity", "time", "ring"))
    expected = np.stack([values[k] for k in ("x", "y", "z", "intensity", "time", "ring")], 1)
    np.testing.assert_allclose(cloud.points, expected, rtol=1e-7)


def test_ouster_like_layout_with_uint_fields():
    n = 64
    values = {**xyz_values(n, 1), "t": np.arange(n, dtype=np.float64) * 1000,
              "reflectivity": np.arange(n, dtype=np.float64), "intensity": np.arange(n, dtype=np.float64) * 3}
    fields = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 16, F32), ("t", 20, PointField.UINT32),
              ("reflectivity", 24, PointField.UINT16), ("ring", 26, PointField.UINT8)]
    values["ring"] = np.arange(n, dtype=np.float64) % 128
    cloud = pointcloud2_to_array(make_cloud(fields, values, 48))
    np.testing.assert_allclose(cloud.points[:, 3], values["intensity"])
    np.testing.assert_allclose(cloud.points[:, :3], np.stack([values[k] for k in "xyz"], 1))


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("datatype", sorted(DATATYPES))
def test_every_datatype_and_byte_order(datatype, big_endian):
    n = 20
    code = DATATYPES[datatype]
    intensity = np.arange(n, dtype=np.float64) * (3 if code not in ("i1", "u1") else 1) + (-5 if code[0] == "i" else 0)
    coords = np.arange(3 * n, dtype=np.float64).reshape(3, n) - 10
    if code[0] == "u":
        coords = np.abs(coords)
    values = {"x": coords[0], "y": coords[1], "z": coords[2], "intensity": intensity}
    size = np.dtype(code).itemsize
    fields = [("x", 0, datatype), ("y", size, datatype), ("z", 2 * size, datatype), ("intensity", 3 * size, datatype)]
    msg = make_cloud(fields, values, 4 * size + 3, big_endian=big_endian)
    cloud = pointcloud2_to_array(msg)
    np.testing.assert_array_equal(cloud.points, np.stack([coords[0], coords[1], coords[2], intensity], 1))


def test_float64_coordinates():
    values = {axis: np.array([1e3 + 0.125, -2.5], dtype=np.float64) for axis in "xyz"}
    fields = [("x", 0, PointField.FLOAT64), ("y", 8, PointField.FLOAT64), ("z", 16, PointField.FLOAT64)]
    cloud = pointcloud2_to_array(make_cloud(fields, values, 24))
    np.testing.assert_array_equal(cloud.points[:, 0], [1000.125, -2.5])


def test_organized_cloud_with_row_padding():
    values = {**xyz_values(4 * 6, 2), "intensity": np.arange(24, dtype=np.float32)}
    fields = [("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32)]
    msg = make_cloud(fields, values, 16, height=4, row_pad=13)
    assert msg.row_step == 6 * 16 + 13
    cloud = pointcloud2_to_array(msg)
    assert cloud.num_input == 24
    np.testing.assert_array_equal(cloud.points[:, 3], np.arange(24))
    np.testing.assert_array_equal(cloud.points[:, 0], values["x"])


def test_non_finite_points_are_dropped_and_counted():
    values = {**xyz_values(10, 3), "intensity": np.arange(10, dtype=np.float32)}
    values["x"][2] = np.nan
    values["z"][5] = np.inf
    values["intensity"][7] = -np.inf
    msg = make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32)], values, 16)
    cloud = pointcloud2_to_array(msg)
    assert cloud.num_nonfinite == 3 and cloud.num_input == 10
    np.testing.assert_array_equal(cloud.points[:, 3], [0, 1, 3, 4, 6, 8, 9])


def test_all_nan_and_empty_clouds_give_no_points():
    values = {axis: np.full(5, np.nan, dtype=np.float32) for axis in "xyz"}
    cloud = pointcloud2_to_array(make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32)], values, 12))
    assert cloud.points.shape == (0, 4) and cloud.num_nonfinite == 5
    empty = PointCloud2(fields=[PointField(name=a, offset=4 * i, datatype=F32, count=1) for i, a in enumerate("xyz")],
                        point_step=12)
    cloud = pointcloud2_to_array(empty)
    assert cloud.points.shape == (0, 4) and cloud.num_input == 0
    assert pointcloud2_to_array(PointCloud2()).points.shape == (0, 4)  # drivers publish field-less empty clouds


def test_missing_intensity_is_zero_and_reported():
    values = xyz_values(7)
    cloud = pointcloud2_to_array(make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32)], values, 12))
    np.testing.assert_array_equal(cloud.points[:, 3], 0.0)
    assert cloud.missing_fields == ("intensity",)


def test_decoded_points_do_not_alias_the_message():
    values = {**xyz_values(4), "intensity": np.ones(4, dtype=np.float32)}
    msg = make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32)], values, 16)
    cloud = pointcloud2_to_array(msg)
    cloud.points[:] = 0
    np.testing.assert_array_equal(pointcloud2_to_array(msg).points[:, 3], 1.0)


def xyzi_msg() -> PointCloud2:
    """A valid 8-point x, y, z, intensity cloud."""
    values = {**xyz_values(8), "intensity": np.zeros(8, dtype=np.float32)}
    return make_cloud([("x", 0, F32), ("y", 4, F32), ("z", 8, F32), ("intensity", 12, F32)], values, 16)


def test_cloud_errors_name_the_reason():
    msg = xyzi_msg()
    msg.fields = [f for f in msg.fields if f.name != "z"]
    with pytest.raises(ConversionError, match="no field z"):
        pointcloud2_to_array(msg)

    msg = xyzi_msg()
    msg.data = msg.data[:-5]
    with pytest.raises(ConversionError, match="truncated"):
        pointcloud2_to_array(msg)

    msg = xyzi_msg()
    msg.point_step = 12  # intensity at offset 12 no longer fits
    with pytest.raises(ConversionError, match="point_step"):
        pointcloud2_to_array(msg)

    msg = xyzi_msg()
    msg.row_step = 16 * 8 - 1
    with pytest.raises(ConversionError, match="row_step"):
        pointcloud2_to_array(msg)

    msg = xyzi_msg()
    msg.fields[3].datatype = 9
    with pytest.raises(ConversionError, match="datatype"):
        pointcloud2_to_array(msg)

    with pytest.raises(ConversionError, match="x, y and z"):
        pointcloud2_to_array(xyzi_msg(), fields=("x", "y", "intensity"))


BGR = np.random.default_rng(5).integers(0, 256, (6, 9, 3), dtype=np.uint8)


def make_image(encoding: str, pixels: np.ndarray, pad: int = 0) -> Image:
    """An Image message of ``pixels`` (HxWxC or HxW) with ``pad`` extra bytes per row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.zeros((height, rows.shape[1] + pad), dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    return Image(height=height, width=width, encoding=encoding, step=padded.shape[1], data=padded.tobytes())


ENCODED = {
    "bgr8": BGR,
    "rgb8": BGR[:, :, ::-1],
    "bgra8": np.dstack([BGR, np.full(BGR.shape[:2], 7, np.uint8)]),
    "rgba8": np.dstack([BGR[:, :, ::-1], np.full(BGR.shape[:2], 7, np.uint8)]),
}


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_colour_encodings_become_bgr_views(encoding, pad):
    msg = make_image(encoding, ENCODED[encoding], pad)
    out = image_to_bgr(msg)
    assert out.shape == BGR.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out, BGR)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))


@pytest.mark.parametrize("pad", [0, 3])
def test_mono8_is_grey_in_all_channels(pad):
    grey = BGR[:, :, 1]
    msg = make_image("mono8", grey, pad)
    out = image_to_bgr(msg)
    assert out.shape == BGR.shape
    for channel in range(3):
        np.testing.assert_array_equal(out[:, :, channel], grey)
    assert np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8))


#: Where each colour sits in the 2x2 cell of a ROS Bayer encoding (row, column).
BAYER_CELLS = {"bayer_rggb8": {"r": (0, 0), "b": (1, 1)}, "bayer_bggr8": {"b": (0, 0), "r": (1, 1)},
               "bayer_gbrg8": {"b": (0, 1), "r": (1, 0)}, "bayer_grbg8": {"r": (0, 1), "b": (1, 0)}}


def bayer_mosaic(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """What a sensor with ``encoding``'s colour filter records of ``bgr``: one channel per pixel."""
    mosaic = bgr[:, :, 1].copy()
    for colour, channel in (("b", 0), ("r", 2)):
        row, col = BAYER_CELLS[encoding][colour]
        mosaic[row::2, col::2] = bgr[row::2, col::2, channel]
    return mosaic


@pytest.mark.parametrize("pad", [0, 4])
@pytest.mark.parametrize("encoding", sorted(BAYER_CELLS))
def test_bayer_images_are_demosaiced_with_their_own_pattern(encoding, pad):
    # Four flat colour quadrants: away from the edges demosaicing must give each colour back.
    bgr = np.zeros((16, 24, 3), np.uint8)
    bgr[:8, :12], bgr[:8, 12:], bgr[8:, :12], bgr[8:, 12:] = (30, 60, 220), (200, 90, 20), (40, 210, 50), (90, 90, 90)
    out = image_to_bgr(make_image(encoding, bayer_mosaic(bgr, encoding), pad))
    assert out.shape == bgr.shape and out.dtype == np.uint8
    for rows, cols in ((slice(2, 6), slice(2, 10)), (slice(2, 6), slice(14, 22)), (slice(10, 14), slice(2, 10)),
                       (slice(10, 14), slice(14, 22))):
        np.testing.assert_allclose(out[rows, cols].astype(int), bgr[rows, cols].astype(int), atol=2)


def pack_yuv422(y: np.ndarray, u: np.ndarray, v: np.ndarray, order: str) -> np.ndarray:
    """HxWx2 bytes of a 4:2:2 image: per pixel pair (y0, y1) one u and one v, in byte ``order`` (uyvy or yuyv)."""
    height, width = y.shape
    packed = np.empty((height, width // 2, 4), np.uint8)
    planes = {"y0": y[:, 0::2], "y1": y[:, 1::2], "u": u, "v": v}
    for k, name in enumerate(("u", "y0", "v", "y1") if order == "uyvy" else ("y0", "u", "y1", "v")):
        packed[:, :, k] = planes[name]
    return packed.reshape(height, width, 2)


@pytest.mark.parametrize(("encoding", "order"), [("yuv422", "uyvy"), ("uyvy", "uyvy"), ("yuv422_yuy2", "yuyv"),
                                                 ("yuyv", "yuyv")])
def test_yuv422_images_decode_in_their_byte_order(encoding, order):
    height, width = 4, 8
    y = np.full((height, width), 120, np.uint8)
    y[:, width // 2:] = 200  # brighter right half
    u = np.full((height, width // 2), 128, np.uint8)
    v = np.full((height, width // 2), 128, np.uint8)
    v[:2], u[2:] = 200, 200  # top rows reddish (high V), bottom rows bluish (high U)
    out = image_to_bgr(make_image(encoding, pack_yuv422(y, u, v, order), pad=2)).astype(int)
    assert out.shape == (height, width, 3)
    blue, green, red = out[..., 0], out[..., 1], out[..., 2]
    assert (red[:2] > green[:2] + 40).all() and (red[:2] > blue[:2] + 40).all()
    assert (blue[2:] > green[2:] + 40).all() and (blue[2:] > red[2:] + 40).all()
    assert (out[:, width // 2:].sum(axis=2) > out[:, :width // 2].sum(axis=2) + 100).all()


@pytest.mark.parametrize(("encoding", "size"), [("yuv422", (4, 7)), ("bayer_rggb8", (5, 8))])
def test_subsampled_encodings_need_even_sizes(encoding, size):
    height, width = size
    channels = 2 if encoding == "yuv422" else 1
    msg = Image(height=height, width=width, encoding=encoding, step=width * channels,
                data=bytes(height * width * channels))
    with pytest.raises(ConversionError, match="even"):
        image_to_bgr(msg)


@pytest.mark.parametrize("encoding", ["mono16", "bayer_rggb16", "16UC1", "nv21", "8UC3", ""])
def test_unsupported_encodings_are_rejected(encoding):
    msg = make_image("bgr8", BGR)
    msg.encoding = encoding
    with pytest.raises(ConversionError, match="unsupported encoding"):
        image_to_bgr(msg)


def test_image_size_errors():
    msg = make_image("bgr8", BGR)
    msg.step = BGR.shape[1] * 3 - 1
    with pytest.raises(ConversionError, match="step"):
        image_to_bgr(msg)
    msg = make_image("bgr8", BGR)
    msg.data = msg.data[:-1]
    with pytest.raises(ConversionError, match="bytes"):
        image_to_bgr(msg)
    msg = make_image("rgba8", ENCODED["rgba8"])
    msg.height += 1
    with pytest.raises(ConversionError, match="bytes"):
        image_to_bgr(msg)
    with pytest.raises(ConversionError, match="empty"):
        image_to_bgr(Image(encoding="bgr8"))


def smooth_bgr() -> np.ndarray:
    """A 32x48 image JPEG keeps close to the original."""
    yy, xx = np.mgrid[:32, :48]
    return np.stack([xx * 5, yy * 7, 255 - xx * 5], axis=-1).astype(np.uint8)


@pytest.mark.parametrize(("fmt", "ext", "tol"), [
    ("png", ".png", 0), ("jpeg", ".jpg", 12), ("rgb8; jpeg compressed bgr8", ".jpg", 12),
])
def test_compressed_images_decode_to_bgr(fmt, ext, tol):
    image = smooth_bgr()
    ok, encoded = cv2.imencode(ext, image)
    assert ok
    out = compressed_to_bgr(CompressedImage(format=fmt, data=encoded.tobytes()))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.abs(out.astype(int) - image).max() <= tol


def test_compressed_errors():
    with pytest.raises(ConversionError, match="decode"):
        compressed_to_bgr(CompressedImage(format="jpeg", data=b"not an image at all"))
    with pytest.raises(ConversionError, match="no data"):
        compressed_to_bgr(CompressedImage(format="png", data=b""))
    ok, encoded = cv2.imencode(".png", smooth_bgr())
    with pytest.raises(ConversionError, match="unsupported compressed format"):
        compressed_to_bgr(CompressedImage(format="tiff", data=encoded.tobytes()))


def test_camera_info_intrinsics():
    K = [1266.417, 0.0, 816.267, 0.0, 1266.417, 491.507, 0.0, 0.0, 1.0]
    msg = CameraInfo(height=900, width=1600, k=K, d=[0.1, -0.05, 0.0, 0.0, 0.01], distortion_model="plumb_bob")
    K3, size, D, model = camera_info_intrinsics(msg)
    assert K3.shape == (3, 3) and K3.dtype == np.float64
    np.testing.assert_array_equal(K3.reshape(-1), K)
    assert size == (900, 1600)
    np.testing.assert_array_equal(D, [0.1, -0.05, 0.0, 0.0, 0.01])
    assert model == "plumb_bob"


def test_camera_info_lens_carries_the_projection():
    P = [1100.0, 0.0, 800.0, 0.0, 0.0, 1100.0, 450.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    msg = CameraInfo(height=900, width=1600, k=[1266.4, 0.0, 816.3, 0.0, 1266.4, 491.5, 0.0, 0.0, 1.0],
                     d=[-0.1, 0.02, 0.0, 0.0, 0.0], distortion_model="plumb_bob", p=P)
    lens = camera_info_lens(msg)
    assert lens.size == (900, 1600) and lens.model == "plumb_bob" and lens.K[0, 0] == 1266.4
    np.testing.assert_array_equal(lens.P, np.reshape(P, (3, 4)))
    np.testing.assert_array_equal(lens.D, [-0.1, 0.02, 0.0, 0.0, 0.0])


FULL_K = np.array([[1266.4, 0.0, 816.3], [0.0, 1262.0, 491.5], [0.0, 0.0, 1.0]])
FULL_P = np.array([[1100.0, 0.0, 800.0, 0.0], [0.0, 1100.0, 450.0, 0.0], [0.0, 0.0, 1.0, 0.0]])
FULL_D = [-0.3, 0.1, 0.001, -0.002, 0.0]


def binned_info(binning: tuple[int, int], roi: tuple[int, int, int, int]) -> CameraInfo:
    """A 1600x900 calibration published for images binned by ``binning`` (x, y) from ``roi`` (x, y, w, h)."""
    msg = CameraInfo(height=900, width=1600, k=FULL_K.reshape(-1).tolist(), d=FULL_D, distortion_model="plumb_bob",
                     p=FULL_P.reshape(-1).tolist(), binning_x=binning[0], binning_y=binning[1])
    msg.roi.x_offset, msg.roi.y_offset, msg.roi.width, msg.roi.height = roi
    return msg


def test_binned_and_cropped_images_project_where_the_full_calibration_says():
    lens = camera_info_lens(binned_info((2, 3), (200, 90, 1200, 630)))
    assert lens.size == (210, 600)  # 630 / 3 rows, 1200 / 2 columns
    np.testing.assert_array_equal(lens.D, FULL_D)
    points = np.random.default_rng(3).uniform([-8.0, -4.0, 5.0], [8.0, 4.0, 40.0], (50, 3))
    zero = np.zeros(3)
    full, _ = cv2.projectPoints(points, zero, zero, FULL_K, np.array(FULL_D))
    binned, _ = cv2.projectPoints(points, zero, zero, lens.K, lens.D)
    # A full-resolution pixel u lands on (u - x_offset) / binning_x of the published image (likewise v).
    expected = (full.reshape(-1, 2) - [200.0, 90.0]) / [2.0, 3.0]
    np.testing.assert_allclose(binned.reshape(-1, 2), expected, atol=1e-9)
    rectified = points @ lens.P[:, :3].T
    full_rectified = points @ FULL_P[:, :3].T
    np.testing.assert_allclose(rectified[:, :2] / rectified[:, 2:], (full_rectified[:, :2] / full_rectified[:, 2:]
                                                                     - [200.0, 90.0]) / [2.0, 3.0], atol=1e-9)


@pytest.mark.parametrize("binning", [(0, 0), (1, 1)])
def test_no_binning_and_an_empty_roi_keep_the_calibration(binning):
    lens = camera_info_lens(binned_info(binning, (0, 0, 0, 0)))
    assert lens.size == (900, 1600)
    np.testing.assert_array_equal(lens.K, FULL_K)
    np.testing.assert_array_equal(lens.P, FULL_P)


def test_binning_alone_scales_a_rectified_calibration():
    lens = camera_info_lens(binned_info((2, 2), (0, 0, 0, 0)), rectified=True)
    assert lens.size == (450, 800) and lens.P[0, 0] == 550.0 and lens.P[1, 2] == 225.0


def test_roi_errors_name_the_reason():
    with pytest.raises(ConversionError, match=r"roi 1500x630 at \(200, 90\) does not fit the 1600x900 calibration"):
        camera_info_lens(binned_info((1, 1), (200, 90, 1500, 630)))
    with pytest.raises(ConversionError, match="rectified"):
        camera_info_lens(binned_info((1, 1), (200, 90, 1200, 630)), rectified=True)
