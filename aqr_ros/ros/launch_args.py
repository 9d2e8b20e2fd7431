"""What the launch files' arguments change in the node's parameters (plain Python, testable without launch).

A launch argument overrides the parameter file only when the user gives it (a non-empty value): the file
stays the single place where a deployment's settings live, and a default in the launch file cannot silently
replace them. The rviz layout is generated here too, from the shipped one, for the node's namespace and a chosen
fixed frame.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

#: Launch argument → node parameter it overrides when given.
PARAMETER_ARGUMENTS = {
    "checkpoint": "model.checkpoint",
    "model_config": "model.config",
    "device": "model.device",
    "lidar_axes": "input.lidar_axes",
    "output_frame": "output_frame",
    "fixed_frame": "tf.fixed_frame",
    "compressed": "input.compressed_images",
    "autostart": "autostart",
}
#: Launch arguments whose values are closed sets ("" = from the parameter file).
CHOICES = {
    "lidar_axes": ["", "rep103", "nuscenes_lidar_top"],
    "compressed": ["", "true", "false"],
    "autostart": ["", "true", "false"],
    "use_sim_time": ["true", "false"],
    "rviz": ["true", "false"],
    "log_level": ["debug", "info", "warn", "error", "fatal"],
}
_BOOLEAN_PARAMETERS = {"input.compressed_images", "autostart"}


#: The LiDAR topic the node's input is remapped from by default.
DEFAULT_LIDAR_TOPIC = "/lidar_top/points"
#: The image topic under each camera namespace by default (image_pipeline's raw images).
DEFAULT_IMAGE_SUFFIX = "image_raw"
#: The camera namespaces in model camera order (nuScenes: FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT).
DEFAULT_CAMERAS = "/cam_front,/cam_front_right,/cam_front_left,/cam_back,/cam_back_left,/cam_back_right"


def camera_namespaces(value: str) -> list[str]:
    """The namespaces of the comma-separated ``camera_namespaces`` argument (brackets, blanks, trailing / ignored)."""
    return [n.strip().rstrip("/") for n in value.strip("[] ").split(",") if n.strip()]


def camera_remaps(namespaces: str, image_suffix: str, compressed: bool) -> list[tuple[str, str]]:
    """Remappings of ``~/input/camera{i}/...`` onto ``<namespace i>/<image_suffix>`` (``/compressed`` added for
    compressed images) and ``<namespace i>/camera_info``."""
    image = "image/compressed" if compressed else "image"
    suffix = f"{image_suffix}/compressed" if compressed else image_suffix
    remaps = []
    for i, ns in enumerate(camera_namespaces(namespaces)):
        remaps.append((f"~/input/camera{i}/{image}", f"{ns}/{suffix}"))
        remaps.append((f"~/input/camera{i}/camera_info", f"{ns}/camera_info"))
    return remaps


def node_overrides(arguments: Mapping[str, str]) -> dict[str, Any]:
    """Parameter overrides from the given (non-empty) launch arguments, plus ``use_sim_time``."""
    overrides: dict[str, Any] = {"use_sim_time": arguments.get("use_sim_time", "false").lower() == "true"}
    for argument, parameter in PARAMETER_ARGUMENTS.items():
        value = arguments.get(argument, "")
        if value:
            overrides[parameter] = value.lower() == "true" if parameter in _BOOLEAN_PARAMETERS else value
    return overrides


def file_parameter(params_file: str | Path, name: str) -> Any:
    """The value of the dotted parameter ``name`` in a ROS parameter file (any node section), or None."""
    with open(params_file) as f:
        data = yaml.safe_load(f) or {}
    for section in data.values():
        value: Any = (section or {}).get("ros__parameters", {})
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None:
            return value
    return None


def compressed_images(arguments: Mapping[str, str], params_file: str | Path) -> bool:
    """Whether the node subscribes to compressed images: the ``compressed`` argument when given, else the file's."""
    overrides = node_overrides(arguments)
    if "input.compressed_images" in overrides:
        return overrides["input.compressed_images"]
    return bool(file_parameter(params_file, "input.compressed_images"))


#: The node's name in the launch files; with the ``namespace`` argument it makes the node path in the rviz layout.
NODE_NAME = "aqr_node"
#: What the shipped rviz layout (the template) was written for.
TEMPLATE_NODE_PATH = f"/{NODE_NAME}"
TEMPLATE_FIXED_FRAME = "lidar_top"
TEMPLATE_LIDAR_TOPIC = "/lidar_top/points"


def node_path(namespace: str, name: str = NODE_NAME) -> str:
    """The node's fully qualified name, e.g. ``/vehicle/aqr_node``, from a launch ``namespace`` ("" or "/": root)."""
    parts = [p for p in namespace.strip().split("/") if p]
    return "/" + "/".join([*parts, name])


def rviz_config(template: str | Path, node: str, fixed_frame: str, lidar_topic: str = TEMPLATE_LIDAR_TOPIC) -> dict:
    """The rviz layout of ``template`` for a node at path ``node``: every display topic under the template's
    ``/aqr_node`` moved under ``node``, the LiDAR display on ``lidar_topic``, and ``fixed_frame`` as rviz's fixed
    frame. Raises ValueError naming the template when it has no fixed frame to set."""
    with open(template) as f:
        layout = yaml.safe_load(f)
    try:
        layout["Visualization Manager"]["Global Options"]["Fixed Frame"] = fixed_frame
    except (KeyError, TypeError):
        raise ValueError(f"{template}: not an rviz layout (no 'Visualization Manager: Global Options: Fixed Frame')") \
            from None
    for display in rviz_displays(layout):
        topic = display["Topic"]
        value = topic["Value"]
        if value == TEMPLATE_NODE_PATH or value.startswith(TEMPLATE_NODE_PATH + "/"):
            topic["Value"] = node + value[len(TEMPLATE_NODE_PATH):]
        elif value == TEMPLATE_LIDAR_TOPIC:
            topic["Value"] = lidar_topic
    return layout


def write_rviz_config(template: str | Path, node: str, fixed_frame: str, lidar_topic: str = TEMPLATE_LIDAR_TOPIC,
                      folder: str | Path | None = None) -> Path:
    """:func:`rviz_config` written to a new file (in ``folder``, default the system's temporary folder) for rviz2's
    ``-d``; returns its path."""
    layout = rviz_config(template, node, fixed_frame, lidar_topic)
    handle, name = tempfile.mkstemp(prefix="aqr_ros_", suffix=".rviz", dir=folder)
    with os.fdopen(handle, "w") as f:
        f.write(f"# generated from {template} for node {node}, fixed frame {fixed_frame}\n")
        yaml.safe_dump(layout, f, sort_keys=False)
    return Path(name)


def rviz_displays(tree: Any) -> list[dict]:
    """Every display below ``tree`` of an rviz layout (a mapping whose ``Topic`` is a mapping with a string
    ``Value``); rviz nests displays in groups."""
    found = []
    if isinstance(tree, dict):
        topic = tree.get("Topic")
        if isinstance(topic, dict) and isinstance(topic.get("Value"), str):
            found.append(tree)
        for value in tree.values():
            found += rviz_displays(value)
    elif isinstance(tree, list):
        for value in tree:
            found += rviz_displays(value)
    return found
