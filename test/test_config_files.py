"""The shipped rviz config and parameter file agree with what the node publishes and declares."""

from __future__ import annotations

import yaml

from aqr_ros.model.config import NUSCENES_CAMERAS
from aqr_ros.ros.launch_args import rviz_displays
from aqr_ros.ros.node import NODE_NAME
from aqr_ros.ros.params import SPEC_BY_NAME
from conftest import REPO_ROOT


def test_rviz_config_shows_every_output_of_the_node():
    rviz = yaml.safe_load((REPO_ROOT / "config" / "aqr.rviz").read_text())
    topics = {d["Topic"]["Value"]: d["Class"] for d in rviz_displays(rviz)}
    base = f"/{NODE_NAME}"
    assert topics[f"{base}/output/markers"] == "rviz_default_plugins/MarkerArray"
    assert topics[f"{base}/output/detections"] == "vision_msgs_rviz_plugins/Detection3DArray"
    assert topics[f"{base}/debug/weight_map/bev"] == "rviz_default_plugins/Image"
    for i in range(len(NUSCENES_CAMERAS)):
        assert topics[f"{base}/debug/weight_map/camera{i}"] == "rviz_default_plugins/Image"
    assert topics["/lidar_top/points"] == "rviz_default_plugins/PointCloud2"
    assert rviz["Visualization Manager"]["Global Options"]["Fixed Frame"] == "lidar_top"


def test_parameter_file_sets_only_declared_parameters_with_a_shipped_model():
    data = yaml.safe_load((REPO_ROOT / "config" / "aqr.yaml").read_text())
    params = data["/**"]["ros__parameters"]

    def flatten(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            name = f"{prefix}{key}"
            out.update(flatten(value, f"{name}.") if isinstance(value, dict) else {name: value})
        return out

    flat = flatten(params)
    assert set(flat) <= set(SPEC_BY_NAME), sorted(set(flat) - set(SPEC_BY_NAME))
    assert flat["model.config"] == "", "the shipped params leave the model to the checkpoint"
    assert len(flat["sync.camera_offsets"]) == len(NUSCENES_CAMERAS)


def test_package_xml_names_what_the_launch_files_and_the_rviz_layout_run():
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.parse(REPO_ROOT / "package.xml").getroot()
    exec_depends = {e.text for e in root.iter("exec_depend")}
    # rviz:=true starts rviz2; bag_replay.launch.py runs `ros2 bag play` (ros2bag, with the storage plugins)
    assert {"rviz2", "vision_msgs_rviz_plugins", "ros2bag", "rosbag2_storage_default_plugins", "launch_ros",
            "python3-torch"} <= exec_depends
    rviz = yaml.safe_load((REPO_ROOT / "config" / "aqr.rviz").read_text())
    plugin_packages = {d["Class"].split("/")[0] for d in rviz_displays(rviz)}
    # rviz2 brings rviz_common and rviz_default_plugins; every other display plugin package must be a dependency.
    assert plugin_packages - {"rviz_common", "rviz_default_plugins"} <= exec_depends, plugin_packages
    # safetensors has no rosdep key: a made-up key would make `rosdep install` fail for every user
    assert not any("safetensors" in name for name in exec_depends)
