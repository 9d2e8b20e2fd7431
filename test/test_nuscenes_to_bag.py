"""aqr_nuscenes_to_bag on the synthetic rig exported as a nuScenes dataset (fixture ``rig_nuscenes_bag``): every
sample_data reaches the bag with its stamp, images keep their JPEG bytes, tf and camera_info give back the rig's
calibration and ego poses, the ground truth is the rig's boxes; a missing file, sqlite3 storage, truncated bags."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

FULL = 10**9  # ns per s


@pytest.fixture(scope="module")
def bag_messages(rig_nuscenes_bag) -> list:
    """Every message of the converted scene's bag as (topic, stamp ns, message), read once."""
    from aqr_ros.tools.bag_io import read_messages

    return list(read_messages(rig_nuscenes_bag.bag))


@pytest.fixture(scope="module")
def tables(rig_nuscenes_bag):
    """The exported dataset's tables."""
    from aqr_ros.tools.nuscenes_tables import NuScenesTables

    return NuScenesTables(rig_nuscenes_bag.dataroot, rig_nuscenes_bag.version)


def _topic_of(channel: str) -> str:
    return "/lidar_top/points" if channel == "LIDAR_TOP" else f"/{channel.lower()}/image_raw/compressed"


def _stamp_ns(stamp) -> int:
    return stamp.sec * FULL + stamp.nanosec


def test_every_sample_data_is_in_the_bag_with_its_stamp(rig_nuscenes_bag, bag_messages, tables):
    """Per topic, the bag's receive times and header stamps are exactly the table's sample_data timestamps (key
    frames and sweeps; camera_info with every image, one ego pose on /tf per sample_data), /gt/detections one per
    key frame, and /tf_static once."""
    scene = tables.scene(rig_nuscenes_bag.scene)
    expected: dict[str, list[int]] = defaultdict(list)
    for sd in tables.sample_data(scene):
        stamp = sd["timestamp"] * 1000
        channel = tables.channel(sd)
        expected[_topic_of(channel)].append(stamp)
        if channel != "LIDAR_TOP":
            expected[f"/{channel.lower()}/camera_info"].append(stamp)
        expected["/tf"].append(stamp)
    expected["/gt/detections"] = [t * 1000 for t in tables.keyframe_tokens(scene)]
    assert len(expected) == 1 + 2 * 6 + 2
    got: dict[str, list[int]] = defaultdict(list)
    for topic, stamp, msg in bag_messages:
        header = msg.transforms[0].header if topic in ("/tf", "/tf_static") else msg.header
        if topic != "/tf_static":
            assert _stamp_ns(header.stamp) == stamp, topic
        got[topic].append(stamp)
    assert set(got) == set(expected) | {"/tf_static"}
    for topic, stamps in expected.items():
        assert got[topic] == sorted(stamps), topic
    assert got["/tf_static"] == [min(got["/tf"])]
    assert [stamp for _, stamp, _ in bag_messages] == sorted(stamp for _, stamp, _ in bag_messages)


def test_clouds_hold_the_file_values(rig_nuscenes_bag, bag_messages, tables):
    """x, y, z, intensity float32 and ring uint16 with exactly the values of each .pcd.bin, frame lidar_top."""
    from sensor_msgs.msg import PointField

    from aqr_ros.ros.from_msg import pointcloud2_to_array

    files = {sd["timestamp"] * 1000: tables.path(sd)
             for sd in tables.sample_data(tables.scene(rig_nuscenes_bag.scene), {"LIDAR_TOP"})}
    clouds = [(stamp, msg) for topic, stamp, msg in bag_messages if topic == "/lidar_top/points"]
    for stamp, msg in clouds[:2] + clouds[-2:]:
        assert msg.header.frame_id == "lidar_top"
        assert {f.name: f.datatype for f in msg.fields} == {
            "x": PointField.FLOAT32, "y": PointField.FLOAT32, "z": PointField.FLOAT32,
            "intensity": PointField.FLOAT32, "ring": PointField.UINT16}
        columns = np.fromfile(files[stamp], dtype="<f4").reshape(-1, 5)
        assert len(columns) > 1000
        cloud = pointcloud2_to_array(msg, ("x", "y", "z", "intensity", "ring")).points
        np.testing.assert_array_equal(cloud, columns)


def test_images_are_the_original_jpeg_bytes(rig_nuscenes_bag, bag_messages, tables):
    """Every CompressedImage carries its file's bytes unchanged, format jpeg, in the camera's optical frame."""
    files = {(_topic_of(tables.channel(sd)), sd["timestamp"] * 1000): tables.path(sd)
             for sd in tables.sample_data(tables.scene(rig_nuscenes_bag.scene))}
    images = [(topic, stamp, msg) for topic, stamp, msg in bag_messages if topic.endswith("/compressed")]
    assert len({topic for topic, _, _ in images}) == 6
    for topic, stamp, msg in images:
        assert bytes(msg.data) == files[topic, stamp].read_bytes(), (topic, stamp)
        assert msg.format == "jpeg"
        assert msg.header.frame_id == topic.split("/")[1] + "_optical"


def _tf_buffer(bag_messages):
    """A tf2_ros Buffer (the real one on a ROS install, else the test double) filled from the bag's tf topics."""
    import tf2_ros
    from rclpy.duration import Duration

    buffer = tf2_ros.Buffer(cache_time=Duration(seconds=3600))
    for topic, _, msg in bag_messages:
        if topic == "/tf_static":
            for t in msg.transforms:
                buffer.set_transform_static(t, "bag")
        elif topic == "/tf":
            for t in msg.transforms:
                buffer.set_transform(t, "bag")
    return buffer


def test_lidar2img_from_tf_and_camera_info_is_the_rigs(rig_nuscenes_bag, bag_messages):
    """The node's calibration from the bag (T_cam_lidar looked up in tf, K from camera_info, the pipeline's
    lidar2img in the export's LiDAR axes) gives back the rig's ``Rig.lidar2img(i)`` of every camera to 1e-6."""
    from rclpy.time import Time

    from aqr_ros.pipeline.calibration import axes_to_model, lidar2img
    from aqr_ros.ros.from_msg import camera_info_intrinsics
    from aqr_ros.ros.tf_source import transform_to_matrix

    export = rig_nuscenes_bag.export
    rig = export.synthetic_rig(rig_nuscenes_bag.scene).rig
    buffer = _tf_buffer(bag_messages)
    infos = {}
    for topic, _, msg in bag_messages:
        if topic.endswith("/camera_info"):
            infos.setdefault(topic.split("/")[1], msg)
    assert set(infos) == {cam.name for cam in rig.cameras}
    for i, cam in enumerate(rig.cameras):
        info = infos[cam.name]
        K, (height, width), D, model = camera_info_intrinsics(info)
        assert (height, width) == (cam.height, cam.width) and model == "plumb_bob" and not np.any(D)
        np.testing.assert_array_equal(np.array(info.p).reshape(3, 4), np.hstack([K, np.zeros((3, 1))]))
        T_cam_lidar = transform_to_matrix(buffer.lookup_transform(info.header.frame_id, "lidar_top", Time()))
        K4 = np.eye(4)
        K4[:3, :3] = K
        # The pipeline's lidar2img takes model-frame points; the rig's takes points of the cloud's own axes.
        from_bag = lidar2img(K4, T_cam_lidar, export.lidar_axes) @ axes_to_model(export.lidar_axes)
        np.testing.assert_allclose(from_bag, rig.lidar2img(i), atol=1e-6, rtol=0)


def test_tf_at_each_sample_data_stamp_is_its_ego_pose(rig_nuscenes_bag, bag_messages, tables):
    """map -> base_link looked up at a sample_data's stamp is its ego_pose record, i.e. the rig's pose then (up to the
    export's rounding of times to whole microseconds)."""
    from rclpy.time import Time

    from aqr_ros.ros.tf_source import transform_to_matrix
    from aqr_ros.tools.nuscenes_tables import pose_matrix

    rig = rig_nuscenes_bag.export.synthetic_rig(rig_nuscenes_bag.scene)
    buffer = _tf_buffer(bag_messages)
    records = tables.sample_data(tables.scene(rig_nuscenes_bag.scene))
    start = records[0]["timestamp"]
    for sd in records[:: max(1, len(records) // 20)]:
        T = transform_to_matrix(buffer.lookup_transform("map", "base_link", Time(nanoseconds=sd["timestamp"] * 1000)))
        np.testing.assert_allclose(T, pose_matrix(tables.ego_pose(sd)), atol=1e-9, rtol=0)
        np.testing.assert_allclose(T, rig.ego_pose((sd["timestamp"] - start) * 1e-6), atol=1e-4, rtol=0)


def test_tf_static_is_recorded_transient_local(rig_nuscenes_bag):
    """/tf_static carries the transient-local QoS override (``ros2 bag play`` latches it); /tf does not."""
    from rosbags.interfaces import QosDurability

    from aqr_ros.tools.bag_io import bag_topics

    topics = bag_topics(rig_nuscenes_bag.bag)
    assert [q.durability for q in topics["/tf_static"].offered_qos] == [QosDurability.TRANSIENT_LOCAL]
    assert not any(q.durability == QosDurability.TRANSIENT_LOCAL for q in topics["/tf"].offered_qos)


def test_bag_types_carry_the_installed_type_hashes(rig_nuscenes_bag):
    """The bag records vision_msgs (registered from its .msg files) with the RIHS01 hash of the installed package."""
    from ament_index_python.packages import get_package_share_directory
    from rosbags.rosbag2 import Reader

    with Reader(rig_nuscenes_bag.bag) as reader:
        digests = {conn.msgtype: conn.digest for conn in reader.connections}
    for msgtype in ("vision_msgs/msg/Detection3DArray", "sensor_msgs/msg/PointCloud2"):
        package, _, name = msgtype.partition("/msg/")
        described = json.loads((Path(get_package_share_directory(package)) / "msg" / f"{name}.json").read_text())
        assert digests[msgtype] == described["type_hashes"][0]["hash_string"]


def test_ground_truth_is_the_rigs_boxes_in_the_lidar_frame(rig_nuscenes_bag, bag_messages):
    """Each key frame's /gt/detections is the rig's ground truth then, in lidar_top: geometric centre, yaw, size
    (length, width, height), the rig's class name, the instance token as id."""
    from aqr_ros.pipeline.rotations import yaw_from_quaternion
    from aqr_ros.tools.nuscenes_export import KEYFRAME_EVERY
    from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD

    export = rig_nuscenes_bag.export
    rig = export.synthetic_rig(rig_nuscenes_bag.scene)
    frames = [msg for topic, _, msg in bag_messages if topic == "/gt/detections"]
    assert len(frames) == len(export.sample_tokens[rig_nuscenes_bag.scene])
    for k, msg in enumerate(frames):
        assert msg.header.frame_id == "lidar_top"
        boxes, names = rig.ground_truth_boxes(k * KEYFRAME_EVERY * LIDAR_PERIOD)
        assert len(msg.detections) == len(boxes) > 0
        for det in msg.detections:
            scene, m = export.instances[det.id]
            assert scene == rig_nuscenes_bag.scene
            x, y, z_bottom, dx, dy, dz, yaw = boxes[m, :7]
            c, q, s = det.bbox.center.position, det.bbox.center.orientation, det.bbox.size
            np.testing.assert_allclose([c.x, c.y, c.z], [x, y, z_bottom + dz / 2.0], atol=1e-5)
            np.testing.assert_allclose([s.x, s.y, s.z], [dx, dy, dz], atol=1e-9)
            assert np.cos(yaw_from_quaternion((q.x, q.y, q.z, q.w)) - yaw) == pytest.approx(1.0, abs=1e-10)
            assert det.results[0].hypothesis.class_id == names[m]
            assert det.results[0].hypothesis.score == 1.0


def _linked_copy(dataroot: Path, target: Path) -> Path:
    """The dataset at ``dataroot`` as a tree of symlinks under ``target`` (files can be removed from the copy)."""
    shutil.copytree(dataroot, target, copy_function=os.symlink)
    return target


def test_missing_file_is_named_and_left_out(rig_nuscenes_bag, bag_messages, tables, tmp_path, capsys):
    """A sweep file missing from the dataroot: a message naming it, a bag without that one cloud (the rest
    intact), the count in the summary, exit code 0."""
    from aqr_ros.tools.bag_io import bag_topics
    from aqr_ros.tools.nuscenes_to_bag import main

    scene = rig_nuscenes_bag.scene
    sweep = next(sd for sd in tables.sample_data(tables.scene(scene), {"LIDAR_TOP"}) if not sd["is_key_frame"])
    copy = _linked_copy(rig_nuscenes_bag.dataroot, tmp_path / "data")
    (copy / sweep["filename"]).unlink()
    code = main(["--dataroot", str(copy), "--version", rig_nuscenes_bag.version, "--scenes", scene,
                 "--out", str(tmp_path / "bags"), "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 0
    assert str(copy / sweep["filename"]) in err and "left out" in err
    assert "1 missing file(s) left out" in out
    topics = bag_topics(tmp_path / "bags" / scene)
    full = bag_topics(rig_nuscenes_bag.bag)
    assert topics["/lidar_top/points"].count == full["/lidar_top/points"].count - 1
    assert {t: v.count for t, v in topics.items() if t != "/lidar_top/points"} == \
        {t: v.count for t, v in full.items() if t != "/lidar_top/points"}


def test_nothing_written_is_an_error_naming_the_table(tmp_path, capsys):
    """A dataroot without tables: exit code 1 and a message naming the missing file."""
    from aqr_ros.tools.nuscenes_to_bag import main

    (tmp_path / "v1.0-mini").mkdir()
    code = main(["--dataroot", str(tmp_path), "--out", str(tmp_path / "bags"), "--no-progress"])
    assert code == 1
    assert str(tmp_path / "v1.0-mini" / "scene.json") in capsys.readouterr().err


def test_existing_bag_is_not_overwritten(rig_nuscenes_bag, capsys):
    """Converting onto an existing bag writes nothing, says so and exits 1."""
    from aqr_ros.tools.nuscenes_to_bag import main

    before = sorted(p.stat().st_mtime_ns for p in rig_nuscenes_bag.bag.iterdir())
    code = main(["--dataroot", str(rig_nuscenes_bag.dataroot), "--version", rig_nuscenes_bag.version, "--scenes",
                 rig_nuscenes_bag.scene, "--out", str(rig_nuscenes_bag.bag.parent), "--no-progress"])
    assert code == 1
    assert "already exists" in capsys.readouterr().out
    assert sorted(p.stat().st_mtime_ns for p in rig_nuscenes_bag.bag.iterdir()) == before


def test_sqlite3_storage_holds_the_same_messages(rig_nuscenes_bag, bag_messages, tables, tmp_path):
    """sqlite3 storage writes a .db3 bag with the same messages as the MCAP one; with ``clock`` also /clock, once
    per distinct sample_data stamp."""
    from aqr_ros.tools.bag_io import read_messages
    from aqr_ros.tools.nuscenes_to_bag import convert_scene

    bag = tmp_path / "sqlite"
    report = convert_scene(tables, rig_nuscenes_bag.scene, bag, storage="sqlite3", clock=True, progress=False)
    assert [p.suffix for p in bag.iterdir() if p.suffix != ".yaml"] == [".db3"]
    expected = defaultdict(list)
    for topic, stamp, msg in bag_messages:
        expected[stamp, topic].append(msg)
    got, clock = defaultdict(list), []
    for topic, stamp, msg in read_messages(bag):
        if topic == "/clock":
            assert _stamp_ns(msg.clock) == stamp
            clock.append(stamp)
        else:
            got[stamp, topic].append(msg)
    assert got == expected
    assert clock == sorted({sd["timestamp"] * 1000 for sd in tables.sample_data(tables.scene(rig_nuscenes_bag.scene))})
    assert report.counts == {**rig_nuscenes_bag.report.counts, "/clock": len(clock)}


def test_topic_and_frame_names_are_configurable(rig_nuscenes_bag, tmp_path):
    """--lidar-topic, --lidar-frame, --image-suffix, --base-frame, --map-frame and --gt-topic rename what they say."""
    from aqr_ros.tools.bag_io import bag_topics, read_messages
    from aqr_ros.tools.nuscenes_to_bag import main

    code = main(["--dataroot", str(rig_nuscenes_bag.dataroot), "--version", rig_nuscenes_bag.version, "--scenes",
                 rig_nuscenes_bag.scene, "--out", str(tmp_path), "--storage", "sqlite3", "--no-progress",
                 "--lidar-topic", "/sensing/points", "--lidar-frame", "velodyne", "--image-suffix", "image/compressed",
                 "--base-frame", "ego", "--map-frame", "world", "--gt-topic", "/truth"])
    assert code == 0
    bag = tmp_path / rig_nuscenes_bag.scene
    topics = bag_topics(bag)
    assert {"/sensing/points", "/cam_front/image/compressed", "/cam_front/camera_info", "/truth"} <= set(topics)
    assert not {"/lidar_top/points", "/gt/detections"} & set(topics)
    static = next(msg for _, _, msg in read_messages(bag, ["/tf_static"]))
    assert {(t.header.frame_id, t.child_frame_id) for t in static.transforms} >= {("ego", "velodyne"),
                                                                                  ("ego", "cam_front_optical")}
    _, _, tf = next(read_messages(bag, ["/tf"]))
    assert (tf.transforms[0].header.frame_id, tf.transforms[0].child_frame_id) == ("world", "ego")
    _, _, gt = next(read_messages(bag, ["/truth"]))
    assert gt.header.frame_id == "velodyne"


def test_detection_classes_follow_the_devkit_mapping():
    """Categories map to the detection classes as the devkit does; the others have none (left out of the GT)."""
    from aqr_ros.tools.nuscenes_tables import detection_class

    assert detection_class("vehicle.bus.bendy") == detection_class("vehicle.bus.rigid") == "bus"
    assert detection_class("human.pedestrian.police_officer") == "pedestrian"
    assert detection_class("movable_object.trafficcone") == "traffic_cone"
    assert detection_class("vehicle.construction") == "construction_vehicle"
    assert detection_class("animal") is None and detection_class("movable_object.debris") is None


def test_truncated_bag_reads_up_to_the_cut_then_names_the_bag(rig_nuscenes_bag, bag_messages, tmp_path):
    """An MCAP cut in half: read_messages yields the messages before the cut (as in the whole bag), then a
    BagError naming the bag; a topic the bag lacks is named before anything is read."""
    from aqr_ros.tools.bag_io import BagError, read_messages

    bag = tmp_path / "cut"
    shutil.copytree(rig_nuscenes_bag.bag, bag)
    (storage,) = bag.glob("*.mcap")
    with storage.open("r+b") as f:
        f.truncate(storage.stat().st_size // 2)
    read = []
    with pytest.raises(BagError, match=str(bag)):
        for item in read_messages(bag):
            read.append(item)
    assert 0 < len(read) < len(bag_messages)
    assert [(t, s) for t, s, _ in read] == [(t, s) for t, s, _ in bag_messages[:len(read)]]
    with pytest.raises(BagError, match="no topic /lidar_top/pointz"):
        list(read_messages(rig_nuscenes_bag.bag, ["/lidar_top/pointz"]))


def test_truncated_sqlite3_bag_is_named(tmp_path):
    """A sqlite3 bag cut short: BagError naming the bag, nothing invented."""
    from std_msgs.msg import String

    from aqr_ros.tools.bag_io import BagError, BagWriter, read_messages

    bag = tmp_path / "db"
    with BagWriter(bag, storage="sqlite3") as writer:
        for i in range(200):
            writer.write("/s", String(data="x" * 1000), i)
    (storage,) = bag.glob("*.db3")
    with storage.open("r+b") as f:
        f.truncate(storage.stat().st_size // 2)
    with pytest.raises(BagError, match=str(bag)):
        list(read_messages(bag))


def test_help_shows_the_defaults(capsys):
    """--help lists the options with their defaults (storage, version, topic and frame names)."""
    from aqr_ros.tools.nuscenes_to_bag import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for default in ("(default: mcap)", "(default: v1.0-mini)", "(default: /lidar_top/points)",
                    "(default: image_raw/compressed)", "(default: map)", "(default: /gt/detections)"):
        assert default in text
