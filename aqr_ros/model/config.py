"""Typed model configuration, loaded from the YAML files under ``models/``.

One frozen dataclass per section; unknown keys and out-of-range values raise
:class:`ConfigError` naming the offending key, so a typo in a config file never
silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from aqr_ros.resources import ResourceError, share_path

NUSCENES_CLASSES = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)
NUSCENES_CAMERAS = (
    "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT",
    "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT",
)


class ConfigError(ValueError):
    """A model config file or dict is invalid; the message names the key."""


@dataclass(frozen=True)
class LidarConfig:
    """Voxelization and sparse-encoder geometry (docs/model.md §3)."""

    point_cloud_range: tuple[float, float, float, float, float, float] = (-54.0, -54.0, -5.0, 54.0, 54.0, 3.0)
    voxel_size: tuple[float, float, float] = (0.1, 0.1, 0.2)
    max_points_per_voxel: int = 10
    max_voxels: int = 160000
    #: (z, y, x) shape given to the sparse encoder; may be smaller than the voxel grid (the 1080/1024 quirk).
    sparse_shape: tuple[int, int, int] = (41, 1024, 1024)
    num_point_features: int = 5
    #: LiDAR sweeps accumulated per frame, key frame excluded.
    num_sweeps: int = 10
    base_channels: int = 16
    output_channels: int = 128
    #: SECOND: output channels and 3x3 convs after the first of its two stages (strides 1 and 2).
    bev_channels: tuple[int, int] = (128, 256)
    bev_layers: tuple[int, int] = (5, 5)
    #: SECONDFPN: channels of each stage brought to the finest resolution; their sum feeds the head.
    bev_neck_channels: tuple[int, int] = (256, 256)

    @property
    def grid_size(self) -> tuple[int, int, int]:
        """Voxel grid (x, y, z) as ``round((max - min) / size)``."""
        r, v = self.point_cloud_range, self.voxel_size
        return tuple(int(round((r[i + 3] - r[i]) / v[i])) for i in range(3))  # type: ignore[return-value]

    @property
    def bev_shape(self) -> tuple[int, int]:
        """(H, W) of the BEV feature map: the sparse shape's y, x divided by 8."""
        return (self.sparse_shape[1] // 8, self.sparse_shape[2] // 8)


@dataclass(frozen=True)
class ImageConfig:
    """Camera input geometry and normalization (docs/model.md §2.1, §4)."""

    num_views: int = 6
    camera_names: tuple[str, ...] = NUSCENES_CAMERAS
    #: Model input (H, W) after resize and crop.
    input_size: tuple[int, int] = (320, 800)
    #: Fraction range of the bottom crop; test time uses its mean (0 keeps the bottom rows).
    bot_pct_lim: tuple[float, float] = (0.0, 0.0)
    mean: tuple[float, float, float] = (103.530, 116.280, 123.675)
    std: tuple[float, float, float] = (57.375, 57.120, 58.395)
    #: ``resnet50`` (the nuScenes configs) or ``resnet18`` (small models trained from scratch).
    backbone: str = "resnet50"
    #: Channels of the backbone's first stage (mmdet ``base_channels``); the stages use 1, 2, 4, 8 times it.
    base_channels: int = 64
    neck_in_channels: tuple[int, int] = (1024, 2048)
    #: Stride of the image feature level used by the head.
    feature_stride: int = 16

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(h, w) of the image feature map used by the head."""
        return (self.input_size[0] // self.feature_stride, self.input_size[1] // self.feature_stride)


@dataclass(frozen=True)
class HeadConfig:
    """CMT head, transformer decoder and box decoding (docs/model.md §5)."""

    class_names: tuple[str, ...] = NUSCENES_CLASSES
    hidden_dim: int = 256
    num_query: int = 900
    depth_num: int = 64
    num_decoder_layers: int = 6
    num_heads: int = 8
    ffn_dim: int = 1024
    head_conv: int = 64
    max_num: int = 300
    post_center_range: tuple[float, float, float, float, float, float] = (-61.2, -61.2, -10.0, 61.2, 61.2, 10.0)
    #: Multiplies the normalised BEV positions before CMT's sine encoding (1 in CMT). CMT's frequencies span only
    #: 1-2 cycles over the whole range, so nearby cells look alike to the attention until training has sharpened
    #: the embedding MLP; a larger scale makes the attention local from the start (for models trained here).
    position_scale: float = 1.0


@dataclass(frozen=True)
class AqrConfig:
    """AQR weight generator, renderer and modulator (docs/model.md §6)."""

    #: [camera, lidar] half-window rule: offsets are -(ws//2)..ws//2, so 8 gives a 9x9 window.
    window_sizes: tuple[int, int] = (8, 5)
    num_heads: int = 4
    ffn_dim: int = 1024
    gaussian_sigma: float = 1.0
    min_weight_threshold: float = 0.01
    normalize_weights: bool = True
    max_weight_clamp: float = 1.5
    residual_weight: float = 0.7
    #: True applies threshold-and-clamp to the camera maps (the fix); False reproduces the original bug.
    postprocess_perspective: bool = True


@dataclass(frozen=True)
class ModelConfig:
    """A whole AQR-CMT variant: one YAML file under ``models/``."""

    name: str
    lidar: LidarConfig = field(default_factory=LidarConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    aqr: AqrConfig = field(default_factory=AqrConfig)


_SECTIONS = {"lidar": LidarConfig, "image": ImageConfig, "head": HeadConfig, "aqr": AqrConfig}


def _coerce(key: str, default: Any, value: Any) -> Any:
    """Convert a YAML value to the type of the field's default, or raise naming ``key``."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default) and key.split(".")[-1] not in _VARIABLE_LENGTH:
            raise ConfigError(f"{key}: expected a list of {len(default)} values, got {value!r}")
        item_default = default[0]
        return tuple(_coerce(f"{key}[{i}]", item_default, v) for i, v in enumerate(value))
    raise ConfigError(f"{key}: unsupported value {value!r}")


#: Image backbones and their block expansion (C4 has ``4 * base_channels * expansion`` channels, C5 twice that).
_BLOCK_EXPANSION = {"resnet18": 1, "resnet50": 4}

#: Tuple fields whose length may differ from the default's.
_VARIABLE_LENGTH = {"class_names", "camera_names"}


def _section(name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{name}: expected a mapping, got {data!r}")
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(defaults))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (accepted: {', '.join(sorted(defaults))})")
    values = {k: _coerce(f"{name}.{k}", defaults[k], v) for k, v in data.items()}
    return cls(**values)


def _check_ranges(cfg: ModelConfig) -> None:
    """Reject values the architecture cannot run with, naming the key."""

    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {why}")

    lid, img, head, aqr = cfg.lidar, cfg.image, cfg.head, cfg.aqr
    r = lid.point_cloud_range
    need(all(r[i] < r[i + 3] for i in range(3)), "lidar.point_cloud_range", "each min must be below its max")
    need(all(v > 0 for v in lid.voxel_size), "lidar.voxel_size", "must be positive")
    need(lid.max_points_per_voxel >= 1, "lidar.max_points_per_voxel", "must be >= 1")
    need(lid.max_voxels >= 1, "lidar.max_voxels", "must be >= 1")
    need(all(s >= 1 for s in lid.sparse_shape), "lidar.sparse_shape", "must be positive")
    need(lid.sparse_shape[1] % 8 == 0 and lid.sparse_shape[2] % 8 == 0, "lidar.sparse_shape",
         "y and x must be multiples of 8 (three stride-2 convolutions)")
    need(lid.num_point_features == 5, "lidar.num_point_features", "must be 5 (x, y, z, intensity, time lag)")
    need(0 <= lid.num_sweeps <= 100, "lidar.num_sweeps", "must be in [0, 100]")
    need(lid.base_channels >= 1 and lid.output_channels >= 1, "lidar.base_channels", "must be positive")
    need(img.num_views >= 1, "image.num_views", "must be >= 1")
    need(len(img.camera_names) == img.num_views, "image.camera_names", "needs one name per view")
    need(all(s > 0 and s % 32 == 0 for s in img.input_size), "image.input_size", "must be positive multiples of 32")
    need(all(0.0 <= p <= 1.0 for p in img.bot_pct_lim), "image.bot_pct_lim", "must lie in [0, 1]")
    need(all(s > 0 for s in img.std), "image.std", "must be positive")
    need(img.backbone in _BLOCK_EXPANSION, "image.backbone",
         f"accepted: {', '.join(_BLOCK_EXPANSION)} (VoVNet-99 is not implemented)")
    need(img.base_channels >= 1, "image.base_channels", "must be >= 1")
    if img.backbone in _BLOCK_EXPANSION:
        c4 = 4 * img.base_channels * _BLOCK_EXPANSION[img.backbone]
        need(img.neck_in_channels == (c4, 2 * c4), "image.neck_in_channels",
             f"must be {[c4, 2 * c4]} for {img.backbone} with base_channels {img.base_channels} (its C4 and C5)")
    need(all(c >= 1 for c in lid.bev_channels + lid.bev_neck_channels), "lidar.bev_channels",
         "bev_channels and bev_neck_channels must be positive")
    need(all(n >= 0 for n in lid.bev_layers), "lidar.bev_layers", "must be >= 0")
    need(img.feature_stride == 16, "image.feature_stride", "must be 16 (ResNet C4)")
    need(len(head.class_names) >= 1, "head.class_names", "must not be empty")
    need(head.hidden_dim % head.num_heads == 0, "head.num_heads", "must divide head.hidden_dim")
    need(head.num_query >= 1, "head.num_query", "must be >= 1")
    need(head.depth_num >= 1, "head.depth_num", "must be >= 1")
    need(head.position_scale > 0, "head.position_scale", "must be positive")
    need(head.num_decoder_layers >= 1, "head.num_decoder_layers", "must be >= 1")
    need(1 <= head.max_num <= head.num_query * len(head.class_names), "head.max_num",
         "must be in [1, num_query * num_classes]")
    pcr = head.post_center_range
    need(all(pcr[i] <= pcr[i + 3] for i in range(3)), "head.post_center_range", "each min must not exceed its max")
    need(all(w >= 1 for w in aqr.window_sizes), "aqr.window_sizes", "must be >= 1")
    need(head.hidden_dim % aqr.num_heads == 0, "aqr.num_heads", "must divide head.hidden_dim")
    need(aqr.gaussian_sigma > 0, "aqr.gaussian_sigma", "must be positive")
    need(0.0 <= aqr.min_weight_threshold < 1.0, "aqr.min_weight_threshold", "must be in [0, 1)")
    need(aqr.max_weight_clamp > 0, "aqr.max_weight_clamp", "must be positive")
    need(0.0 <= aqr.residual_weight <= 10.0, "aqr.residual_weight", "must be in [0, 10]")


def config_from_dict(data: Mapping[str, Any]) -> ModelConfig:
    """Build and validate a :class:`ModelConfig` from a nested mapping (a parsed YAML file)."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"model config: expected a mapping, got {type(data).__name__}")
    unknown = sorted(set(data) - {"name", *_SECTIONS})
    if unknown:
        raise ConfigError(f"{unknown[0]}: unknown key (accepted: name, {', '.join(_SECTIONS)})")
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ConfigError("name: required, a non-empty string")
    sections = {k: _section(k, cls, data.get(k, {})) for k, cls in _SECTIONS.items()}
    cfg = ModelConfig(name=data["name"], **sections)
    _check_ranges(cfg)
    return cfg


def config_to_dict(cfg: ModelConfig) -> dict[str, Any]:
    """The JSON-ready nested mapping of ``cfg`` that :func:`config_from_dict` reads back."""
    return json_ready(dataclasses.asdict(cfg))


def json_ready(value: Any) -> Any:
    """``value`` with tuples turned into lists, recursively (what a JSON round trip gives)."""
    if isinstance(value, Mapping):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    return value


def config_differences(carried: ModelConfig, chosen: ModelConfig) -> list[str]:
    """One ``section.key: checkpoint X, config Y`` line per model-defining value that differs (the name aside)."""
    a, b = config_to_dict(carried), config_to_dict(chosen)
    return [f"{section}.{key}: checkpoint {a[section][key]!r}, config {b[section][key]!r}"
            for section in _SECTIONS for key in a[section] if a[section][key] != b[section][key]]


def models_dir() -> Path:
    """Directory of the shipped model configs (``models/`` of the checkout or of share/aqr_ros)."""
    try:
        return share_path("models")
    except ResourceError as exc:
        raise ConfigError(str(exc)) from None


def available_configs() -> list[str]:
    """Names of the shipped model configs."""
    return sorted(p.stem for p in models_dir().glob("*.yaml"))


def load_config(name_or_path: str | Path) -> ModelConfig:
    """Load a config by shipped name (``cmt_aqr_voxel0100_r50_800x320``) or by YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = models_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown model config {str(name_or_path)!r} (available: {', '.join(available_configs())})")
    if not path.is_file():
        raise ConfigError(f"model config file not found: {path}")
    with path.open() as f:
        data = yaml.safe_load(f)
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
