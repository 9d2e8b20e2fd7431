"""Pure-PyTorch AQR-CMT: no ROS, no mmcv/mmdet3d; loads the original mmdet3d checkpoints.

``AqrCmt`` and ``Detections`` are imported lazily so that light users (the config loader, the
ROS parameter validation) do not pay for building the module tree imports.
"""

from typing import Any

from .config import ConfigError, ModelConfig, available_configs, load_config

__all__ = [
    "AqrCmt",
    "ConfigError",
    "DEFAULT_CONFIG",
    "Detections",
    "ModelConfig",
    "available_configs",
    "load_config",
]

_LAZY = {"AqrCmt", "Detections", "DEFAULT_CONFIG"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import detector

        return getattr(detector, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
