"""What the launch files' arguments change in the node's parameters (plain Python, testable without launch).

A launch argument overrides the parameter file only when the user gives it (a non-empty value): the file
stays the single place where a deployment's settings live, and a default in the launch file cannot silently
replace them.
"""

from __future__ import annotations

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
