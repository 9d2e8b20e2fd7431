"""Large sensor messages cross process boundaries over DDS on loopback, byte for byte.

A child process (this file run as a script) publishes a 1600x900 bgr8 Image and a ~35k-point
PointCloud2 with padded point records, best effort like real sensor drivers; the test process
rebuilds the same messages from the same seed and compares everything it receives. With Fast DDS
defaults most best-effort samples of this size are lost; the profile in config/ delivers them.
"""

from __future__ import annotations

import array
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

IMAGE_WIDTH, IMAGE_HEIGHT = 1600, 900
NUM_POINTS = 35_000
SEED = 20261125
FRAME_STAMP = (1_700_000_042, 123_456_789)

# x, y, z, intensity float32 | ring uint16 | 2 pad | time float32 | 8 pad  -> 32-byte records
POINT_FIELDS = [
    ("x", 0, "float32"),
    ("y", 4, "float32"),
    ("z", 8, "float32"),
    ("intensity", 12, "float32"),
    ("ring", 16, "uint16"),
    ("time", 20, "float32"),
]
POINT_STEP = 32


def _header(frame_id: str):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = FRAME_STAMP
    return header


def make_image():
    """A seeded random 1600x900 bgr8 image message."""
    from sensor_msgs.msg import Image

    pixels = np.random.default_rng(SEED).integers(
        0, 256, (IMAGE_HEIGHT, IMAGE_WIDTH, 3), dtype=np.uint8
    )
    return Image(
        header=_header("cam_front_optical"),
        height=IMAGE_HEIGHT,
        width=IMAGE_WIDTH,
        encoding="bgr8",
        is_bigendian=0,
        step=IMAGE_WIDTH * 3,
        data=array.array("B", pixels.tobytes()),
    )


def make_cloud():
    """A seeded ~35k-point cloud; its padding bytes are random too and must survive transport."""
    from sensor_msgs.msg import PointCloud2, PointField

    rng = np.random.default_rng(SEED + 1)
    raw = rng.integers(0, 256, NUM_POINTS * POINT_STEP, dtype=np.uint8)
    dtype = np.dtype(
        {
            "names": [name for name, _, _ in POINT_FIELDS],
            "formats": [fmt for _, _, fmt in POINT_FIELDS],
            "offsets": [offset for _, offset, _ in POINT_FIELDS],
            "itemsize": POINT_STEP,
        }
    )
    points = raw.view(dtype)
    points["x"], points["y"] = rng.uniform(-50, 50, (2, NUM_POINTS)).astype(np.float32)
    points["z"] = rng.uniform(-2, 4, NUM_POINTS).astype(np.float32)
    points["intensity"] = rng.uniform(0, 255, NUM_POINTS).astype(np.float32)
    points["ring"] = rng.integers(0, 32, NUM_POINTS, dtype=np.uint16)
    points["time"] = rng.uniform(0.0, 0.05, NUM_POINTS).astype(np.float32)
    datatypes = {"float32": PointField.FLOAT32, "uint16": PointField.UINT16}
    return PointCloud2(
        header=_header("lidar_top"),
        height=1,
        width=NUM_POINTS,
        fields=[
            PointField(name=name, offset=offset, datatype=datatypes[fmt], count=1)
            for name, offset, fmt in POINT_FIELDS
        ],
        is_bigendian=False,
        point_step=POINT_STEP,
        row_step=POINT_STEP * NUM_POINTS,
        data=array.array("B", raw.tobytes()),
        is_dense=True,
    )


def publish(topic_prefix: str, duration_s: float) -> None:
    """Child process: publish both messages every 0.2 s for ``duration_s`` seconds."""
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    rclpy.init()
    node = rclpy.create_node("aqr_transport_publisher")
    image_pub = node.create_publisher(Image, f"{topic_prefix}/image", qos_profile_sensor_data)
    cloud_pub = node.create_publisher(
        PointCloud2, f"{topic_prefix}/points", qos_profile_sensor_data
    )
    image, cloud = make_image(), make_cloud()
    print("publisher ready", flush=True)
    deadline = time.monotonic() + duration_s
    while time.monotonic() < deadline:
        image_pub.publish(image)
        cloud_pub.publish(cloud)
        time.sleep(0.2)
    node.destroy_node()
    rclpy.shutdown()


def _assert_same_header(received, expected) -> None:
    assert received.header.frame_id == expected.header.frame_id
    assert (received.header.stamp.sec, received.header.stamp.nanosec) == FRAME_STAMP


@pytest.mark.ros
def test_image_and_cloud_cross_processes_byte_for_byte(spawn_python, ros_env):
    import rclpy
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image, PointCloud2

    from conftest import ros_domain

    domain = ros_domain(__name__)  # imported here: the publisher child runs this file without pytest's set-up
    topic_prefix = f"/aqr_test_{os.getpid()}/transport"
    received: dict[str, object] = {}
    context = Context()
    rclpy.init(context=context, domain_id=domain)
    try:
        node = rclpy.create_node("aqr_transport_subscriber", context=context)
        node.create_subscription(
            Image, f"{topic_prefix}/image", lambda m: received.setdefault("image", m),
            qos_profile_sensor_data,
        )
        node.create_subscription(
            PointCloud2, f"{topic_prefix}/points", lambda m: received.setdefault("cloud", m),
            qos_profile_sensor_data,
        )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        child = spawn_python(
            [str(Path(__file__).resolve()), "--publish", topic_prefix, "60"],
            {**ros_env, "ROS_DOMAIN_ID": str(domain)},
        )
        deadline = time.monotonic() + 45
        while len(received) < 2 and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    assert child.poll() is None, f"publisher exited early:\n{child.stdout.read()}"
    assert set(received) == {"image", "cloud"}, f"received only {sorted(received)}"

    image, expected_image = received["image"], make_image()
    _assert_same_header(image, expected_image)
    assert (image.height, image.width, image.step) == (IMAGE_HEIGHT, IMAGE_WIDTH, IMAGE_WIDTH * 3)
    assert (image.encoding, image.is_bigendian) == ("bgr8", 0)
    assert len(image.data) == IMAGE_WIDTH * IMAGE_HEIGHT * 3
    assert bytes(image.data) == bytes(expected_image.data)

    cloud, expected_cloud = received["cloud"], make_cloud()
    _assert_same_header(cloud, expected_cloud)
    assert [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields] == [
        (f.name, f.offset, f.datatype, f.count) for f in expected_cloud.fields
    ]
    assert (cloud.height, cloud.width, cloud.point_step, cloud.row_step) == (
        1, NUM_POINTS, POINT_STEP, POINT_STEP * NUM_POINTS,
    )
    assert (cloud.is_bigendian, cloud.is_dense) == (False, True)
    assert bytes(cloud.data) == bytes(expected_cloud.data)


@pytest.mark.ros
def test_fastdds_profile_loads_without_xml_errors(spawn_python, ros_env, tmp_path):
    """Fast DDS parses the shipped profile silently and reports a broken copy (a live check)."""
    from conftest import ros_domain

    probe = "import rclpy; rclpy.init(); rclpy.create_node('aqr_profile_probe'); rclpy.shutdown()"
    broken = tmp_path / "broken.xml"
    profile = Path(__file__).resolve().parent.parent / "config" / "fastdds_large_data.xml"
    broken.write_text(profile.read_text().replace("<segment_size>", "<segment_sise>", 1))
    outputs = {}
    for name, path in (("shipped", profile), ("broken", broken)):
        child = spawn_python(["-c", probe], {**ros_env, "ROS_DOMAIN_ID": str(ros_domain(__name__)),
                                             "FASTDDS_DEFAULT_PROFILES_FILE": str(path)})
        outputs[name] = child.communicate(timeout=60)[0]
        assert child.returncode == 0 or name == "broken", outputs[name]
    assert "XMLPARSER" not in outputs["shipped"] and "Error" not in outputs["shipped"]
    assert "XMLPARSER" in outputs["broken"] or "Error" in outputs["broken"], outputs["broken"]


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--publish":
        publish(sys.argv[2], float(sys.argv[3]))
    else:
        sys.exit(f"usage: {sys.argv[0]} --publish TOPIC_PREFIX DURATION_S")
