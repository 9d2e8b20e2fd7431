"""A frame waits (bounded by tf.max_wait) for an odometry that lags the sensors, so its sweeps are still motion-
compensated and its extrinsics time-corrected; with 0 it takes what tf has. The live node's own method, in process."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.time import Time
from std_msgs.msg import Header

from aqr_ros.ros.node import AqrNode
from aqr_ros.ros.sync import CameraStatus, FrameBundle
from aqr_ros.ros.to_msg import stamp_from_seconds, transform_stamped
from conftest import TINY_CONFIG

pytestmark = pytest.mark.ros

CLOUD_S, IMAGE_S = 100.0, 100.03  # the newest stamp the frame needs is its latest image's
LAG_S = 0.15


def configured(context: Any, max_wait: float) -> AqrNode:
    node = AqrNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in {
        "model.config": str(TINY_CONFIG), "model.allow_random_weights": True, "model.warmup_iters": 0,
        "autostart": False, "tf.max_wait": max_wait}.items()])
    node.trigger_configure()
    assert node.model is not None, node.configure_error
    node.tf.buffer.set_transform_static(transform_stamped(np.eye(4), "base_link", "lidar_top", 0.0), "test")
    node.tf.buffer.set_transform(transform_stamped(np.eye(4), "odom", "base_link", stamp_from_seconds(CLOUD_S - 1)),
                                 "test")
    return node


def frame() -> tuple[FrameBundle, Header]:
    bundle = FrameBundle(stamp_ns=int(CLOUD_S * 1e9), cloud=None, images=(object(),) + (None,) * 5,
                         image_stamps_ns=(int(IMAGE_S * 1e9),) + (None,) * 5,
                         status=(CameraStatus.FUSED,) + (CameraStatus.MISSING,) * 5, dt_ns=(0,) + (None,) * 5,
                         usable=True)
    return bundle, Header(stamp=stamp_from_seconds(CLOUD_S), frame_id="lidar_top")


def late_odometry(node: AqrNode) -> threading.Timer:
    """odom -> base_link at the image stamp, arriving LAG_S from now."""
    pose = transform_stamped(np.eye(4), "odom", "base_link", stamp_from_seconds(IMAGE_S + 0.01))
    timer = threading.Timer(LAG_S, lambda: node.tf.buffer.set_transform(pose, "test"))
    timer.start()
    return timer


def test_a_frame_waits_for_a_lagging_pose_up_to_tf_max_wait(ros_context: Any) -> None:
    node = configured(ros_context, max_wait=1.0)
    try:
        bundle, header = frame()
        timer = late_odometry(node)
        started = time.monotonic()
        node._wait_for_pose(bundle, header, node.params)
        waited = time.monotonic() - started
        timer.join()
        assert LAG_S * 0.9 <= waited < 0.9  # returned once the pose came, not at the limit
        assert node.tf.lookup("odom", "lidar_top", Time(seconds=IMAGE_S)).matrix is not None
    finally:
        node.destroy_node()


def test_without_a_wait_the_frame_takes_what_tf_has(ros_context: Any) -> None:
    node = configured(ros_context, max_wait=0.0)
    try:
        bundle, header = frame()
        timer = late_odometry(node)
        started = time.monotonic()
        node._wait_for_pose(bundle, header, node.params)
        assert time.monotonic() - started < LAG_S / 2
        assert node.tf.lookup("odom", "lidar_top", Time(seconds=IMAGE_S)).matrix is None
        timer.join()
    finally:
        node.destroy_node()


def test_the_wait_is_bounded_when_the_pose_never_comes(ros_context: Any) -> None:
    node = configured(ros_context, max_wait=0.2)
    try:
        bundle, header = frame()
        started = time.monotonic()
        node._wait_for_pose(bundle, header, node.params)
        assert 0.2 <= time.monotonic() - started < 0.6
    finally:
        node.destroy_node()
