"""Reading, checking and converting AQR-CMT checkpoints without executing pickled code (MODEL.md §8).

Two formats are read: the ``.pth`` / ``.pt`` files written by the original mmdet3d training (mmcv layout
``{'meta': ..., 'state_dict': ...}`` or a bare state dict), loaded with ``torch.load(weights_only=True)``,
and ``.safetensors`` files written by :func:`export_safetensors`, which carry the config name and the
mmcv ``meta`` as JSON metadata. :func:`adapt_state_dict` applies the loader rules of MODEL.md §8.3 and
then checks the keys and shapes strictly against what the model expects.
"""

from __future__ import annotations

import json
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

#: Suffixes read as torch pickles (with ``weights_only=True``) and as safetensors.
PICKLE_SUFFIXES = (".pth", ".pt")
SAFETENSORS_SUFFIX = ".safetensors"

#: Prefix of the keys only a variant-B (attention-bias) checkpoint has (MODEL.md §8.4).
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
#: How many keys of each kind an error lists.
_LIST_LIMIT = 20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, or does not fit the model; the message says what and why."""


@dataclass(frozen=True)
class RawCheckpoint:
    """A checkpoint as read from disk: its tensors, the mmcv ``meta`` and where it came from.

    ``source_format`` is ``"pth"`` or ``"safetensors"``; ``config_name`` is the model config recorded by
    :func:`export_safetensors` (None for the original ``.pth`` files).
    """

    state_dict: dict[str, Tensor]
    meta: dict[str, Any]
    source_format: str
    config_name: str | None = None


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
    return f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or another format?): {reason}"


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


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(metadata.get(_META_KEY, "{}"))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file (corrupt or truncated?): {exc}") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: metadata {_META_KEY!r} is not a JSON object")
    return state, meta, metadata.get(_CONFIG_KEY)


def read_checkpoint(path: str | Path) -> RawCheckpoint:
    """Read a ``.pth``/``.pt`` (without executing pickled code) or ``.safetensors`` checkpoint onto the CPU.

    A leading ``module.`` (a DDP wrapper) is stripped from the keys. Raises :class:`CheckpointError`.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    suffix = path.suffix.lower()
    config_name = None
    if suffix in PICKLE_SUFFIXES:
        state, meta = _read_pickle(path)
        source_format = "pth"
    elif suffix == SAFETENSORS_SUFFIX:
        state, meta, config_name = _read_safetensors(path)
        source_format = "safetensors"
    else:
        accepted = ", ".join((*PICKLE_SUFFIXES, SAFETENSORS_SUFFIX))
        raise CheckpointError(f"{path}: unknown checkpoint format {path.suffix!r} (accepted: {accepted})")
    not_tensors = sorted(repr(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, Tensor))
    if not_tensors:
        raise CheckpointError(f"{path}: state dict entries that are not named tensors: {not_tensors[:_LIST_LIMIT]}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    return RawCheckpoint(state_dict=state, meta=meta, source_format=source_format, config_name=config_name)


def _shape_text(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_LIST_LIMIT]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def adapt_state_dict(sd: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]]) -> dict[str, Tensor]:
    """Apply the loader rules of MODEL.md §8.3 to ``sd`` and check it strictly against ``expected`` (key → shape).

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
            "modulation, MODEL.md §0.1), so it cannot run this checkpoint"
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


def export_safetensors(raw: RawCheckpoint, path: str | Path, config_name: str | None) -> None:
    """Write ``raw``'s tensors to a ``.safetensors`` file, with the config name and ``meta`` as JSON metadata."""
    path = Path(path)
    if path.suffix != SAFETENSORS_SUFFIX:
        raise CheckpointError(f"{path}: the output file name must end in {SAFETENSORS_SUFFIX}")
    from safetensors.torch import save_file

    metadata = {_META_KEY: json.dumps(raw.meta, default=str)}
    if config_name:
        metadata[_CONFIG_KEY] = config_name
    # Fresh contiguous copies: safetensors refuses tensors that share storage or are non-contiguous.
    tensors = {k: v.detach().contiguous().clone() for k, v in raw.state_dict.items()}
    try:
        save_file(tensors, str(path), metadata=metadata)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write: {exc}") from None
