"""numpy → ROS message conversion: layouts, encodings and stamps decode back to the same bytes with plain numpy."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CameraInfo, PointField

from aqr_ros.pipeline.rotations import matrix_from_quaternion
from aqr_ros.ros.to_msg import (camera_info_msg, image_from_array, nanoseconds_from_stamp, pointcloud2_from_structured,
                                seconds_from_stamp, stamp_from_nanoseconds,
                                stamp_from_seconds, transform_stamped)
from aqr_ros.tools.synthetic_rig import POINT_DTYPE, Rig, SyntheticRig


@pytest.fixture(scope="module")
def sweep() -> np.ndarray:
    return SyntheticRig(seed=1).lidar_sweep(0.0)


def roundtrip(msg):
    """The message after CDR serialization and back, as it would cross DDS."""
    return deserialize_message(serialize_message(msg), type(msg))


def test_pointcloud2_from_rig_sweep(sweep: np.ndarray) -> None:
    msg = roundtrip(pointcloud2_from_structured(sweep, "lidar_top", 12.25))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1),
        ("intensity", 12, PointField.FLOAT32, 1), ("ring", 16, PointField.UINT16, 1),
        ("time", 18, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, len(sweep), 22, 22 * len(sweep))
    assert not msg.is_bigendian and msg.is_dense
    assert msg.header.frame_id == "lidar_top"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 250_000_000)
    assert bytes(msg.data) == sweep.tobytes()
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), dtype=POINT_DTYPE), sweep)


def test_pointcloud2_padding_to_point_step(sweep: np.ndarray) -> None:
    msg = pointcloud2_from_structured(sweep[:100], "lidar_top", 0.0, point_step=32)
    assert msg.point_step == 32 and msg.row_step == 3200 and len(msg.data) == 3200
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(100, 32)
    assert not raw[:, 22:].any()
    padded = np.dtype({"names": POINT_DTYPE.names, "formats": [POINT_DTYPE[n] for n in POINT_DTYPE.names],
                       "offsets": [POINT_DTYPE.fields[n][1] for n in POINT_DTYPE.names], "itemsize": 32})
    decoded = np.frombuffer(bytes(msg.data), dtype=padded)
    for name in POINT_DTYPE.names:
        np.testing.assert_array_equal(decoded[name], sweep[:100][name])
    with pytest.raises(ValueError, match="point_step"):
        pointcloud2_from_structured(sweep, "lidar_top", 0.0, point_step=16)


def test_pointcloud2_any_layout_big_endian_subarrays_and_organized() -> None:
    dtype = np.dtype([("intensity", ">f8"), ("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("rgb", "u1", (3,)),
                      ("label", ">i4")], align=True)
    arr = np.zeros((4, 5), dtype=dtype)
    values = np.arange(20, dtype=np.float64).reshape(4, 5)
    arr["intensity"], arr["x"], arr["y"], arr["z"] = values, -values, values / 4, values * 1e3
    arr["rgb"] = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
    arr["label"] = -values.astype(np.int32)
    msg = roundtrip(pointcloud2_from_structured(arr, "base_link", Time(sec=3, nanosec=7)))
    fields = {f.name: (f.offset, f.datatype, f.count) for f in msg.fields}
    assert fields == {"intensity": (0, PointField.FLOAT64, 1), "x": (8, PointField.FLOAT32, 1),
                      "y": (12, PointField.FLOAT32, 1), "z": (16, PointField.FLOAT32, 1),
                      "rgb": (20, PointField.UINT8, 3), "label": (24, PointField.INT32, 1)}
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (4, 5, 32, 160)
    assert not msg.is_bigendian
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (3, 7)
    decoded = np.frombuffer(bytes(msg.data), dtype=dtype.newbyteorder("<")).reshape(4, 5)
    for name in dtype.names:
        np.testing.assert_array_equal(decoded[name], arr[name])


def test_pointcloud2_empty_cloud_keeps_its_fields() -> None:
    msg = pointcloud2_from_structured(np.zeros(0, POINT_DTYPE), "lidar_top", 1.0)
    assert (msg.width, msg.height, len(msg.data)) == (0, 1, 0)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity", "ring", "time"]
    assert msg.point_step == POINT_DTYPE.itemsize


def test_pointcloud2_density_and_errors(sweep: np.ndarray) -> None:
    broken = sweep[:10].copy()
    broken["z"][3] = np.nan
    assert not pointcloud2_from_structured(broken, "lidar_top", 0.0).is_dense
    with pytest.raises(ValueError, match="structured"):
        pointcloud2_from_structured(np.zeros((10, 3), np.float32), "lidar_top", 0.0)
    with pytest.raises(ValueError, match="flag"):
        pointcloud2_from_structured(np.zeros(3, dtype=[("x", "f4"), ("flag", "?")]), "lidar_top", 0.0)
    with pytest.raises(ValueError, match="1-D or 2-D"):
        pointcloud2_from_structured(np.zeros((2, 2, 2), dtype=POINT_DTYPE), "lidar_top", 0.0)


@pytest.mark.parametrize(("encoding", "channels"), [("bgr8", 3), ("rgb8", 3), ("mono8", 1), ("rgba8", 4),
                                                    ("bgra8", 4)])
def test_image_encodings_roundtrip(encoding: str, channels: int) -> None:
    rng = np.random.default_rng(0)
    shape = (9, 16) if channels == 1 else (9, 16, channels)
    img = rng.integers(0, 256, size=shape, dtype=np.uint8)
    msg = roundtrip(image_from_array(img, encoding, "cam_front_optical", 5.5))
    assert (msg.height, msg.width, msg.step, msg.encoding) == (9, 16, 16 * channels, encoding)
    assert msg.is_bigendian == 0 and msg.header.frame_id == "cam_front_optical"
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(shape), img)


def test_image_from_rig_camera_and_views() -> None:
    img = SyntheticRig(seed=1).camera_image(0, 0.0)
    msg = image_from_array(img, "bgr8", "cam_front_optical", 0.0)
    assert bytes(msg.data) == img.tobytes() and msg.step == 4800
    view = img[::2, ::2]  # a non-contiguous view converts to the same pixels
    msg = image_from_array(view, "bgr8", "cam_front_optical", 0.0)
    assert (msg.height, msg.width, msg.step) == (450, 800, 2400)
    np.testing.assert_array_equal(np.frombuffer(bytes(msg.data), np.uint8).reshape(450, 800, 3), view)
    mono = image_from_array(img[:, :, :1], "mono8", "cam_front_optical", 0.0)
    assert mono.step == 1600


def test_image_errors() -> None:
    with pytest.raises(ValueError, match="encoding"):
        image_from_array(np.zeros((2, 2, 3), np.uint8), "yuv422", "f", 0.0)
    with pytest.raises(ValueError, match="uint8"):
        image_from_array(np.zeros((2, 2, 3), np.float32), "bgr8", "f", 0.0)
    with pytest.raises(ValueError, match="shape"):
        image_from_array(np.zeros((2, 2, 4), np.uint8), "bgr8", "f", 0.0)
    with pytest.raises(ValueError, match="shape"):
        image_from_array(np.zeros((2, 2), np.uint8), "rgb8", "f", 0.0)


def test_camera_info_from_rig() -> None:
    info = Rig.nuscenes_like().camera_info(3)
    msg = roundtrip(camera_info_msg(info.K, info.width, info.height, info.frame_id, 1.5))
    assert isinstance(msg, CameraInfo)
    assert (msg.width, msg.height, msg.distortion_model) == (1600, 900, "plumb_bob")
    assert msg.header.frame_id == "cam_back_optical"
    np.testing.assert_array_equal(np.asarray(msg.k).reshape(3, 3), info.K)
    np.testing.assert_array_equal(np.asarray(msg.p).reshape(3, 4), info.P)
    np.testing.assert_array_equal(np.asarray(msg.r).reshape(3, 3), np.eye(3))
    np.testing.assert_array_equal(np.asarray(msg.d), np.zeros(5))
    custom = camera_info_msg(info.K, 800, 450, "f", 0.0, D=[0.1, -0.2, 0.0, 0.0, 0.01],
                             distortion_model="rational_polynomial")
    assert list(custom.d) == [0.1, -0.2, 0.0, 0.0, 0.01] and custom.distortion_model == "rational_polynomial"


def rotations() -> list[np.ndarray]:
    """Rig rotations, random ones and the 180-degree turns that stress every branch."""
    rng = np.random.default_rng(5)
    out = [T[:3, :3] for T in Rig.nuscenes_like().T_base_cam]
    for q in rng.normal(size=(20, 4)):
        out.append(matrix_from_quaternion(q))
    out += [np.diag([1.0, -1.0, -1.0]), np.diag([-1.0, 1.0, -1.0]), np.diag([-1.0, -1.0, 1.0]), np.eye(3)]
    return out


def test_transform_stamped_matches_the_matrix() -> None:
    for R in rotations():
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = R, [1.5, -2.0, 0.25]
        msg = roundtrip(transform_stamped(T, "base_link", "cam_front_optical", 42.0))
        assert msg.header.frame_id == "base_link" and msg.child_frame_id == "cam_front_optical"
        assert msg.header.stamp.sec == 42
        q = msg.transform.rotation
        assert math.isclose(q.x ** 2 + q.y ** 2 + q.z ** 2 + q.w ** 2, 1.0, rel_tol=1e-12) and q.w >= 0
        np.testing.assert_allclose(matrix_from_quaternion((q.x, q.y, q.z, q.w)), R, atol=1e-12)
        t = msg.transform.translation
        assert (t.x, t.y, t.z) == (1.5, -2.0, 0.25)
    with pytest.raises(ValueError):
        transform_stamped(np.eye(3), "a", "b", 0.0)


def test_stamps() -> None:
    stamp = stamp_from_seconds(1_700_000_000.123456789)
    assert stamp.sec == 1_700_000_000 and abs(stamp.nanosec - 123_456_789) < 300
    assert seconds_from_stamp(Time(sec=5, nanosec=250_000_000)) == 5.25
    carry = stamp_from_seconds(7.9999999999)
    assert (carry.sec, carry.nanosec) == (8, 0)
    for seconds in (0.0, 0.05, 1.0 / 12.0, 123.456789, 1e9 + 0.5):
        back = seconds_from_stamp(stamp_from_seconds(seconds))
        assert abs(back - seconds) < 1e-9 * max(1.0, seconds) and 0 <= stamp_from_seconds(seconds).nanosec < 10 ** 9
    exact = 1_700_000_000_123_456_789  # beyond float64's nanosecond resolution: integers are exact
    assert nanoseconds_from_stamp(stamp_from_nanoseconds(exact)) == exact
    assert (stamp_from_nanoseconds(exact).sec, stamp_from_nanoseconds(exact).nanosec) == (1_700_000_000, 123_456_789)



@pytest.mark.ros
def test_rig_publisher_over_dds(spawn_python, ros_env) -> None:
    """aqr_rig_publisher in its own process delivers the rig's bytes, stamps and transforms over loopback DDS."""
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile
    from sensor_msgs.msg import Image, PointCloud2
    from tf2_msgs.msg import TFMessage

    namespace = f"/aqr_test_{os.getpid()}/rig"
    received: dict[str, list] = {"cloud": [], "image": [], "dropped": [], "tf": [], "static": []}
    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("aqr_rig_listener", context=context)
        node.create_subscription(PointCloud2, f"{namespace}/lidar_top/points", received["cloud"].append, 10)
        node.create_subscription(Image, f"{namespace}/cam_back/image_raw", received["image"].append, 10)
        node.create_subscription(Image, f"{namespace}/cam_front_right/image_raw", received["dropped"].append, 10)
        node.create_subscription(TFMessage, "/tf", received["tf"].append, 100)
        node.create_subscription(TFMessage, "/tf_static", received["static"].append,
                                 QoSProfile(depth=10, durability=DurabilityPolicy.TRANSIENT_LOCAL))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        child = spawn_python(["-m", "aqr_ros.tools.rig_publisher", "--frames", "3", "--seed", "2", "--no-noise",
                              "--start-time", "100", "--drop-camera", "1", "--wait-for-subscribers", "1",
                              "--linger", "1.0", "--ros-args", "-r", f"__ns:={namespace}"], ros_env)
        deadline = time.monotonic() + 60.0
        while child.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.01)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert child.poll() == 0, child.stdout.read()
    rig = SyntheticRig(seed=2, noise=False)
    clouds = received["cloud"]
    assert [seconds_from_stamp(m.header.stamp) for m in clouds] == pytest.approx([100.0, 100.05, 100.1])
    assert bytes(clouds[1].data) == rig.lidar_sweep(0.05).tobytes()
    image = received["image"][0]
    offset = rig.rig.camera_offsets()[3]
    assert seconds_from_stamp(image.header.stamp) == pytest.approx(100.0 + offset)
    assert image.header.frame_id == "cam_back_optical"
    assert bytes(image.data) == rig.camera_image(3, offset).tobytes()
    assert not received["dropped"]
    static = {t.child_frame_id: t for m in received["static"] for t in m.transforms}
    assert static["cam_back_optical"].header.frame_id == "base_link"
    assert static["lidar_top"].transform.translation.z == pytest.approx(rig.rig.T_base_lidar[2, 3])
    # /tf is global: keep this run's odom → base_link (stamps 100 s + less than 150 ms).
    odom = [t for m in received["tf"] for t in m.transforms
            if t.child_frame_id == "base_link" and 100.0 <= seconds_from_stamp(t.header.stamp) < 100.15]
    assert len(odom) == len([e for e in rig.schedule(3) if e.sensor != 1])  # one per published sensor event
    for t in odom:
        T = rig.ego_pose(seconds_from_stamp(t.header.stamp) - 100.0)
        assert t.header.frame_id == "odom"
        assert (t.transform.translation.x, t.transform.translation.y) == pytest.approx((T[0, 3], T[1, 3]))
