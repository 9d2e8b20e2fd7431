"""Synthetic mmdet3d-style checkpoints built from the state-dict manifest, for loader and tool tests."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

MANIFEST_PATH = Path(__file__).resolve().parent / "data" / "state-dict-manifest.json"

CLASSES = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

#: Extra tensors of a variant-B (attention-bias) checkpoint: name → (shape, dtype) (docs/model.md §8.4).
VARIANT_B_KEYS: dict[str, tuple[tuple[int, ...], torch.dtype]] = {
    "pts_bbox_head.attention_bias_generator.bias_scale": ((1,), torch.float32),
    "pts_bbox_head.attention_bias_generator.y_offsets": ((64,), torch.int64),
    "pts_bbox_head.attention_bias_generator.x_offsets": ((64,), torch.int64),
    "pts_bbox_head.attention_bias_generator.window_offsets_bev": ((64,), torch.int64),
    "pts_bbox_head.attention_bias_generator.window_offsets_pers": ((64,), torch.int64),
    "pts_bbox_head.attention_bias_generator.gaussian_weights": ((64,), torch.float32),
}


def load_manifest(path: Path = MANIFEST_PATH) -> dict[str, tuple[int, ...]]:
    """The manifest as key → shape tuple, in file order."""
    with path.open() as f:
        return {k: tuple(v) for k, v in json.load(f).items()}


def _tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    if key.endswith("num_batches_tracked"):
        return torch.randint(0, 10_000, (), generator=gen, dtype=torch.int64)
    if key.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5
    return torch.randn(shape, generator=gen)


def synthetic_state_dict(
    manifest: Mapping[str, Sequence[int]],
    *,
    seed: int = 0,
    variant: str = "A",
    spconv1: bool = False,
    drop_keys: Sequence[str] = (),
    reshape_key: str | None = None,
    extra_keys: Sequence[str] = (),
) -> "OrderedDict[str, Tensor]":
    """Deterministic random tensors for every manifest key, with the requested defects.

    ``spconv1`` stores 5-D weights as ``[kz, ky, kx, in, out]``; ``reshape_key`` gets one more row in dim 0
    (or shape [2] for a scalar); ``extra_keys`` are added as [3] tensors; variant ``"B"`` adds §8.4's keys.
    """
    if variant not in ("A", "B"):
        raise ValueError(f"variant must be 'A' or 'B', got {variant!r}")
    gen = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, Tensor] = OrderedDict()
    for key, shape in manifest.items():
        tensor = _tensor(key, tuple(shape), gen)
        if spconv1 and tensor.dim() == 5:
            tensor = tensor.permute(1, 2, 3, 4, 0).contiguous()
        state[key] = tensor
    if variant == "B":
        for key, (shape, dtype) in VARIANT_B_KEYS.items():
            state[key] = (torch.randint(-4, 5, shape, generator=gen) if dtype == torch.int64
                          else torch.rand(shape, generator=gen))
    for key in drop_keys:
        del state[key]
    if reshape_key is not None:
        old = state[reshape_key]
        new_shape = (old.shape[0] + 1, *old.shape[1:]) if old.dim() else (2,)
        state[reshape_key] = torch.randn(new_shape, generator=gen).to(old.dtype)
    for key in extra_keys:
        state[key] = torch.randn(3, generator=gen)
    return state


def write_synthetic_checkpoint(
    path: str | Path, manifest: Mapping[str, Sequence[int]], **defects: Any
) -> "OrderedDict[str, Tensor]":
    """Write :func:`synthetic_state_dict` (same keyword options) as an mmcv-layout ``.pth``
    (``{'meta', 'state_dict'}``); return the state dict."""
    state = synthetic_state_dict(manifest, **defects)
    meta = {"CLASSES": CLASSES, "mmdet3d_version": "1.0.0rc5", "epoch": 1}
    torch.save({"meta": meta, "state_dict": state}, Path(path))
    return state
