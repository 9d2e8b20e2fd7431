"""Launch files and the rviz layout: static checks here, the launch descriptions where launch_ros exists."""

import ast
import importlib.util
from pathlib import Path

import pytest
import yaml

from aqr_ros.ros.launch_args import (PARAMETER_ARGUMENTS, compressed_images, file_parameter, node_overrides, node_path,
                                     rviz_config, rviz_displays, write_rviz_config)

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = ("aqr.launch.py", "bag_replay.launch.py")


def _declared_arguments(path: Path) -> set[str]:
    """Names passed to DeclareLaunchArgument in a launch file (read from its syntax tree)."""
    tree = ast.parse(path.read_text())
    return {call.args[0].value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument"
            and call.args and isinstance(call.args[0], ast.Constant)}


def test_launch_files_declare_the_documented_arguments():
    node_args = _declared_arguments(REPO / "launch" / "aqr.launch.py")
    assert {"params_file", "checkpoint", "device", "namespace", "lidar_topic", "camera_namespaces", "image_suffix",
            "use_sim_time", "rviz", "rviz_fixed_frame", "log_level", "lidar_axes", "output_frame", "fixed_frame",
            "fastdds_profile"} <= node_args
    assert set(PARAMETER_ARGUMENTS) <= node_args
    bag_args = _declared_arguments(REPO / "launch" / "bag_replay.launch.py")
    assert {"bag", "rate", "rviz", "rviz_fixed_frame", "namespace", "checkpoint"} | set(
        PARAMETER_ARGUMENTS) <= bag_args
    text = (REPO / "launch" / "bag_replay.launch.py").read_text()
    assert '"--clock"' in text and '"use_sim_time": "true"' in text
    # Playback starts when the node reports active, not after a fixed delay a slow model load outruns.
    assert 'OnStateTransition(goal_state="active", entities=[play]' in text and "TimerAction" not in text
    assert "LifecycleNode(" in (REPO / "launch" / "aqr.launch.py").read_text()
    # The DDS profile is opt-in: set only under a condition, never unconditionally.
    node_text = (REPO / "launch" / "aqr.launch.py").read_text()
    assert "FASTDDS_DEFAULT_PROFILES_FILE" in node_text and 'LaunchConfiguration("fastdds_profile"),\n' in node_text
    assert "condition=IfCondition" in node_text.split("FASTDDS_DEFAULT_PROFILES_FILE")[1][:200]


def test_launch_arguments_override_the_params_file_only_when_given(tmp_path):
    assert node_overrides({"use_sim_time": "false", "compressed": "", "lidar_axes": "", "checkpoint": ""}) == {
        "use_sim_time": False}
    assert node_overrides({"compressed": "false", "lidar_axes": "nuscenes_lidar_top", "output_frame": "base_link",
                           "fixed_frame": "map", "use_sim_time": "true"}) == {
        "use_sim_time": True, "input.compressed_images": False, "input.lidar_axes": "nuscenes_lidar_top",
        "output_frame": "base_link", "tf.fixed_frame": "map"}
    assert node_overrides({"autostart": "false"})["autostart"] is False
    params = tmp_path / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    input:\n      compressed_images: true\n")
    assert compressed_images({"compressed": ""}, params) is True  # the file decides when the argument is not given
    assert compressed_images({"compressed": "false"}, params) is False
    assert compressed_images({}, REPO / "config" / "aqr.yaml") is False
    assert file_parameter(REPO / "config" / "aqr.yaml", "tf.fixed_frame") == "odom"


def test_rviz_layout_shows_cloud_detections_and_seven_weight_maps():
    layout = yaml.safe_load((REPO / "config" / "aqr.rviz").read_text())
    manager = layout["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == "lidar_top"
    displays = manager["Displays"]
    classes = [d["Class"] for d in displays]
    assert "rviz_default_plugins/PointCloud2" in classes and "rviz_default_plugins/MarkerArray" in classes
    assert "vision_msgs_rviz_plugins/Detection3DArray" in classes
    topics = [d["Topic"]["Value"] for d in displays if d["Class"] == "rviz_default_plugins/Image"]
    assert topics == ["/aqr_node/debug/weight_map/bev"] + [f"/aqr_node/debug/weight_map/camera{i}" for i in range(6)]


def _rviz_topics(layout: dict) -> list[str]:
    """The topic of every display in an rviz layout."""
    return [display["Topic"]["Value"] for display in rviz_displays(layout)]


def test_node_path_joins_the_namespace_and_the_node_name():
    assert node_path("") == node_path("/") == "/aqr_node"
    assert node_path("vehicle") == node_path("/vehicle/") == "/vehicle/aqr_node"
    assert node_path("/a/b", "det") == "/a/b/det"


def test_rviz_layout_is_generated_for_the_node_path_the_lidar_topic_and_the_fixed_frame(tmp_path):
    template = REPO / "config" / "aqr.rviz"
    shipped = _rviz_topics(yaml.safe_load(template.read_text()))
    node_topics = [t for t in shipped if t.startswith("/aqr_node/")]
    assert len(node_topics) == 10  # markers, detections, AQR weights per query, 7 weight maps
    layout = rviz_config(template, "/vehicle/perception/aqr_node", "base_link", "/sensing/lidar/points")
    topics = _rviz_topics(layout)
    assert len(topics) == len(shipped)
    assert layout["Visualization Manager"]["Global Options"]["Fixed Frame"] == "base_link"
    moved = [t for t in topics if t != "/sensing/lidar/points"]
    assert len(moved) == len(topics) - 1 and all(t.startswith("/vehicle/perception/aqr_node/") for t in moved), topics
    assert sorted(t[len("/vehicle/perception"):] for t in moved) == sorted(node_topics)
    path = write_rviz_config(template, "/ns/aqr_node", "odom", folder=tmp_path)
    assert path.parent == tmp_path and path.suffix == ".rviz"
    written = yaml.safe_load(path.read_text())
    assert written == rviz_config(template, "/ns/aqr_node", "odom")
    assert "/lidar_top/points" in _rviz_topics(written) and written["Window Geometry"] == {"Height": 1000, "Width": 1600}
    assert yaml.safe_load(template.read_text())["Visualization Manager"]["Global Options"]["Fixed Frame"] == "lidar_top"
    bad = tmp_path / "bad.rviz"
    bad.write_text("Panels: []\n")
    with pytest.raises(ValueError, match="bad.rviz: not an rviz layout"):
        rviz_config(bad, "/aqr_node", "map")


def test_the_node_launch_starts_rviz_with_the_generated_layout():
    text = (REPO / "launch" / "aqr.launch.py").read_text()
    assert 'write_rviz_config(_share("config", "aqr.rviz"), node_path(value("namespace"))' in text
    assert 'value("rviz_fixed_frame"), value("lidar_topic"))' in text
    assert 'OpaqueFunction(function=_rviz, condition=IfCondition(LaunchConfiguration("rviz")))' in text
    assert '"rviz_fixed_frame"' in (REPO / "launch" / "bag_replay.launch.py").read_text().split("PASSED_THROUGH")[1]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_launch_descriptions_build_with_launch_ros():
    pytest.importorskip("launch", reason="the ROS 2 'launch' package is not installed (no ROS 2 distribution here)")
    pytest.importorskip("launch_ros", reason="'launch_ros' is not installed (no ROS 2 distribution here)")
    pytest.importorskip("ament_index_python", reason="'ament_index_python' is not installed")
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from launch import LaunchContext
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    try:
        get_package_share_directory("aqr_ros")
    except PackageNotFoundError:
        pytest.skip("aqr_ros is not installed in an ament prefix (run colcon build and source install/setup.bash)")
    node_launch = _load("aqr.launch.py")
    remaps = node_launch.camera_remaps("/a,/b/", "image_rect", compressed=False)
    assert remaps[:2] == [("~/input/camera0/image", "/a/image_rect"), ("~/input/camera0/camera_info", "/a/camera_info")]
    assert remaps[2] == ("~/input/camera1/image", "/b/image_rect")
    compressed = node_launch.camera_remaps("/a", "image_raw", compressed=True)
    assert compressed[0] == ("~/input/camera0/image/compressed", "/a/image_raw/compressed")
    for name in LAUNCH_FILES:
        description = _load(name).generate_launch_description()
        declared = {a.name for a in description.entities if isinstance(a, DeclareLaunchArgument)}
        assert "checkpoint" in declared
    context = LaunchContext()
    description = node_launch.generate_launch_description()
    for entity in description.entities:
        if isinstance(entity, DeclareLaunchArgument):
            entity.visit(context)
    node_function, rviz_function = [e for e in description.entities if isinstance(e, OpaqueFunction)]
    (node,) = node_function.execute(context)
    assert node.node_executable == "aqr_node"
    (rviz,) = rviz_function.execute(context)  # writes the generated layout
    assert rviz.node_executable == "rviz2"
