"""Benchmarks (not tests): per-stage model times, the AQR pieces alone, and the node end to end.

``python -m aqr_ros.tools.bench model``  whole-model forward per stage, CPU and CUDA, fp32 and fp16
``python -m aqr_ros.tools.bench aqr``    AQR generator + renderer + modulator at 900 and 1730 queries,
                                         gathered vs dense-mask local attention
``python -m aqr_ros.tools.bench node``   the node on the synthetic rig over DDS (see :mod:`.bench_node`)

Every figure is measured on the machine it runs on and printed with the device name; goals from the
issues are printed as ratios next to the measurement, never asserted.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.aqr import local_attention_mask, local_key_indices, project_reference_points
from aqr_ros.model.config import ModelConfig
from aqr_ros.model.detector import DEFAULT_CONFIG
from aqr_ros.model.timing import StageTimer
from aqr_ros.tools.cli import (DEVICE_VALUES, PRECISIONS, HelpFormatter, device_list_type, make_parser,
                               precision_list, resolve_device)
from aqr_ros.tools.rig_inputs import rig_model_input
from aqr_ros.tools.synthetic_rig import SyntheticRig

#: Goals of issue 3 (H100, fp16) and the original implementation's figure (A100, fp32), in ms.
GOAL_MODEL_MS = 20.0
GOAL_AQR_MS = 1.0
ORIGINAL_MODEL_MS = 70.0


def device_name(device: torch.device) -> str:
    """Human-readable device name (GPU model, or the CPU with its thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} torch threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_ms(fn: Callable[[], object], device: torch.device, iters: int, warmup: int) -> float:
    """Median wall time of ``fn`` over ``iters`` runs after ``warmup`` runs, device-synchronized."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _peak_memory_mb(device: torch.device) -> float:
    """Peak CUDA memory allocated (since the last reset) on a GPU, else this process's peak RSS, in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_model(cfg: ModelConfig, checkpoint: str | None, devices: Sequence[torch.device], precisions: Sequence[str],
                iters: int, warmup: int) -> list[dict]:
    """Per-stage and total forward times of the whole model on a synthetic-rig frame, printed and returned
    (one record per device and precision run)."""
    records = []
    rig = SyntheticRig(seed=0)
    torch.manual_seed(0)
    cpu_model = AqrCmt.from_checkpoint(checkpoint, config=cfg)
    for device in devices:
        model = cpu_model.to(device)
        frame = rig_model_input(rig, cfg, frame_index=cfg.lidar.num_sweeps, device=device)
        print(f"\n== model {cfg.name} on {device_name(device)}: {frame.num_points} points "
              f"({frame.num_sweeps} sweeps), 6 images {tuple(frame.images.shape[-2:])}")
        for precision in precisions:
            fp16 = precision == "fp16"
            if fp16 and device.type != "cuda":
                print(f"[skip] fp16 on {device}: autocast fp16 is a CUDA option")
                continue
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)

            def run(timer: StageTimer | None = None) -> object:
                return model.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid,
                                   fp16=fp16, timer=timer)

            total = _median_ms(run, device, iters, warmup)
            stage_runs: list[dict[str, float]] = []
            for _ in range(iters):
                timer = StageTimer(device, synchronize=True)
                run(timer)
                stage_runs.append(timer.ms)
            stages = {name: statistics.median(r[name] for r in stage_runs) for name in stage_runs[0]}
            peak = _peak_memory_mb(device)
            records.append({"device": device_name(device), "device_type": device.type, "precision": precision,
                            "forward_ms": total, "stages_ms": stages, "peak_memory_mib": peak, "iters": iters})
            print(f"-- {precision}: forward {total:.1f} ms median of {iters} (no per-stage syncs); "
                  f"peak memory {peak:.0f} MiB")
            for name, ms in stages.items():
                print(f"   {name:<22} {ms:9.2f} ms")
            if device.type == "cuda":
                print(f"   ratio to the {GOAL_MODEL_MS:.0f} ms goal: {total / GOAL_MODEL_MS:.2f}; "
                      f"to the original {ORIGINAL_MODEL_MS:.0f} ms: {total / ORIGINAL_MODEL_MS:.2f}")
    cpu_model.to("cpu")
    return records


def _aqr_inputs(cfg: ModelConfig, queries: int, device: torch.device):
    """Random memory/positions and random reference points projected with the rig's calibration."""
    gen = torch.Generator().manual_seed(0)
    tokens = cfg.lidar.bev_shape[0] * cfg.lidar.bev_shape[1] + cfg.image.num_views * int(np.prod(cfg.image.feature_shape))
    dim = cfg.head.hidden_dim
    memory = torch.randn(1, tokens, dim, generator=gen).to(device)
    pos = torch.randn(1, tokens, dim, generator=gen).to(device)
    query_pos = torch.randn(1, queries, dim, generator=gen).to(device)
    ref = torch.rand(1, queries, 3, generator=gen).to(device)
    frame = rig_model_input(SyntheticRig(seed=0), cfg, frame_index=0, device=device)
    return memory, pos, query_pos, ref, frame.lidar2img[None], torch.as_tensor(frame.camera_valid, device=device)[None]


def bench_aqr(cfg: ModelConfig, devices: Sequence[torch.device], query_counts: Sequence[int], iters: int,
              warmup: int) -> list[dict]:
    """AQR alone (projection + generator + renderer + modulator) and its attention, gathered vs dense mask;
    printed and returned (one record per device and query count)."""
    records = []
    torch.manual_seed(0)
    head = AqrCmt(cfg).pts_bbox_head
    views, (feat_h, feat_w) = cfg.image.num_views, cfg.image.feature_shape
    bev_h, bev_w = cfg.lidar.bev_shape
    for device in devices:
        head.to(device)
        gen_mod, renderer, modulator = head.aqr_weight_generator, head.weight_renderer, head.feature_modulator
        attn = gen_mod.encoder.layers[0].attentions[0].attn
        x = torch.randn(1, cfg.head.hidden_dim, bev_h, bev_w, device=device)
        x_img = torch.randn(views, cfg.head.hidden_dim, feat_h, feat_w, device=device)
        print(f"\n== AQR on {device_name(device)}")
        for queries in query_counts:
            memory, pos, query_pos, ref, l2i, valid = _aqr_inputs(cfg, queries, device)
            proj = project_reference_points(ref, l2i, cfg, valid)

            @torch.inference_mode()
            def full() -> object:
                p = project_reference_points(ref, l2i, cfg, valid)
                w = gen_mod(memory, pos, query_pos, p)
                maps = renderer(w[..., 0], w[..., 1], p)
                return modulator(x, x_img, *maps)

            @torch.inference_mode()
            def render() -> object:
                return renderer(query_pos[..., 0].sigmoid(), query_pos[..., 1].sigmoid(), proj)

            @torch.inference_mode()
            def gathered() -> object:
                return gen_mod.encode(memory, pos, query_pos, proj)

            mask = local_attention_mask(proj, cfg.aqr.window_sizes, cfg.lidar.bev_shape, (views, feat_h, feat_w),
                                        cfg.aqr.num_heads)

            @torch.inference_mode()
            def dense() -> object:
                q, k, v = query_pos, memory + pos, memory
                if not attn.batch_first:
                    q, k, v = (t.transpose(0, 1) for t in (q, k, v))
                return attn(q, k, v, attn_mask=mask, need_weights=False)

            index, _ = local_key_indices(proj, cfg.aqr.window_sizes, cfg.lidar.bev_shape, (views, feat_h, feat_w))
            t_full = _median_ms(full, device, iters, warmup)
            t_render = _median_ms(render, device, iters, warmup)
            t_gathered = _median_ms(gathered, device, iters, warmup)
            t_dense = _median_ms(dense, device, iters, warmup)
            dense_mb = mask.numel() * mask.element_size() / 2**20
            scores_mb = mask.numel() * 4 / 2**20
            records.append({"device": device_name(device), "device_type": device.type, "queries": queries,
                            "aqr_total_ms": t_full, "renderer_ms": t_render, "gathered_attention_ms": t_gathered,
                            "dense_attention_ms": t_dense, "keys_per_query": index.shape[-1],
                            "dense_mask_mib": dense_mb, "dense_scores_mib": scores_mb, "iters": iters})
            print(f"-- {queries} queries: AQR total {t_full:.2f} ms (renderer alone {t_render:.2f} ms)")
            print(f"   local attention: gathered {t_gathered:.2f} ms over {index.shape[-1]} keys/query vs dense mask "
                  f"{t_dense:.2f} ms (x{t_dense / t_gathered:.1f}); dense mask {dense_mb:.0f} MiB + fp32 scores "
                  f"{scores_mb:.0f} MiB")
            if device.type == "cuda":
                print(f"   ratio to the {GOAL_AQR_MS:.0f} ms AQR goal: {t_full / GOAL_AQR_MS:.2f}")
        head.to("cpu")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``aqr_bench``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["node"]:
        from aqr_ros.tools.bench_node import main as node_main

        return node_main(argv[1:])
    if argv[:1] == ["dds"]:
        from aqr_ros.tools.bench_dds import main as dds_main

        return dds_main(argv[1:])
    parser = make_parser("aqr_bench", __doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    default_devices = "cpu,cuda" if torch.cuda.is_available() else "cpu"
    for name, text in (("model", "the whole forward per stage"), ("aqr", "AQR alone, gathered vs dense attention")):
        p = sub.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
        p.add_argument("--config", default=DEFAULT_CONFIG, help="model config name or YAML path")
        p.add_argument("--devices", type=device_list_type(), default=default_devices,
                       help=f"comma-separated, each one of {DEVICE_VALUES}")
        p.add_argument("--iters", type=int, default=5, help="timed runs (the median is printed)")
        p.add_argument("--warmup", type=int, default=2, help="untimed runs first")
        p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's own choice)")
    sub.choices["model"].add_argument("--checkpoint", default=None, help="checkpoint (omit: random weights)")
    sub.choices["model"].add_argument("--precisions", type=precision_list, default="fp32,fp16",
                                      help=f"comma-separated, each one of {', '.join(PRECISIONS)} (fp16 on CUDA only)")
    sub.choices["aqr"].add_argument("--queries", default="900,1730", help="comma-separated query counts")
    sub.add_parser("node", help="the node end to end (options: aqr_bench node --help)")
    sub.add_parser("dds", help="large-message delivery over DDS (options: aqr_bench dds --help)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    devices = list(dict.fromkeys(resolve_device(d) for d in args.devices))
    if args.what == "model":
        bench_model(cfg, args.checkpoint, devices, args.precisions, args.iters, args.warmup)
    else:
        bench_aqr(cfg, devices, [int(q) for q in args.queries.split(",")], args.iters, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
