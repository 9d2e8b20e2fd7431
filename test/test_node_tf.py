"""The node's tf access (TfSource) on an in-process rclpy node: chaining, time interpolation, caching, refresh.

Runs against the real tf2_ros where installed, else the test double under test/doubles/tf2_ros.
"""

import numpy as np
import pytest
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.time import Time

from aqr_ros.ros.tf_source import TfSource, transform_to_matrix
from aqr_ros.ros.to_msg import stamp_from_seconds, transform_stamped
from conftest import ros_domain
from tf_fixtures import isolated_node, rot_z

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)


@pytest.fixture
def node():
    with isolated_node("tf_source_test", DOMAIN_ID, parameter_overrides=[Parameter("use_sim_time", value=True)]) as n:
        yield n


def test_transform_to_matrix_round_trip():
    T = rot_z(30, (1.0, 2.0, 3.0))
    np.testing.assert_allclose(transform_to_matrix(transform_stamped(T, "a", "b", 1.0)), T, atol=1e-12)


def test_lookup_chains_interpolates_and_caches(node):
    tf = TfSource(node, refresh_period_s=0.0)
    T_base_lidar = rot_z(0, (1.0, 0.0, 2.0))
    T_base_cam = rot_z(90, (2.0, 0.0, 1.5))
    for parent, child, T in (("base_link", "lidar", T_base_lidar), ("base_link", "cam", T_base_cam)):
        tf.buffer.set_transform_static(transform_stamped(T, parent, child, 0.0), "test")
    for t, x in ((10.0, 0.0), (11.0, 4.0)):
        tf.buffer.set_transform(transform_stamped(rot_z(0, (x, 0, 0)), "odom", "base_link", stamp_from_seconds(t)),
                                "test")
    ext = tf.extrinsic("cam", "lidar")
    np.testing.assert_allclose(ext.matrix, np.linalg.inv(T_base_cam) @ T_base_lidar, atol=1e-9)
    pose = tf.lookup("odom", "lidar", Time(seconds=10.5))
    np.testing.assert_allclose(pose.matrix[:3, 3], [3.0, 0.0, 2.0], atol=1e-9)  # base at x=2 + lidar offset
    missing = tf.lookup("odom", "lidar", Time(seconds=20.0))
    assert missing.matrix is None and "odom" in missing.reason
    unknown = tf.extrinsic("nowhere_optical", "lidar")
    assert unknown.matrix is None and "nowhere_optical" in unknown.reason
    # Cached: a recalibration is not seen without a refresh period.
    tf.buffer.set_transform_static(transform_stamped(rot_z(180), "base_link", "cam", 0.0), "test")
    np.testing.assert_allclose(tf.extrinsic("cam", "lidar").matrix, ext.matrix)
    tf.forget()
    np.testing.assert_allclose(tf.extrinsic("cam", "lidar").matrix, np.linalg.inv(rot_z(180)) @ T_base_lidar,
                               atol=1e-9)
    # forget() drops dynamic transforms (time jumped back) but keeps the static calibration.
    assert tf.lookup("odom", "lidar").matrix is None


def test_refresh_period_rereads_extrinsics(node):
    from rosgraph_msgs.msg import Clock

    tf = TfSource(node, refresh_period_s=1.0)
    clock_pub = node.create_publisher(Clock, "/clock", 10)
    tf.buffer.set_transform_static(transform_stamped(rot_z(0), "base", "cam", 0.0), "test")
    tf.buffer.set_transform_static(transform_stamped(rot_z(0), "base", "lidar", 0.0), "test")
    first = tf.extrinsic("cam", "lidar").matrix
    tf.buffer.set_transform_static(transform_stamped(rot_z(90), "base", "cam", 0.0), "test")
    np.testing.assert_allclose(tf.extrinsic("cam", "lidar").matrix, first)
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    for _ in range(100):  # sim time moves 5 s ahead through /clock
        clock_pub.publish(Clock(clock=stamp_from_seconds(5.0)))
        executor.spin_once(timeout_sec=0.05)
        if node.get_clock().now().nanoseconds >= 5_000_000_000:
            break
    executor.shutdown()
    assert node.get_clock().now().nanoseconds >= 5_000_000_000
    np.testing.assert_allclose(tf.extrinsic("cam", "lidar").matrix, np.linalg.inv(rot_z(90)), atol=1e-9)
