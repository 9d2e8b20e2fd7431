"""Checkpoint reading, the loader rules of docs/model.md §8.3, safetensors export and the checkpoint tool."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from aqr_ros.model import AqrCmt
from aqr_ros.model.checkpoint import (
    GAUSSIAN_KERNEL_KEY,
    TYPE_EMBED_KEYS,
    CheckpointError,
    RawCheckpoint,
    adapt_state_dict,
    carried_config,
    check_training_values,
    describe,
    export_safetensors,
    mmcv_training_values,
    read_checkpoint,
)
from aqr_ros.model.config import config_from_dict, load_config
from aqr_ros.tools.checkpoint import main
from checkpoint_factory import CLASSES, load_manifest, synthetic_state_dict, write_synthetic_checkpoint

SPCONV_KEY = "pts_middle_encoder.conv_input.0.weight"
#: Components kept in the small manifest: spconv weights, BN buffers, the AQR keys and the kernel (3.8M elements).
SMALL_PREFIXES = (
    "pts_middle_encoder.", "pts_neck.", "pts_bbox_head.aqr_weight_generator.", "pts_bbox_head.weight_renderer.",
)


@pytest.fixture(scope="module")
def manifest() -> dict[str, tuple[int, ...]]:
    return load_manifest()


@pytest.fixture(scope="module")
def small(manifest) -> dict[str, tuple[int, ...]]:
    return {k: v for k, v in manifest.items() if k.startswith(SMALL_PREFIXES)}


@pytest.fixture(scope="module")
def full_checkpoint(tmp_path_factory, manifest) -> tuple[Path, dict[str, torch.Tensor]]:
    path = tmp_path_factory.mktemp("ckpt") / "aqr_full.pth"
    state = write_synthetic_checkpoint(path, manifest, seed=7)
    return path, state


def test_full_checkpoint_loads_strictly(full_checkpoint, manifest) -> None:
    path, written = full_checkpoint
    raw = read_checkpoint(path)
    assert raw.source_format == "pth"
    assert tuple(raw.meta["CLASSES"]) == CLASSES
    assert len(raw.state_dict) == len(manifest) == 708
    state = adapt_state_dict(raw.state_dict, manifest)
    assert set(state) == set(manifest) - {GAUSSIAN_KERNEL_KEY}
    assert all(torch.equal(state[k], written[k]) for k in state)
    nbt = state["img_backbone.bn1.num_batches_tracked"]
    assert nbt.dtype == torch.int64 and nbt.shape == ()


def test_gaussian_kernel_is_optional_in_any_size(small) -> None:
    without = synthetic_state_dict(small, drop_keys=[GAUSSIAN_KERNEL_KEY])
    assert set(adapt_state_dict(without, small)) == set(small) - {GAUSSIAN_KERNEL_KEY}
    other_sigma = synthetic_state_dict(small)
    other_sigma[GAUSSIAN_KERNEL_KEY] = torch.rand(9, 9)
    assert GAUSSIAN_KERNEL_KEY not in adapt_state_dict(other_sigma, small)


def test_type_embeddings_accepted_when_the_model_lacks_them(small) -> None:
    state = synthetic_state_dict(small)
    model_keys = {k: v for k, v in small.items() if k not in TYPE_EMBED_KEYS}
    assert not set(TYPE_EMBED_KEYS) & set(adapt_state_dict(state, model_keys))
    assert set(TYPE_EMBED_KEYS) <= set(adapt_state_dict(state, small))


def test_truncated_checkpoint_lists_missing_keys(small) -> None:
    dropped = [k for k in small if k.startswith("pts_middle_encoder.")][:25]
    state = synthetic_state_dict(small, drop_keys=dropped)
    with pytest.raises(CheckpointError) as err:
        adapt_state_dict(state, small)
    message = str(err.value)
    assert "25 missing, 0 unexpected and 0 mis-shaped" in message
    assert all(k in message for k in dropped[:20])
    assert dropped[20] not in message and "... and 5 more" in message


def test_misshaped_unexpected_and_missing_reported_together(small) -> None:
    key = "pts_neck.deblocks.1.0.weight"
    state = synthetic_state_dict(small, reshape_key=key, extra_keys=["pts_neck.extra.weight"],
                                 drop_keys=["pts_neck.deblocks.0.1.bias"])
    with pytest.raises(CheckpointError) as err:
        adapt_state_dict(state, small)
    message = str(err.value)
    assert "1 missing, 1 unexpected and 1 mis-shaped" in message
    assert f"{key}: checkpoint [257, 256, 2, 2], model [256, 256, 2, 2]" in message
    assert "pts_neck.extra.weight [3]" in message
    assert "pts_neck.deblocks.0.1.bias [256]" in message


def test_variant_b_checkpoint_is_rejected_as_such(small) -> None:
    state = synthetic_state_dict(small, variant="B")
    with pytest.raises(CheckpointError, match=r"attention-bias \(variant B\).*only variant A"):
        adapt_state_dict(state, small)
    summary = describe(RawCheckpoint(state_dict=dict(state), meta={}, source_format="pth"), small)
    assert summary.variant == "B" and summary.matches_expected is False
    assert "variant B" in summary.mismatch


def test_spconv1_weights_are_permuted(small) -> None:
    reference = synthetic_state_dict(small, seed=3)
    old_layout = synthetic_state_dict(small, seed=3, spconv1=True)
    assert tuple(old_layout[SPCONV_KEY].shape) == (3, 3, 3, 5, 16)
    assert tuple(old_layout["pts_middle_encoder.conv_out.0.weight"].shape) == (3, 1, 1, 128, 128)
    state = adapt_state_dict(old_layout, small)
    five_d = [k for k, shape in small.items() if len(shape) == 5]
    assert len(five_d) == 21
    for key in five_d:
        assert torch.equal(state[key], reference[key]), key


def test_module_prefix_is_stripped(tmp_path, small) -> None:
    state = synthetic_state_dict(small)
    path = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    raw = read_checkpoint(path)
    assert raw.meta == {} and set(raw.state_dict) == set(state)


class _RunsCode:
    """Unpickling this object would create ``marker`` (a stand-in for arbitrary code)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    torch.save({"meta": {"hook": _RunsCode(marker)}, "state_dict": {"w": torch.zeros(1)}}, path)
    assert not marker.exists()
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert not marker.exists()
    message = str(err.value)
    assert str(path) in message and "refusing" in message and "executing pickled code" in message
    assert "Unsupported global" in message and "open" in message   # names what the pickle wanted to call
    assert "weights_only=False" in message and "safetensors" in message


def test_missing_corrupt_and_unknown_files_name_the_path(tmp_path, small) -> None:
    with pytest.raises(CheckpointError, match="not found: .*nope.pth"):
        read_checkpoint(tmp_path / "nope.pth")
    good = tmp_path / "good.pth"
    write_synthetic_checkpoint(good, small)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(cut)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(garbage)
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: not a readable safetensors file"):
        read_checkpoint(bad_st)
    other = tmp_path / "weights.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format '.ckpt'"):
        read_checkpoint(other)


def test_safetensors_export_round_trip(tmp_path, small) -> None:
    src = tmp_path / "src.pth"
    write_synthetic_checkpoint(src, small, seed=5, spconv1=True)
    raw = read_checkpoint(src)
    out = tmp_path / "model.safetensors"
    config = load_config("cmt_aqr_voxel0100_r50_800x320_original")
    export_safetensors(raw, out, config)
    back = read_checkpoint(out)
    assert back.source_format == "safetensors"
    assert back.config_name == config.name and config_from_dict(back.model_config) == config
    assert carried_config(back) == config
    assert back.meta["CLASSES"] == list(CLASSES) and back.meta["mmdet3d_version"] == "1.0.0rc5"
    assert set(back.state_dict) == set(raw.state_dict)
    for key, tensor in raw.state_dict.items():
        assert back.state_dict[key].dtype == tensor.dtype and torch.equal(back.state_dict[key], tensor), key
    with pytest.raises(CheckpointError, match="must end in .safetensors"):
        export_safetensors(raw, tmp_path / "model.pth", None)


def test_describe_counts_the_manifest(full_checkpoint, manifest) -> None:
    summary = describe(read_checkpoint(full_checkpoint[0]), manifest)
    assert summary.variant == "A"
    assert summary.num_tensors == 708 and summary.num_buffers == 268
    assert summary.num_parameters == 41_710_870
    parts = summary.component_parameters
    assert parts["img_backbone"] == 23_508_032 and parts["pts_bbox_head.transformer"] == 6_321_152
    assert parts["pts_middle_encoder"] == 2_694_352 and parts["pts_bbox_head.aqr_weight_generator"] == 791_298
    assert summary.classes == CLASSES
    assert summary.matches_expected is True and summary.mismatch is None


def test_cli_inspect_prints_variant_and_parameter_count(full_checkpoint, manifest, capsys) -> None:
    path = full_checkpoint[0]
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "variant:     A (feature modulation" in out
    assert "41,710,870" in out and "model match" not in out
    assert main(["inspect", str(path), "--config", "target"], expected_shapes=lambda name: manifest) == 0
    assert "model match: yes" in capsys.readouterr().out
    shifted = {**manifest, SPCONV_KEY: (16, 3, 3, 3, 4)}
    assert main(["inspect", str(path), "--config", "other"], expected_shapes=lambda name: shifted) == 1
    assert "model match: NO\ncheckpoint does not match the model: 0 missing, 0 unexpected and 1 mis-shaped" \
        in capsys.readouterr().out


def test_cli_export_and_bad_input(tmp_path, small, capsys) -> None:
    src = tmp_path / "src.pth"
    written = write_synthetic_checkpoint(src, small)
    out = tmp_path / "out.safetensors"
    name = "cmt_aqr_voxel0100_r50_800x320"
    assert main(["export", str(src), str(out), "--config", name], expected_shapes=lambda _: small) == 0
    back = read_checkpoint(out)
    assert back.config_name == name and all(torch.equal(back.state_dict[k], v) for k, v in written.items())
    # Exported again under a config that contradicts the one it now carries: refused, naming the value.
    assert main(["export", str(out), str(tmp_path / "again.safetensors"), "--config", name + "_original"],
                expected_shapes=lambda _: small) == 2
    assert "aqr.postprocess_perspective: checkpoint True, config False" in capsys.readouterr().err
    capsys.readouterr()
    refused = tmp_path / "refused.safetensors"
    assert main(["export", str(src), str(refused), "--config", "x"],
                expected_shapes=lambda name: {**small, "pts_neck.new.weight": (1,)}) == 2
    assert "1 missing" in capsys.readouterr().err and not refused.exists()


def test_cli_module_entry_point_reports_bad_input_with_status_2(tmp_path) -> None:
    missing = tmp_path / "absent.pth"
    proc = subprocess.run([sys.executable, "-m", "aqr_ros.tools.checkpoint", "inspect", str(missing)],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "" and f"checkpoint file not found: {missing}" in proc.stderr


MMCV_CONFIG_TEXT = """point_cloud_range = [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0]
voxel_size = [0.1, 0.1, 0.2]
ida_aug_conf = dict(final_dim=(320, 800), bot_pct_lim=(0.0, 0.0))
model = dict(
    type='CmtDetector',
    pts_bbox_head=dict(type='CmtHead', num_query=900, point_cloud_range=point_cloud_range,
                       aqr=dict(window_sizes=[8, 5], max_weight_clamp=2.5, residual_weight=0.6)))
"""


def test_mmcv_training_values_are_parsed_not_executed():
    meta = {"config": MMCV_CONFIG_TEXT + "import os\nos.remove('/nonexistent')\n", "CLASSES": ["car"]}
    assert mmcv_training_values(meta) == {
        "CLASSES": ["car"], "point_cloud_range": [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0], "voxel_size": [0.1, 0.1, 0.2],
        "final_dim": (320, 800), "num_query": 900, "window_sizes": [8, 5], "max_weight_clamp": 2.5,
        "residual_weight": 0.6}
    assert mmcv_training_values({"config": "not python ("}) == {}


def test_a_pth_is_refused_under_a_config_its_training_contradicts(tmp_path):
    path = tmp_path / "epoch_1.pth"
    torch.save({"meta": {"config": MMCV_CONFIG_TEXT, "CLASSES": list(CLASSES)}, "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=r"max_weight_clamp: training config 2.5, model config 1.5; "
                                              r"residual_weight: training config 0.6, model config 0.7"):
        AqrCmt.from_checkpoint(path, config="cmt_aqr_voxel0100_r50_800x320")
    check_training_values(read_checkpoint(path).meta, load_config("cmt_aqr_voxel0100_r50_800x320_clamp2.5_res0.6"),
                          path)  # the config of its training passes
