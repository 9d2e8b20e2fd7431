"""Reading, checking and converting AQR-CMT checkpoints without executing pickled code (docs/model.md §8).

Two formats are read: the ``.pth`` / ``.pt`` files written by the original mmdet3d training (mmcv layout
``{'meta': ..., 'state_dict': ...}`` or a bare state dict), loaded with ``torch.load(weights_only=True)``,
and ``.safetensors`` files written by :func:`export_safetensors`, which carry the whole model config and the
mmcv ``meta`` as JSON metadata: such a file decides the model it runs in (:func:`bind_config`). :func:`adapt_state_dict` applies the loader rules of docs/model.md §8.3 and
then checks the keys and shapes strictly against what the model expects.
"""

from __future__ import annotations

import ast
import json
import math
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from aqr_ros.model.config import (
    ConfigError,
    ModelConfig,
    config_differences,
    config_from_dict,
    config_to_dict,
    json_ready,
    load_config,
)

#: Suffixes read as torch pickles (with ``weights_only=True``) and as safetensors.
PICKLE_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"

#: Prefix of the keys only a variant-B (attention-bias) checkpoint has (docs/model.md §8.4).
VARIANT_B_PREFIX = "pts_bbox_head.attention_bias_generator."
#: Prefix of the AQR weight generator, present in both variants.
AQR_PREFIX = "pts_bbox_head.aqr_weight_generator."
#: The renderer's stored Gaussian kernel: optional, always recomputed from the configured sigma.
GAUSSIAN_KERNEL_KEY = "pts_bbox_head.weight_renderer.gaussian_kernel"
#: Unused AQR type embeddings: accepted, and dropped when the model has no such parameters.
TYPE_EMBED_KEYS = (AQR_PREFIX + "bev_type_embed", AQR_PREFIX + "rv_type_embed")

#: Last key component of the buffers (not parameters) a checkpoint may hold.
_BUFFER_NAMES = frozenset({
    "running_mean", "running_var", "num_batches_tracked", "gaussian_kernel",
    "y_offsets", "x_offsets", "window_offsets_bev", "window_offsets_pers", "gaussian_weights",
})
#: Safetensors metadata keys written by :func:`export_safetensors`.
_META_KEY = "aqr_ros.meta"
_CONFIG_KEY = "aqr_ros.config"
_MODEL_CONFIG_KEY = "aqr_ros.model_config"
#: Keys of an original training's mmcv config text (``meta['config']``) → the model config field they fix.
_MMCV_FIELDS = {
    "point_cloud_range": ("lidar", "point_cloud_range"),
    "voxel_size": ("lidar", "voxel_size"),
    "final_dim": ("image", "input_size"),
    "num_query": ("head", "num_query"),
    "window_sizes": ("aqr", "window_sizes"),
    "max_weight_clamp": ("aqr", "max_weight_clamp"),
    "residual_weight": ("aqr", "residual_weight"),
}
#: How many keys of each kind an error lists.
_LIST_LIMIT = 20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model; the message says what and why."""


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint as read from disk: its tensors, the mmcv ``meta`` and where it came from.

    ``source_format`` is ``"pth"`` or ``"safetensors"``; ``config_name`` and ``model_config`` (the whole config
    as a mapping) are what :func:`export_safetensors` recorded (None for the original ``.pth`` files; files
    exported before the whole config was recorded carry the name only).
    """

    state_dict: dict[str, Tensor]
    meta: dict[str, Any]
    source_format: str
    config_name: str | None = None
    model_config: dict[str, Any] | None = None


def _unpickler_reason(exc: Exception) -> str:
    found = re.search(r"WeightsUnpickler error:\s*(.*?)(?:\.\s|\.?$)", str(exc), re.MULTILINE)
    return found.group(1).strip() if found else "the weights-only unpickler rejected it"


def _refusal(path: Path, reason: str) -> str:
    return (
        f"{path}: refusing to load this checkpoint: reading it needs more than "
        f"torch.load(weights_only=True) allows ({reason}), i.e. executing pickled code, which this node never "
        "does. If you trust the file, convert it once in a trusted environment: "
        "ckpt = torch.load(path, map_location='cpu', weights_only=False); keep only the tensors and plain meta "
        "and re-save them, e.g. torch.save({'meta': {'CLASSES': list(ckpt['meta']['CLASSES'])}, "
        "'state_dict': dict(ckpt['state_dict'])}, 'clean.pth'); or export the tensors to safetensors with "
        "safetensors.torch.save_file(dict(ckpt['state_dict']), 'model.safetensors')."
    )


def _corrupt(path: Path, reason: object) -> str:
    return (f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or another format?): {reason}. Accepted: "
            ".safetensors written by aqr_ros, or the .pth of the original mmdet3d training")


def _read_pickle(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _unpickler_reason(exc)
        # An unknown opcode means the bytes are not a pickle at all; anything else is a disallowed object.
        message = _corrupt(path, reason) if reason.startswith("Unsupported operand") else _refusal(path, reason)
        raise CheckpointError(message) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as exc:
        raise CheckpointError(_corrupt(path, exc)) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict (mmcv checkpoint or state dict), got {type(obj).__name__}")
    if "state_dict" in obj:
        state, meta = obj["state_dict"], obj.get("meta") or {}
    else:
        state, meta = obj, {}
    if not isinstance(state, Mapping) or not isinstance(meta, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' and 'meta' must be dicts")
    return dict(state), dict(meta)


def _read_safetensors(path: Path, tensors: bool = True) -> tuple[dict[str, Any], dict[str, str]]:
    """(tensors, or {} when ``tensors`` is false; the string metadata)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    return state, metadata


def _json_object(path: Path, metadata: Mapping[str, str], key: str) -> dict[str, Any] | None:
    """The JSON object stored under ``key`` (None if absent); anything else is a :class:`CheckpointError`."""
    if key not in metadata:
        return None
    try:
        value = json.loads(metadata[key])
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: metadata {key!r} is not a JSON object")
    return value


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a ``.pth``/``.pt`` (without executing pickled code) or ``.safetensors`` checkpoint onto the CPU.

    A leading ``module.`` (a DDP wrapper) is stripped from the keys. Raises :class:`CheckpointError`.
    """
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (give the .safetensors or .pth in it)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    config_name, model_config = None, None
    if suffix in PICKLE_SUFFIXES:
        state, meta = _read_pickle(path)
        source_format = "pth"
    elif suffix == SAFETENSORS_SUFFIX:
        state, metadata = _read_safetensors(path)
        meta = _json_object(path, metadata, _META_KEY) or {}
        config_name, model_config = metadata.get(_CONFIG_KEY), _json_object(path, metadata, _MODEL_CONFIG_KEY)
        source_format = "safetensors"
    else:
        accepted = ", ".join((*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX))
        raise CheckpointError(f"{path}: unknown checkpoint format {path.suffix!r} (accepted: {accepted})")
    not_tensors = sorted(repr(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: state dict entries that are not named tensors: {not_tensors[:_LIST_LIMIT]}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return RawCheckpoint(state_dict=state, meta=meta, source_format=source_format, config_name=config_name,
                         model_config=model_config)


def carried_config(raw: RawCheckpoint, source: str | Path = "checkpoint") -> ModelConfig | None:
    """The model config a checkpoint carries: its whole recorded config, else the shipped config it names,
    else None (the original ``.pth`` files)."""
    try:
        if raw.model_config is not None:
            return config_from_dict(raw.model_config)
        return load_config(raw.config_name) if raw.config_name else None
    except ConfigError as exc:
        raise CheckpointError(f"{source}: its recorded model config is not valid here: {exc}") from None


def read_carried_config(path: str | Path) -> ModelConfig | None:
    """:func:`carried_config` of a checkpoint file, read from its metadata alone; None for the ``.pth`` files of
    the original training, which carry no aqr_ros config."""
    path = Path(path)
    if path.suffix.lower() != SAFETENSORS_SUFFIX:
        return None
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file (give the .safetensors or .pth in it)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    _, metadata = _read_safetensors(path, tensors=False)
    raw = RawCheckpoint({}, {}, "safetensors", metadata.get(_CONFIG_KEY), _json_object(path, metadata, _MODEL_CONFIG_KEY))
    return carried_config(raw, path)


def mmcv_training_values(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The model-defining values an original ``.pth`` records: ``CLASSES`` and, from the mmcv config text, the
    first literal value of each key of :data:`_MMCV_FIELDS` (top-level assignments first). The text is parsed,
    never executed; keys it lacks or sets to an expression are left out."""
    values: dict[str, Any] = {}
    if isinstance(meta.get("CLASSES"), (list, tuple)):
        values["CLASSES"] = list(meta["CLASSES"])
    text = meta.get("config")
    try:
        tree = ast.parse(text) if isinstance(text, str) else None
    except SyntaxError:
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            key, value = node.targets[0].id, node.value
        elif isinstance(node, ast.keyword) and node.arg is not None:
            key, value = node.arg, node.value
        else:
            continue
        if key in _MMCV_FIELDS and key not in values:
            try:
                values[key] = ast.literal_eval(value)
            except ValueError:
                continue
    return values


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    return a == b


def check_training_values(meta: Mapping[str, Any], config: ModelConfig, source: str | Path) -> None:
    """Refuse ``config`` for a ``.pth`` whose mmcv meta records different model-defining values, naming each."""
    values = mmcv_training_values(meta)
    fields = {**{k: getattr(getattr(config, sec), name) for k, (sec, name) in _MMCV_FIELDS.items()},
              "CLASSES": config.head.class_names}
    differences = [f"{key}: training config {value!r}, model config {json_ready(fields[key])!r}"
                   for key, value in values.items() if not _same(value, fields[key])]
    if differences:
        raise CheckpointError(f"{source} was trained with values that model config {config.name!r} contradicts: "
                              + "; ".join(differences) + ". Choose the config of its training (models/README.md).")


def bind_config(carried: ModelConfig | None, chosen: ModelConfig | None, source: str | Path,
                default: str) -> ModelConfig:
    """The config a model is built with: the checkpoint's own when it carries one, after checking that an
    explicitly ``chosen`` config agrees with it in every model-defining value; else ``chosen``, else ``default``.
    """
    if carried is None:
        return chosen if chosen is not None else load_config(default)
    if chosen is not None:
        differences = config_differences(carried, chosen)
        if differences:
            raise CheckpointError(
                f"{source} carries model config {carried.name!r}, which model config {chosen.name!r} contradicts: "
                + "; ".join(differences) + ". Give no model config to use the checkpoint's own.")
    return carried


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_LIST_LIMIT]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def adapt_state_dict(sd: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Apply the loader rules of docs/model.md §8.3 to ``sd`` and check it strictly against ``expected`` (key → shape).

    * a variant-B key (``attention_bias_generator``) is rejected: only variant A is implemented;
    * the stored ``weight_renderer.gaussian_kernel`` is dropped (never required: it is recomputed from σ);
    * the unused AQR type embeddings are dropped when ``expected`` lacks them;
    * 5-D spconv-1 weights ``[kz, ky, kx, in, out]`` are permuted to the expected ``[out, kz, ky, kx, in]``.

    Any missing, unexpected or mis-shaped key then raises one :class:`CheckpointError` listing them all.
    """
    variant_b = sorted(k for k in sd if k.startswith(VARIANT_B_PREFIX))
    if variant_b:
        raise CheckpointError(
            f"this is an attention-bias (variant B) AQR checkpoint ({len(variant_b)} keys under "
            f"{VARIANT_B_PREFIX}*, e.g. {variant_b[0]}); this node implements only variant A (feature "
            "modulation, docs/model.md §0.1), so it cannot run this checkpoint"
        )
    optional = {GAUSSIAN_KERNEL_KEY} | {k for k in TYPE_EMBED_KEYS if k not in expected}
    out: dict[str, Tensor] = {}
    unexpected: list[str] = []
    misshaped: list[str] = []
    for key, tensor in sd.items():
        if key in optional:
            continue
        if key not in expected:
            unexpected.append(f"{key} {_shape_text(tuple(tensor.shape))}")
            continue
        want = tuple(expected[key])
        have = tuple(tensor.shape)
        if have != want and len(want) == 5 and have == want[1:] + want[:1]:
            tensor = tensor.permute(4, 0, 1, 2, 3).contiguous()
        elif have != want:
            misshaped.append(f"{key}: checkpoint {_shape_text(have)}, model {_shape_text(want)}")
        out[key] = tensor
    missing = [f"{k} {_shape_text(tuple(s))}" for k, s in expected.items() if k not in sd and k != GAUSSIAN_KERNEL_KEY]
    if missing or unexpected or misshaped:
        parts = [
            _listing(title, items)
            for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
            if items
        ]
        raise CheckpointError(
            f"checkpoint does not match the model: {len(missing)} missing, {len(unexpected)} unexpected and "
            f"{len(misshaped)} mis-shaped keys\n" + "\n".join(parts)
        )
    return out


def is_buffer_key(key: str) -> bool:
    """True for keys of buffers (BN running stats and counters, the renderer kernel, variant-B tables)."""
    return key.rsplit(".", 1)[-1] in _BUFFER_NAMES


def component_of(key: str) -> str:
    """Top-level component of a key: its first name, or the first two under ``pts_bbox_head``."""
    parts = key.split(".")
    return ".".join(parts[:2]) if parts[0] == "pts_bbox_head" and len(parts) > 2 else parts[0]


def _variant(keys: Mapping[str, Tensor]) -> str:
    if any(k.startswith(VARIANT_B_PREFIX) for k in keys):
        return "B"
    if any(k.startswith(AQR_PREFIX) for k in keys):
        return "A"
    return "unknown"


_VARIANT_TEXT = {
    "A": "A (feature modulation, supported)",
    "B": "B (attention bias, not supported by this node)",
    "unknown": "unknown (no AQR weight generator keys)",
}


@dataclass(frozen=True)
class CheckpointSummary:
    """What a checkpoint is: AQR variant, tensor and parameter counts, components and model match.

    ``matches_expected`` is None when no expected shapes were given; ``mismatch`` holds the reason when False.
    """

    source_format: str
    config_name: str | None
    variant: str
    num_tensors: int
    num_parameters: int
    num_buffers: int
    component_parameters: dict[str, int] = field(default_factory=dict)
    classes: tuple[str, ...] | None = None
    matches_expected: bool | None = None
    mismatch: str | None = None

    def format(self) -> str:
        """Human-readable multi-line report (what the ``inspect`` command prints)."""
        lines = [
            f"format:      {self.source_format}",
            f"config:      {self.config_name or '(not recorded)'}",
            f"variant:     {_VARIANT_TEXT[self.variant]}",
            f"tensors:     {self.num_tensors} ({self.num_tensors - self.num_buffers} parameters, "
            f"{self.num_buffers} buffers)",
            f"parameters:  {self.num_parameters:,} elements",
            "components (parameter elements):",
            *(f"  {name:<40} {count:>12,}" for name, count in self.component_parameters.items()),
            f"classes:     {', '.join(self.classes) if self.classes else '(not recorded)'}",
        ]
        if self.matches_expected is not None:
            lines.append("model match: yes" if self.matches_expected else f"model match: NO\n{self.mismatch}")
        return "\n".join(lines)


def describe(raw: RawCheckpoint, expected: Mapping[str, tuple[int, ...]] | None = None) -> CheckpointSummary:
    """Summarise ``raw``; with ``expected`` (key → shape of the live model) also check that it loads."""
    sd = raw.state_dict
    components: Counter[str] = Counter()
    num_buffers = 0
    for key, tensor in sd.items():
        if is_buffer_key(key):
            num_buffers += 1
        else:
            components[component_of(key)] += tensor.numel()
    matches: bool | None = None
    mismatch = None
    if expected is not None:
        try:
            adapt_state_dict(sd, expected)
            matches = True
        except CheckpointError as exc:
            matches, mismatch = False, str(exc)
    classes = raw.meta.get("CLASSES")
    return CheckpointSummary(
        source_format=raw.source_format,
        config_name=raw.config_name,
        variant=_variant(sd),
        num_tensors=len(sd),
        num_parameters=sum(components.values()),
        num_buffers=num_buffers,
        component_parameters=dict(components.most_common()),
        classes=tuple(str(c) for c in classes) if isinstance(classes, (list, tuple)) else None,
        matches_expected=matches,
        mismatch=mismatch,
    )


def export_safetensors(raw: RawCheckpoint, path: str | Path, config: ModelConfig | None) -> None:
    """Write ``raw``'s tensors to a ``.safetensors`` file, with the whole model ``config`` (and its name) and
    ``meta`` as JSON metadata, so that the file decides the model it runs in."""
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"{path}: the output file name must end in {SAFETENSORS_SUFFIX}")
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    metadata = {_META_KEY: json.dumps(raw.meta, default=str)}
    if config is not None:
        metadata[_CONFIG_KEY] = config.name
        metadata[_MODEL_CONFIG_KEY] = json.dumps(config_to_dict(config))
    # Fresh contiguous copies: safetensors refuses tensors that share storage or are non-contiguous.
    tensors = {k: v.detach().contiguous().clone() for k, v in raw.state_dict.items()}
    try:
        save_file(tensors, str(path), metadata=metadata)
    except (OSError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: cannot write: {exc}") from None
