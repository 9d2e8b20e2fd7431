"""The synthetic rig exported as a nuScenes dataset: loaded by the real devkit, files, timing, calibration and
annotations checked against the rig that rendered them."""

from __future__ import annotations

import json
from collections import defaultdict

import cv2
import numpy as np
import pytest

from aqr_ros.pipeline.rotations import matrix_from_quaternion
from aqr_ros.tools.detection_metrics import points_in_boxes
from aqr_ros.tools.nuscenes_export import CAMERA_CHANNELS, LIDAR_CHANNEL, export_rig_nuscenes, main
from aqr_ros.tools.nuscenes_tables import detection_class
from aqr_ros.tools.synthetic_rig import CAMERA_PERIOD, LIDAR_PERIOD, invert_rigid
from nuscenes_fixtures import run_devkit

# Loads the dataset with the devkit; prints table sizes, each sample's channels and every annotation's velocity.
_DEVKIT_PROBE = """
import json, sys
from nuscenes import NuScenes
nusc = NuScenes(version=sys.argv[2], dataroot=sys.argv[1], verbose=False)
tables = {name: len(getattr(nusc, name)) for name in nusc.table_names}
channels = {s["token"]: sorted(s["data"]) for s in nusc.sample}
velocity = {a["token"]: nusc.box_velocity(a["token"])[:2].tolist() for a in nusc.sample_annotation}
print(json.dumps({"tables": tables, "channels": channels, "velocity": velocity}))
"""


def _tables(export) -> dict[str, list[dict]]:
    folder = export.dataroot / export.version
    return {path.stem: json.loads(path.read_text()) for path in folder.glob("*.json")}


def _pose(record: dict) -> np.ndarray:
    w, x, y, z = record["rotation"]
    T = np.eye(4)
    T[:3, :3] = matrix_from_quaternion((x, y, z, w))
    T[:3, 3] = record["translation"]
    return T


def _by_token(records: list[dict]) -> dict[str, dict]:
    return {r["token"]: r for r in records}


def _scene_of_sample(tables) -> dict[str, str]:
    scenes = _by_token(tables["scene"])
    return {s["token"]: scenes[s["scene_token"]]["name"] for s in tables["sample"]}


def _channel(tables) -> dict[str, str]:
    """sample_data token → channel."""
    sensors = _by_token(tables["sensor"])
    calib = _by_token(tables["calibrated_sensor"])
    return {sd["token"]: sensors[calib[sd["calibrated_sensor_token"]]["sensor_token"]]["channel"]
            for sd in tables["sample_data"]}


@pytest.fixture(scope="module")
def devkit_view(rig_nuscenes, devkit_python) -> dict:
    """What the devkit sees of the exported dataset."""
    return run_devkit(devkit_python, _DEVKIT_PROBE, str(rig_nuscenes.dataroot), rig_nuscenes.version)


def test_devkit_loads_every_table(rig_nuscenes, devkit_view):
    tables = _tables(rig_nuscenes)
    assert devkit_view["tables"] == {name: len(records) for name, records in tables.items()}
    assert devkit_view["tables"] == rig_nuscenes.counts
    # Every sample has the LiDAR and all six cameras as key frames.
    expected = sorted([LIDAR_CHANNEL, *CAMERA_CHANNELS])
    assert len(devkit_view["channels"]) == 6
    assert all(channels == expected for channels in devkit_view["channels"].values())


def test_devkit_velocity_is_the_rig_objects_velocity(rig_nuscenes, devkit_view):
    tables = _tables(rig_nuscenes)
    instance_of = {a["token"]: a["instance_token"] for a in tables["sample_annotation"]}
    rigs = {name: rig_nuscenes.synthetic_rig(name) for name in rig_nuscenes.scenes}
    assert len(devkit_view["velocity"]) == len(instance_of) > 40
    for token, velocity in devkit_view["velocity"].items():
        scene, m = rig_nuscenes.instances[instance_of[token]]
        np.testing.assert_allclose(velocity, rigs[scene].scene.objects[m].velocity, atol=1e-6)


def test_keyframes_at_2hz_and_camera_keyframes_closest(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    channel = _channel(tables)
    scene_of = _scene_of_sample(tables)
    samples = _by_token(tables["sample"])
    for scene in rig_nuscenes.scenes:
        tokens = rig_nuscenes.sample_tokens[scene]
        stamps = [samples[t]["timestamp"] for t in tokens]
        assert len(tokens) == 3 and np.all(np.diff(stamps) == 500_000)
        # The sample chain runs through the scene in time order.
        assert [samples[t]["prev"] for t in tokens] == ["", *tokens[:-1]]
        assert [samples[t]["next"] for t in tokens] == [*tokens[1:], ""]
    keys = defaultdict(dict)
    data = defaultdict(list)
    for sd in tables["sample_data"]:
        folder = sd["filename"].split("/")[0]
        assert folder == ("samples" if sd["is_key_frame"] else "sweeps")
        assert sd["filename"].split("/")[1] == channel[sd["token"]]
        data[scene_of[sd["sample_token"]], channel[sd["token"]]].append(sd)
        if sd["is_key_frame"]:
            assert channel[sd["token"]] not in keys[sd["sample_token"]]
            keys[sd["sample_token"]][channel[sd["token"]]] = sd
    for (scene, ch), records in data.items():
        stamps = np.array(sorted(r["timestamp"] for r in records))
        period = LIDAR_PERIOD if ch == LIDAR_CHANNEL else CAMERA_PERIOD
        assert np.abs(np.diff(stamps) - period * 1e6).max() <= 1  # µs rounding
        if ch == LIDAR_CHANNEL:
            assert len(records) == rig_nuscenes.lidar_frames
    for sample_token, by_channel in keys.items():
        t_key = samples[sample_token]["timestamp"]
        assert by_channel[LIDAR_CHANNEL]["timestamp"] == t_key
        scene = scene_of[sample_token]
        for ch in CAMERA_CHANNELS:
            others = [r["timestamp"] for r in data[scene, ch]]
            assert abs(by_channel[ch]["timestamp"] - t_key) == min(abs(s - t_key) for s in others)
            assert abs(by_channel[ch]["timestamp"] - t_key) < LIDAR_PERIOD * 1e6


def test_prev_next_chains_cover_each_channel_in_time_order(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    records = _by_token(tables["sample_data"])
    firsts = [r for r in records.values() if r["prev"] == ""]
    assert len(firsts) == 2 * 7
    seen = 0
    for first in firsts:
        chain = [first]
        while chain[-1]["next"]:
            nxt = records[chain[-1]["next"]]
            assert nxt["prev"] == chain[-1]["token"] and nxt["timestamp"] > chain[-1]["timestamp"]
            chain.append(nxt)
        seen += len(chain)
    assert seen == len(records)


def test_files_exist_with_the_rigs_points_and_images(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    channel = _channel(tables)
    scene_of = _scene_of_sample(tables)
    rigs = {name: rig_nuscenes.synthetic_rig(name) for name in rig_nuscenes.scenes}
    checked_cloud = checked_image = 0
    for sd in tables["sample_data"]:
        path = rig_nuscenes.dataroot / sd["filename"]
        assert path.is_file(), path
        ch = channel[sd["token"]]
        if ch == LIDAR_CHANNEL:
            assert sd["fileformat"] == "pcd" and path.name.endswith(".pcd.bin") and path.stat().st_size % 20 == 0
            assert (sd["width"], sd["height"]) == (0, 0)
        else:
            assert sd["fileformat"] == "jpg" and (sd["width"], sd["height"]) == (1600, 900)
        if not sd["is_key_frame"] or checked_cloud + checked_image > 8:
            continue
        rig = rigs[scene_of[sd["sample_token"]]]
        t = rig_nuscenes.rig_time(scene_of[sd["sample_token"]], sd["timestamp"])
        if ch == LIDAR_CHANNEL:
            cloud = np.fromfile(path, dtype="<f4").reshape(-1, 5)
            sweep = rig.lidar_sweep(t)
            expected = np.column_stack([sweep["x"], sweep["y"], sweep["z"], sweep["intensity"], sweep["ring"]])
            np.testing.assert_array_equal(cloud, expected.astype(np.float32))
            assert cloud[:, 3].max() > 1.0  # intensity as the rig produces it (0..255), not rescaled
            checked_cloud += 1
        else:
            image = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR)
            assert image.shape == (900, 1600, 3)
            rendered = rig.camera_image(CAMERA_CHANNELS.index(ch), t)
            assert np.abs(image.astype(np.int16) - rendered).mean() < 2.0
            checked_image += 1
    assert checked_cloud >= 1 and checked_image >= 1


def test_lidar2img_from_the_exported_calibration_is_the_rigs(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    sensors = {s["token"]: s["channel"] for s in tables["sensor"]}
    rig = rig_nuscenes.synthetic_rig(rig_nuscenes.scenes[0]).rig
    calib = {sensors[c["sensor_token"]]: c for c in tables["calibrated_sensor"]
             if c["token"] in {sd["calibrated_sensor_token"] for sd in tables["sample_data"]}}
    T_ego_lidar = _pose(calib[LIDAR_CHANNEL])
    for i, ch in enumerate(CAMERA_CHANNELS):
        K4 = np.eye(4)
        K4[:3, :3] = calib[ch]["camera_intrinsic"]
        lidar2img = K4 @ invert_rigid(_pose(calib[ch])) @ T_ego_lidar
        np.testing.assert_allclose(lidar2img, rig.lidar2img(i), atol=1e-6, rtol=0)
        np.testing.assert_allclose(rig_nuscenes.lidar2img[i], rig.lidar2img(i), atol=1e-12, rtol=0)


def test_ego_poses_are_the_rigs_odom_poses(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    poses = _by_token(tables["ego_pose"])
    scene_of = _scene_of_sample(tables)
    rigs = {name: rig_nuscenes.synthetic_rig(name) for name in rig_nuscenes.scenes}
    moved = 0.0
    for sd in tables["sample_data"]:
        pose = poses[sd["ego_pose_token"]]
        assert pose["timestamp"] == sd["timestamp"]
        scene = scene_of[sd["sample_token"]]
        expected = rigs[scene].ego_pose(rig_nuscenes.rig_time(scene, sd["timestamp"]))
        # Stamps are whole µs: the rig time they give back is off by up to 0.5 µs (< 1e-5 m at 12 m/s).
        np.testing.assert_allclose(_pose(pose), expected, atol=1e-5)
        moved = max(moved, float(np.linalg.norm(expected[:2, 3])))
    assert moved > 1.0  # the ego moves: a wrong timestamp would show


def test_annotations_are_the_rig_boxes_at_the_key_frame(rig_nuscenes):
    tables = _tables(rig_nuscenes)
    samples = _by_token(tables["sample"])
    instances = _by_token(tables["instance"])
    categories = {c["token"]: c["name"] for c in tables["category"]}
    attributes = {a["token"]: a["name"] for a in tables["attribute"]}
    scene_of = _scene_of_sample(tables)
    rigs = {name: rig_nuscenes.synthetic_rig(name) for name in rig_nuscenes.scenes}
    channel = _channel(tables)
    lidar_keys = {sd["sample_token"]: sd for sd in tables["sample_data"]
                  if sd["is_key_frame"] and channel[sd["token"]] == LIDAR_CHANNEL}
    annotations = _by_token(tables["sample_annotation"])
    with_points = 0
    for ann in annotations.values():
        scene, m = rig_nuscenes.instances[ann["instance_token"]]
        rig = rigs[scene]
        obj = rig.scene.objects[m]
        t = rig_nuscenes.rig_time(scene, samples[ann["sample_token"]]["timestamp"])
        centre, R, half, _ = rig.scene.box_states(t)
        np.testing.assert_allclose(ann["translation"], centre[m], atol=1e-9)
        np.testing.assert_allclose(ann["size"], [obj.size[1], obj.size[0], obj.size[2]], atol=1e-9)
        np.testing.assert_allclose(_pose(ann)[:3, :3], R[m], atol=1e-9)
        # The devkit's detection mapping of the category gives back the rig's class.
        assert detection_class(categories[instances[ann["instance_token"]]["category_token"]]) == obj.class_name
        names = [attributes[a] for a in ann["attribute_tokens"]]
        moving = np.hypot(*obj.velocity) > 0.2
        if obj.class_name in ("car", "truck", "bus"):
            assert names == ["vehicle.moving" if moving else "vehicle.parked"]
        elif obj.class_name == "pedestrian":
            assert names == ["pedestrian.moving" if moving else "pedestrian.standing"]
        assert ann["visibility_token"] in {"1", "2", "3", "4"} and ann["num_radar_pts"] == 0
        with_points += ann["num_lidar_pts"] > 0
        # The instance chain links its annotations in time order.
        if ann["next"]:
            assert annotations[ann["next"]]["instance_token"] == ann["instance_token"]
            assert samples[annotations[ann["next"]]["sample_token"]]["prev"] == ann["sample_token"]
    assert with_points > len(annotations) // 2
    # Points per box are counted in the key sweep's file.
    token, sd = next(iter(lidar_keys.items()))
    cloud = np.fromfile(rig_nuscenes.dataroot / sd["filename"], dtype="<f4").reshape(-1, 5)
    scene = scene_of[token]
    rig = rigs[scene]
    boxes, _ = rig.ground_truth_boxes(rig_nuscenes.rig_time(scene, sd["timestamp"]))
    counts = points_in_boxes(cloud[:, :3], boxes)
    ours = [a for a in annotations.values() if a["sample_token"] == token]
    assert [a["num_lidar_pts"] for a in sorted(ours, key=lambda a: rig_nuscenes.instances[a["instance_token"]][1])] \
        == counts.tolist()
    # Visibility: clearly visible objects exist, and so do hidden ones (out of view, occluded).
    levels = {a["visibility_token"] for a in annotations.values()}
    assert "4" in levels and "1" in levels


def test_export_is_deterministic_and_the_cli_reports(tmp_path, capsys, rig_nuscenes):
    assert main(["--dataroot", str(tmp_path), "--scenes", "scene-0103", "--seconds", "0.1"]) == 0
    out = capsys.readouterr()
    assert "1 scenes, 1 samples" in out.out and "LiDAR frame 2/2" in out.err
    again = export_rig_nuscenes(tmp_path / "again", scenes=("scene-0103",), seconds=0.1)
    for name in ("sample_annotation", "sample_data", "ego_pose"):
        assert (tmp_path / "v1.0-mini" / f"{name}.json").read_text() == \
            (again.dataroot / "v1.0-mini" / f"{name}.json").read_text()
    # The first scene of the session's export is the same rig scene: same tokens, same annotations.
    assert again.sample_tokens["scene-0103"][0] == rig_nuscenes.sample_tokens["scene-0103"][0]


def test_export_refuses_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="scene kind"):
        export_rig_nuscenes(tmp_path, scene_kind="city")
    with pytest.raises(ValueError, match="distinct"):
        export_rig_nuscenes(tmp_path, scenes=("scene-0103", "scene-0103"))
    with pytest.raises(ValueError, match="at least one LiDAR frame"):
        export_rig_nuscenes(tmp_path, seconds=0.01)
