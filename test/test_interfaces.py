"""The test-only vision_msgs, tf2_msgs and autoware_perception_msgs carry upstream RIHS01 type hashes and serialize.

Equal RIHS01 hashes mean our locally generated interfaces interoperate with real ROS 2 Kilted
graphs and bags. rosbags' Kilted typestore knows tf2_msgs but not vision_msgs or Autoware's messages, so
those are registered into it from the upstream field lists below (vision_msgs 4.1.x, ros2 branch;
autoware_msgs' autoware_perception_msgs), which makes rosbags hash every dependency (Header, Pose,
PoseWithCovariance, ...) from its own Kilted definitions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.ros

INTERFACES_DIR = Path(__file__).resolve().parent / "interfaces"

# Upstream vision_msgs field lists (type, name) of the messages aqr_ros uses, in upstream order.
UPSTREAM_VISION_MSGS: dict[str, list[tuple[str, str]]] = {
    "ObjectHypothesis": [("string", "class_id"), ("float64", "score")],
    "ObjectHypothesisWithPose": [
        ("vision_msgs/ObjectHypothesis", "hypothesis"),
        ("geometry_msgs/PoseWithCovariance", "pose"),
    ],
    "BoundingBox3D": [("geometry_msgs/Pose", "center"), ("geometry_msgs/Vector3", "size")],
    "Detection3D": [
        ("std_msgs/Header", "header"),
        ("vision_msgs/ObjectHypothesisWithPose[]", "results"),
        ("vision_msgs/BoundingBox3D", "bbox"),
        ("string", "id"),
    ],
    "Detection3DArray": [
        ("std_msgs/Header", "header"),
        ("vision_msgs/Detection3D[]", "detections"),
    ],
    "VisionClass": [("uint16", "class_id"), ("string", "class_name")],
    "LabelInfo": [
        ("std_msgs/Header", "header"),
        ("vision_msgs/VisionClass[]", "class_map"),
        ("float32", "threshold"),
    ],
}


# Upstream autoware_perception_msgs field lists of DetectedObjects and its parts (constants do not enter the hash).
UPSTREAM_AUTOWARE_MSGS: dict[str, list[tuple[str, str]]] = {
    "ObjectClassification": [("uint8", "label"), ("float32", "probability")],
    "Shape": [("uint8", "type"), ("geometry_msgs/Polygon", "footprint"), ("geometry_msgs/Vector3", "dimensions")],
    "DetectedObjectKinematics": [
        ("geometry_msgs/PoseWithCovariance", "pose_with_covariance"),
        ("bool", "has_position_covariance"),
        ("uint8", "orientation_availability"),
        ("geometry_msgs/TwistWithCovariance", "twist_with_covariance"),
        ("bool", "has_twist"),
        ("bool", "has_twist_covariance"),
    ],
    "DetectedObject": [
        ("float32", "existence_probability"),
        ("autoware_perception_msgs/ObjectClassification[]", "classification"),
        ("autoware_perception_msgs/DetectedObjectKinematics", "kinematics"),
        ("autoware_perception_msgs/Shape", "shape"),
    ],
    "DetectedObjects": [("std_msgs/Header", "header"), ("autoware_perception_msgs/DetectedObject[]", "objects")],
}
UPSTREAM = {"vision_msgs": UPSTREAM_VISION_MSGS, "autoware_perception_msgs": UPSTREAM_AUTOWARE_MSGS}


def _kilted_typestore():
    """rosbags' Kilted typestore extended with the upstream vision_msgs and Autoware definitions."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    for package, messages in UPSTREAM.items():
        for name, fields in messages.items():
            text = "\n".join(f"{typ} {field}" for typ, field in fields)
            store.register(get_types_from_msg(text, f"{package}/msg/{name}"))
    return store


@pytest.fixture(scope="module")
def kilted_store():
    return _kilted_typestore()


def _written_messages() -> list[str]:
    """Every message defined under test/interfaces, as 'pkg/msg/Name'."""
    return sorted(
        f"{path.parent.parent.name}/msg/{path.stem}" for path in INTERFACES_DIR.glob("*/msg/*.msg")
    )


def _generated_hash(type_name: str) -> str:
    """RIHS01 hash rosidl generated for ``type_name`` (from the installed type description)."""
    from ament_index_python.packages import get_package_share_directory

    package, _, name = type_name.split("/")
    description = Path(get_package_share_directory(package)) / "msg" / f"{name}.json"
    hashes = json.loads(description.read_text())["type_hashes"]
    return next(entry["hash_string"] for entry in hashes if entry["type_name"] == type_name)


def test_every_written_message_is_checked():
    """The hash test below covers exactly the messages written under test/interfaces."""
    expected = sorted(
        [f"{package}/msg/{name}" for package, messages in UPSTREAM.items() for name in messages]
        + ["tf2_msgs/msg/TFMessage"]
    )
    assert _written_messages() == expected


@pytest.mark.parametrize("type_name", _written_messages())
def test_generated_type_hash_matches_upstream_kilted(kilted_store, type_name: str):
    generated = _generated_hash(type_name)
    assert generated.startswith("RIHS01_")
    assert generated == kilted_store.hash_rihs01(type_name)


def test_tfmessage_is_rosbags_own_kilted_definition():
    """tf2_msgs comes straight from rosbags' store (not from our field lists)."""
    from rosbags.typesys import Stores, get_typestore

    assert _generated_hash("tf2_msgs/msg/TFMessage") == get_typestore(
        Stores.ROS2_KILTED
    ).hash_rihs01("tf2_msgs/msg/TFMessage")


def test_graph_advertises_the_upstream_hash(kilted_store):
    """The hash a publisher announces on the graph (from the C typesupport) is upstream's too."""
    import rclpy
    from rclpy.context import Context
    from vision_msgs.msg import Detection3DArray

    topic = f"/aqr_test_{os.getpid()}/type_hash_probe"
    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("aqr_type_hash_probe", context=context)
        node.create_publisher(Detection3DArray, topic, 1)
        (info,) = node.get_publishers_info_by_topic(topic)
        assert str(info.topic_type_hash) == kilted_store.hash_rihs01(
            "vision_msgs/msg/Detection3DArray"
        )
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def _sample_detections():
    """A Detection3DArray with two detections exercising every nested field."""
    from geometry_msgs.msg import Point, Pose, PoseWithCovariance, Quaternion, Vector3
    from std_msgs.msg import Header
    from vision_msgs.msg import (
        BoundingBox3D,
        Detection3D,
        Detection3DArray,
        ObjectHypothesis,
        ObjectHypothesisWithPose,
    )

    header = Header(frame_id="lidar_top")
    header.stamp.sec, header.stamp.nanosec = 1_700_000_123, 456_789_000
    detections = []
    for index, (label, score) in enumerate([("car", 0.875), ("pedestrian", 0.25)]):
        pose = Pose(
            position=Point(x=10.5 + index, y=-2.25, z=0.75),
            orientation=Quaternion(x=0.0, y=0.0, z=0.38268343236, w=0.92387953251),
        )
        covariance = [0.0] * 36
        covariance[0] = covariance[7] = 0.5 + index
        result = ObjectHypothesisWithPose(
            hypothesis=ObjectHypothesis(class_id=label, score=score),
            pose=PoseWithCovariance(pose=pose, covariance=covariance),
        )
        detections.append(
            Detection3D(
                header=header,
                results=[result],
                bbox=BoundingBox3D(center=pose, size=Vector3(x=4.5, y=1.9, z=1.6 - index)),
                id=str(100 + index),
            )
        )
    return Detection3DArray(header=header, detections=detections)


def test_detection3darray_round_trips_through_rclpy_serialization():
    from rclpy.serialization import deserialize_message, serialize_message
    from vision_msgs.msg import Detection3DArray

    message = _sample_detections()
    data = serialize_message(message)
    assert deserialize_message(data, Detection3DArray) == message
    assert serialize_message(deserialize_message(data, Detection3DArray)) == data


def test_rclpy_cdr_reads_back_in_rosbags_with_upstream_layout(kilted_store):
    """Bytes from our generated type decode with rosbags' upstream layout: same wire format."""
    from rclpy.serialization import serialize_message

    message = _sample_detections()
    decoded = kilted_store.deserialize_cdr(
        serialize_message(message), "vision_msgs/msg/Detection3DArray"
    )
    assert decoded.header.frame_id == "lidar_top"
    assert (decoded.header.stamp.sec, decoded.header.stamp.nanosec) == (1_700_000_123, 456_789_000)
    assert [d.id for d in decoded.detections] == ["100", "101"]
    second = decoded.detections[1]
    assert second.results[0].hypothesis.class_id == "pedestrian"
    assert second.results[0].hypothesis.score == 0.25
    assert second.results[0].pose.covariance[7] == 1.5
    assert (second.bbox.size.x, second.bbox.size.z) == (4.5, pytest.approx(0.6))
    assert second.bbox.center.position.x == 11.5
    assert second.bbox.center.orientation.w == pytest.approx(0.92387953251)
