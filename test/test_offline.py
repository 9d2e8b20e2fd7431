"""The node's pipeline driven offline (aqr_ros.ros.offline): every chosen frame processed through the live node's
own callbacks and ``_process``, outputs stamped with their input's header, and past sweeps placed with the LiDAR
pose at each sweep's own stamp. No DDS: the messages are rendered from the synthetic rig in memory."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
from rclpy.parameter import Parameter
from tf2_msgs.msg import TFMessage

from aqr_ros.ros.offline import OfflineAqrNode, OfflineRunner, configure_offline
from aqr_ros.ros.to_msg import nanoseconds_from_stamp, stamp_from_seconds, transform_stamped
from aqr_ros.tools.rig_publisher import frame_messages
from aqr_ros.tools.synthetic_rig import CAMERA_NAMES, LIDAR_FRAME, ODOM_FRAME, SyntheticRig
from conftest import TINY_CONFIG

START_S = 1_700_000_000.0
NUM_LIDAR_FRAMES = 8
CLOUD = "/lidar_top/points"
IMAGES = tuple(f"/{name}/image_raw" for name in CAMERA_NAMES)
INFOS = tuple(f"/{name}/camera_info" for name in CAMERA_NAMES)
#: The node's inputs remapped onto the rig's topics, as the demo and the launch files do.
REMAPS = ["-r", f"~/input/pointcloud:={CLOUD}"] + [
    arg for i in range(6) for arg in ("-r", f"~/input/camera{i}/image:={IMAGES[i]}",
                                      "-r", f"~/input/camera{i}/camera_info:={INFOS[i]}")]


def rig_messages(num_lidar_frames: int) -> Iterator[tuple[str, int, Any]]:
    """(topic, recording time ns, message) of a short rig sequence in time order, the rig publisher's messages as a
    recorder would store them."""
    rig = SyntheticRig(seed=3)
    static = TFMessage(transforms=[transform_stamped(T, parent, child, START_S)
                                   for parent, child, T in rig.rig.static_transforms()])
    yield "/tf_static", int(START_S * 1e9), static
    for frame in rig.frames(num_lidar_frames, start_time=START_S):
        msgs = frame_messages(rig, frame)
        stamp = stamp_from_seconds(frame.stamp)
        for header in msgs.headers:
            header.stamp = stamp
        t_ns = nanoseconds_from_stamp(stamp)
        yield "/tf", t_ns, TFMessage(transforms=[msgs.odom])
        if msgs.cloud is not None:
            yield CLOUD, t_ns, msgs.cloud
        else:
            yield IMAGES[frame.camera], t_ns, msgs.image
            yield INFOS[frame.camera], t_ns, msgs.info


@pytest.fixture(scope="module")
def messages() -> list[tuple[str, int, Any]]:
    return list(rig_messages(NUM_LIDAR_FRAMES))


def offline_node(context: Any, record: set[str], extra: dict[str, Any] | None = None) -> tuple[OfflineAqrNode, list]:
    """A configured offline node on the tiny random model; returns it and the list its outputs go to."""
    written: list[tuple[str, Any, int]] = []
    params = {"model.config": str(TINY_CONFIG), "model.allow_random_weights": True, "model.warmup_iters": 0,
              "autostart": False, "score_threshold": 0.0, "max_detections": 5, "model.threads": 1, **(extra or {})}
    node = OfflineAqrNode(lambda topic, msg, stamp: written.append((topic, msg, stamp)),
                          lambda topic: topic in record, context=context, cli_args=["--ros-args", *REMAPS],
                          parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    configure_offline(node)
    return node, written


def run(node: OfflineAqrNode, messages: list, frames: set[int] | None = None) -> OfflineRunner:
    runner = OfflineRunner(node, frames)
    for topic, t_ns, msg in messages:
        runner.feed(topic, t_ns, msg)
    runner.finish()
    return runner


def cloud_stamps(messages: list) -> list[int]:
    return [t for topic, t, _ in messages if topic == CLOUD]


def test_every_cloud_is_a_frame_and_outputs_carry_their_input_header(ros_context: Any, messages: list) -> None:
    record = {"/aqr_node/output/detections", "/aqr_node/output/markers", "/aqr_node/debug/aqr_weights",
              "/aqr_node/debug/frame_report", "/aqr_node/debug/weight_map/bev", "/aqr_node/debug/weight_map/camera2"}
    node, written = offline_node(ros_context, record)
    try:
        runner = run(node, messages)
        clouds = cloud_stamps(messages)
        assert runner.fatal == "" and runner.processed == len(clouds)
        assert [f.stamp_ns for f in node.detected] == clouds  # none dropped, in order
        by_topic: dict[str, list] = {}
        for topic, msg, stamp in written:
            by_topic.setdefault(topic, []).append((msg, stamp))
        assert set(by_topic) == record
        for topic in ("/aqr_node/output/detections", "/aqr_node/debug/aqr_weights", "/aqr_node/debug/frame_report",
                      "/aqr_node/debug/weight_map/bev"):
            headers = [msg.header for msg, _ in by_topic[topic]]
            assert [nanoseconds_from_stamp(h.stamp) for h in headers] == clouds, topic
            assert {h.frame_id for h in headers} == {LIDAR_FRAME}, topic
        for msg, _ in by_topic["/aqr_node/output/markers"]:
            stamps = {nanoseconds_from_stamp(m.header.stamp) for m in msg.markers if m.action != m.DELETEALL}
            assert len(stamps) <= 1 and stamps <= set(clouds)
        # a camera overlay carries its own image's header: the image fused into that frame
        camera2_stamps = {t for topic, t, _ in messages if topic == IMAGES[2]}
        overlays = by_topic["/aqr_node/debug/weight_map/camera2"]
        assert overlays and all(msg.header.frame_id == "cam_front_left_optical" for msg, _ in overlays)
        assert {nanoseconds_from_stamp(msg.header.stamp) for msg, _ in overlays} <= camera2_stamps
    finally:
        node.destroy_node()


def test_only_chosen_frames_are_inferred_and_the_others_still_are_sweeps(ros_context: Any, messages: list) -> None:
    node, _ = offline_node(ros_context, set())
    pushed: list[float] = []
    push = node.assembler.push_cloud

    def spy(points: np.ndarray, stamp_s: float, pose: Any) -> bool:
        pushed.append(stamp_s)
        return push(points, stamp_s, pose)

    node.assembler.push_cloud = spy  # type: ignore[method-assign]
    try:
        clouds = cloud_stamps(messages)
        chosen = {clouds[3], clouds[7]}
        run(node, messages, chosen)
        assert [f.stamp_ns for f in node.detected] == sorted(chosen)
        # every cloud up to the last frame reached the sweep history, in order (tiny config: 10 sweeps kept)
        assert np.allclose(pushed, np.asarray(clouds) * 1e-9, rtol=0, atol=1e-6)
    finally:
        node.destroy_node()


def test_past_sweeps_take_the_lidar_pose_at_their_own_stamp(ros_context: Any, messages: list) -> None:
    """Motion compensation asks tf for the LiDAR pose at each sweep's stamp, never for the latest pose."""
    node, _ = offline_node(ros_context, set())
    asked: list[tuple[str, str, int]] = []
    lookup = node.tf.lookup

    def spy(target: str, source: str, stamp: Any = None) -> Any:
        asked.append((target, source, -1 if stamp is None else stamp.nanoseconds))
        return lookup(target, source, stamp)

    node.tf.lookup = spy  # type: ignore[method-assign]
    try:
        clouds = cloud_stamps(messages)
        run(node, messages, {clouds[-1]})
        pose_stamps = [stamp for target, source, stamp in asked if (target, source) == (ODOM_FRAME, LIDAR_FRAME)]
        # the frame's own cloud and every earlier cloud (the tiny config keeps 10 sweeps, there are fewer)
        assert sorted(set(pose_stamps)) == clouds
        frame = node.detected[-1]
        assert frame.T_fixed_lidar is not None
    finally:
        node.destroy_node()


def test_two_offline_runs_give_identical_detections(ros_context: Any, messages: list) -> None:
    results = []
    for _ in range(2):
        node, _ = offline_node(ros_context, set())
        try:
            run(node, messages[: len(messages) // 2])
            results.append([(f.stamp_ns, f.detections.boxes.center.copy(), f.detections.scores.copy())
                            for f in node.detected])
        finally:
            node.destroy_node()
    assert len(results[0]) == len(results[1]) > 0
    for (s0, c0, p0), (s1, c1, p1) in zip(*results):
        assert s0 == s1 and np.array_equal(c0, c1) and np.array_equal(p0, p1)
