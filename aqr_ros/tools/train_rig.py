"""Train AQR-CMT from scratch on random synthetic-rig scenes, with CMT's losses, and export a ``.safetensors``.

    python -m aqr_ros.tools.train_rig --out models/weights/aqr_cmt_rig_small.safetensors

Samples are rendered once through the node's input path and cached (:mod:`aqr_ros.tools.rig_dataset`). Each
iteration draws a batch of training seeds, applies a random BEV flip/rotation and drops cameras at random
(the node runs with missing cameras), adds CMT's denoising queries, and takes one AdamW step on the summed
losses of every decoder layer (:class:`aqr_ros.model.losses.CmtLoss`). The learning rate follows CMT's
cyclic schedule (up to 6x the base rate over the first 40 %, then down to 1e-4 of it). Everything random is
seeded: the same command on the same machine gives the same file. ``--work-dir`` holds a resumable
checkpoint and the loss log; ``--resume`` continues a stopped run where it stopped.
"""

from __future__ import annotations

import copy
import json
import math
import platform
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from aqr_ros.model import AqrCmt, load_config
from aqr_ros.model.checkpoint import RawCheckpoint, export_safetensors
from aqr_ros.model.config import ModelConfig
from aqr_ros.model.denoising import make_denoising_queries
from aqr_ros.model.losses import CmtLoss, gravity_centre_boxes
from aqr_ros.model.task_head import REGRESSION_BRANCHES
from aqr_ros.tools.cli import add_device_argument, make_parser, resolve_device
from aqr_ros.tools.rig_dataset import (
    FIRST_EVAL_SEED,
    Augmentation,
    RigSample,
    SampleCache,
    augment,
    default_cache_dir,
    normalised_images,
    parse_seeds,
)

DEFAULT_CONFIG = "aqr_cmt_rig_small"
#: Loss terms of the last decoder layer shown in the progress line and the log (``loss`` is the total).
LOGGED_LOSSES = ("loss", "loss_cls", "loss_bbox", "dn_loss_cls", "dn_loss_bbox")


@dataclass(frozen=True)
class TrainOptions:
    """Everything that determines a training run (recorded in the exported file)."""

    config: str = DEFAULT_CONFIG
    seeds: str = "0-1599"
    iterations: int = 1200
    batch_size: int = 4
    lr: float = 2e-4
    weight_decay: float = 0.01
    grad_clip: float = 35.0
    #: Probability that a sample loses one random camera / all cameras (the node masks absent cameras).
    drop_one_camera: float = 0.2
    drop_all_cameras: float = 0.05
    #: Start with a local decoder cross-attention (:func:`local_attention_init`).
    local_attention: bool = True
    seed: int = 0
    device: str = "auto"


class CyclicLr:
    """CMT's cyclic schedule: cosine from ``lr`` up to ``6·lr`` over the first 40 % of the steps, then down to
    ``1e-4·lr``."""

    def __init__(self, lr: float, total: int, up_ratio: float = 0.4, peak: float = 6.0, end: float = 1e-4) -> None:
        self.lr, self.total, self.up = lr, total, max(1, int(round(total * up_ratio)))
        self.peak, self.end = peak, end

    def __call__(self, step: int) -> float:
        """Learning rate of ``step`` (0-based)."""
        if step < self.up:
            start, stop, frac = 1.0, self.peak, step / self.up
        else:
            start, stop, frac = self.peak, self.end, (step - self.up) / max(1, self.total - self.up)
        return self.lr * (stop + (start - stop) * (1 + math.cos(math.pi * min(frac, 1.0))) / 2)


@dataclass
class Batch:
    """Model inputs and targets of one training step (on the training device)."""

    points: list[torch.Tensor]
    images: torch.Tensor
    lidar2img: torch.Tensor
    camera_valid: torch.Tensor
    gt_boxes: list[torch.Tensor]
    gt_labels: list[torch.Tensor]


def make_batch(samples: Sequence[RigSample], config: ModelConfig, options: TrainOptions, rng: np.random.Generator,
               device: torch.device, augmentation: Augmentation | None = None) -> Batch:
    """Augment, normalise and move ``samples`` to ``device``; keep boxes with LiDAR points inside the range
    (mmdet3d's training filters), as gravity-centre boxes."""
    views = config.image.num_views
    r = config.lidar.point_cloud_range
    points, images, l2i, valid, boxes, labels = [], [], [], [], [], []
    for sample in samples:
        A = augmentation.draw(rng) if augmentation else np.eye(2)
        pts, lidar2img, gt = augment(sample, A)
        keep = (sample.gt_num_points > 0) & (np.abs(gt[:, 0]) < r[3]) & (np.abs(gt[:, 1]) < r[4])
        cam_ok = np.ones(views, dtype=bool)
        draw = rng.random()
        if draw < options.drop_all_cameras:
            cam_ok[:] = False
        elif draw < options.drop_all_cameras + options.drop_one_camera:
            cam_ok[rng.integers(views)] = False
        points.append(torch.from_numpy(pts).to(device))
        images.append(normalised_images(sample.images, config))
        l2i.append(torch.from_numpy(lidar2img))
        valid.append(torch.from_numpy(cam_ok))
        boxes.append(gravity_centre_boxes(torch.from_numpy(gt[keep]).float()).to(device))
        labels.append(torch.from_numpy(sample.gt_labels[keep]).to(device))
    return Batch(points=points, images=torch.cat(images).to(device), lidar2img=torch.stack(l2i).to(device),
                 camera_valid=torch.stack(valid).to(device), gt_boxes=boxes, gt_labels=labels)


def training_step(model: AqrCmt, criterion: CmtLoss, batch: Batch,
                  generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Forward with denoising queries and CMT's losses (no backward); returns the loss dict."""
    cfg = model.config
    dn = make_denoising_queries(batch.gt_boxes, batch.gt_labels, cfg.head.num_query, len(cfg.head.class_names),
                                cfg.lidar.point_cloud_range, generator=generator)
    out = model.forward_train(batch.points, batch.images, batch.lidar2img, batch.camera_valid,
                              None if dn is None else dn.reference, None if dn is None else dn.attn_mask)
    return criterion(out.predictions, batch.gt_boxes, batch.gt_labels, dn)


def local_attention_init(model: AqrCmt, gain: float = 16.0) -> None:
    """Start the decoder's cross-attention local: identity query/key projections and BEV position embeddings
    ``gain`` times larger, so that a query's attention logits are dominated by the similarity of its own
    position embedding to each BEV cell's and it attends around its reference point from the first iteration.

    With the random initialisation a query attends almost uniformly to all cells (measured: 0.5 % of the
    attention within ±2 cells of a denoising query, the uniform share), so its output cannot tell where an
    object lies relative to it, and box regression stays at the reference point for hundreds of iterations.
    Training changes every one of these weights; only the starting point differs.
    """
    head = model.pts_bbox_head
    dim = model.config.head.hidden_dim
    with torch.no_grad():
        head.bev_embedding[2].weight.mul_(gain)
        head.bev_embedding[2].bias.mul_(gain)
        eye = torch.eye(dim, device=head.bev_embedding[2].weight.device)
        for layer in head.transformer.decoder.layers:
            weight = layer.attentions[1].attn.in_proj_weight
            weight[:dim] = eye
            weight[dim:2 * dim] = eye


def prepare_for_training(model: AqrCmt, bn_momentum: float = 0.1) -> AqrCmt:
    """Training mode from scratch: trainable BatchNorm statistics in the image backbone (the nuScenes configs
    keep ImageNet's frozen) and every BatchNorm's running statistics following within tens of iterations
    (``bn_momentum``; mmdet3d's 0.01 is meant for 20-epoch runs), and regression branches whose outputs start
    near zero (boxes on the reference points, 1 m sizes) instead of the Kaiming-initialised last layer, whose
    initial centre offsets of a few logits put every box tens of metres away."""
    model.img_backbone.norm_eval = False
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = bn_momentum
    head = model.pts_bbox_head.task_heads[0]
    for name, _ in REGRESSION_BRANCHES:
        last = head.get_submodule(name)[-1]
        torch.nn.init.normal_(last.weight, std=1e-3)
        torch.nn.init.zeros_(last.bias)
    return model.train()


class StepBatches:
    """The batch of every step as a pure function of (options.seed, step), prepared ahead in a thread.

    Drawing each step's seeds, augmentation and dropped cameras from its own generator makes a run
    reproducible from any step (``--resume``) and lets the next batch load while the model trains.
    """

    def __init__(self, cache: SampleCache, seeds: Sequence[int], config: ModelConfig, options: TrainOptions,
                 device: torch.device) -> None:
        self.cache, self.seeds, self.config, self.options, self.device = cache, list(seeds), config, options, device
        self.augmentation = Augmentation()
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._pending: dict[int, Future] = {}

    def make(self, step: int) -> Batch:
        """The batch of ``step``, built in the calling thread."""
        rng = np.random.default_rng([self.options.seed, step])
        chosen = rng.choice(self.seeds, size=self.options.batch_size, replace=False)
        samples = [self.cache.load(int(s)) for s in chosen]
        return make_batch(samples, self.config, self.options, rng, self.device, self.augmentation)

    def get(self, step: int) -> Batch:
        """The batch of ``step`` (prefetched when possible); schedules ``step + 1``."""
        future = self._pending.pop(step, None)
        batch = future.result() if future is not None else self.make(step)
        self._pending = {step + 1: self._pool.submit(self.make, step + 1)}
        return batch

    def close(self) -> None:
        """Stop the prefetching thread."""
        self._pool.shutdown(wait=True, cancel_futures=True)


def dn_generator(options: TrainOptions, step: int, device: torch.device) -> torch.Generator:
    """The denoising-noise generator of ``step`` (seeded by the run seed and the step)."""
    return torch.Generator(device=device).manual_seed(options.seed * 1_000_003 + step)


def seconds_per_iteration(model: AqrCmt, batches: StepBatches, options: TrainOptions, device: torch.device,
                          timed: int = 8) -> float:
    """Measured time of one training iteration, on a copy of the model (the run itself is left untouched)."""
    probe = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    criterion = CmtLoss(len(probe.config.head.class_names))
    start = 0.0
    for step in range(2 + timed):
        if step == 2:
            _synchronize(device)
            start = time.perf_counter()
        losses = training_step(probe, criterion, batches.make(step), dn_generator(options, step, device))
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
    _synchronize(device)
    return (time.perf_counter() - start) / timed


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(options: TrainOptions, out: Path, work_dir: Path, cache_root: Path | None = None, workers: int = 2,
          resume: bool = False, log_every: int = 20, checkpoint_every: int = 200,
          time_budget: float | None = None) -> dict:
    """Run the training described by ``options``; write ``out`` (.safetensors) and return the run's summary.

    With ``time_budget`` (seconds of training), the iteration count is set from a measured iteration time so
    that the run fits; the count used is recorded (reproduce with ``--iterations``).
    """
    config = load_config(options.config)
    seeds = parse_seeds(options.seeds)
    if max(seeds) >= FIRST_EVAL_SEED:
        raise ValueError(f"training seeds must stay below {FIRST_EVAL_SEED}: seeds from {FIRST_EVAL_SEED} on are "
                         "the held-out evaluation scenes")
    if len(seeds) < options.batch_size:
        raise ValueError(f"--batch-size {options.batch_size} needs at least as many training seeds")
    device = resolve_device(options.device)
    work_dir.mkdir(parents=True, exist_ok=True)
    cache = SampleCache(config, cache_root)
    started = time.perf_counter()
    print(f"train_rig: {len(seeds)} training scenes, cache {cache.folder}", flush=True)
    cache.ensure(seeds, workers=workers, progress=_render_progress(started))
    render_seconds = time.perf_counter() - started

    # Subnormal floats appear in the gradients and optimizer states as training goes on and made CPU iterations
    # twice as slow (measured); flushing them to zero costs nothing in accuracy.
    torch.set_flush_denormal(True)
    torch.manual_seed(options.seed)
    model = prepare_for_training(AqrCmt(config).to(device))
    if options.local_attention:
        local_attention_init(model)
    batches = StepBatches(cache, seeds, config, options, device)
    state_path = work_dir / "last.pt"
    state = torch.load(state_path, map_location=device, weights_only=True) if resume and state_path.is_file() else None
    if state is None and time_budget is not None:
        per_iteration = seconds_per_iteration(model, batches, options, device)
        options = replace(options, iterations=max(1, int(0.97 * time_budget / per_iteration)))
        print(f"train_rig: {per_iteration:.3f} s per iteration → {options.iterations} iterations in "
              f"{time_budget:.0f} s", flush=True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    schedule = CyclicLr(options.lr, options.iterations)
    criterion = CmtLoss(len(config.head.class_names))
    step, elapsed_before = 0, 0.0
    log_path = work_dir / "train_log.jsonl"
    if state is not None:
        saved = TrainOptions(**state["options"])
        differing = [k for k, v in asdict(options).items() if k != "iterations" and getattr(saved, k) != v]
        if differing:
            raise ValueError(f"{state_path} belongs to a run with other options ({', '.join(differing)}); "
                             "use the same options or another --work-dir")
        options = saved
        schedule = CyclicLr(options.lr, options.iterations)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed_before = state["step"], state["elapsed"]
        print(f"train_rig: resumed {state_path} at iteration {step} of {options.iterations}", flush=True)
    elif log_path.exists():
        log_path.unlink()

    train_start = time.perf_counter()
    window: dict[str, float] = {}
    window_start, window_step = time.perf_counter(), step
    try:
        with log_path.open("a") as log:
            while step < options.iterations:
                lr = schedule(step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                losses = training_step(model, criterion, batches.get(step), dn_generator(options, step, device))
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), options.grad_clip)
                optimizer.step()
                step += 1
                for name in LOGGED_LOSSES:
                    if name in losses:
                        window[name] = window.get(name, 0.0) + losses[name].item()
                if step % log_every == 0 or step == options.iterations:
                    now = time.perf_counter()
                    seconds_per_it = (now - window_start) / (step - window_step)
                    record = {"iteration": step, "lr": lr, "seconds_per_iteration": round(seconds_per_it, 3),
                              **{k: round(v / (step - window_step), 4) for k, v in window.items()}}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    eta = (options.iterations - step) * seconds_per_it / 60
                    parts = "  ".join(f"{k} {record[k]:.3f}" for k in LOGGED_LOSSES if k in record)
                    print(f"it {step}/{options.iterations}  {parts}  lr {lr:.2e}  {1 / seconds_per_it:.2f} it/s  "
                          f"ETA {eta:.0f} min", flush=True)
                    window, window_start, window_step = {}, now, step
                if step % checkpoint_every == 0 or step == options.iterations:
                    elapsed = elapsed_before + time.perf_counter() - train_start
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
                                "options": asdict(options), "elapsed": elapsed}, state_path)
    finally:
        batches.close()
    train_seconds = elapsed_before + time.perf_counter() - train_start

    summary = {
        "options": asdict(options),
        "config": config.name,
        "training_scenes": len(seeds),
        "render_seconds": round(render_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "device": _device_name(device),
        "torch": torch.__version__,
        "command": _reproduce_command(options),
    }
    model.eval()
    meta = {"CLASSES": list(config.head.class_names), "training": summary}
    out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.cpu() for k, v in model.state_dict().items()}
    export_safetensors(RawCheckpoint(state, meta, "safetensors"), out, config)
    print(f"train_rig: wrote {out} ({out.stat().st_size / 1e6:.1f} MB) after {step} iterations, "
          f"{train_seconds / 60:.1f} min training + {render_seconds / 60:.1f} min rendering", flush=True)
    return summary


def _reproduce_command(options: TrainOptions) -> str:
    """The command line that repeats a run with ``options`` (every option spelled out)."""
    return (f"python -m aqr_ros.tools.train_rig --config {options.config} --seeds {options.seeds} "
            f"--iterations {options.iterations} --batch-size {options.batch_size} --lr {options.lr} "
            f"{'' if options.local_attention else '--no-local-attention '}"
            f"--seed {options.seed} --device {options.device} --out <file>.safetensors")


def _render_progress(started: float):
    """Progress callback printing the rendered sample count about every 10 %."""
    last = [-1]

    def report(done: int, total: int) -> None:
        tenth = done * 10 // max(total, 1)
        if tenth != last[0] or done == total:
            last[0] = tenth
            print(f"train_rig: samples {done}/{total} ({time.perf_counter() - started:.0f} s)", flush=True)
    return report


def _device_name(device: torch.device) -> str:
    """Human-readable device: the GPU's name, or the CPU with its thread count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: train, export, print the summary."""
    defaults = TrainOptions()
    parser = make_parser("aqr_train_rig", __doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    parser.add_argument("--config", default=defaults.config, help="model config name or YAML path")
    parser.add_argument("--seeds", default=defaults.seeds,
                        help=f"training scene seeds, e.g. 0-1199 (must stay below {FIRST_EVAL_SEED})")
    parser.add_argument("--iterations", type=int, default=defaults.iterations, help="optimizer steps")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="samples per step")
    parser.add_argument("--lr", type=float, default=defaults.lr, help="base learning rate (the peak is 6x)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of everything random")
    parser.add_argument("--no-local-attention", dest="local_attention", action="store_false",
                        help="keep the random initialisation of the decoder's cross-attention")
    add_device_argument(parser, default=defaults.device, help="training device: auto is CUDA when available")
    parser.add_argument("--work-dir", type=Path, default=Path("work/train_rig"),
                        help="resumable checkpoint (last.pt) and loss log (train_log.jsonl)")
    parser.add_argument("--resume", action="store_true", help="continue from WORK_DIR/last.pt")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="rendered-sample cache")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering samples")
    parser.add_argument("--time-budget", type=float, metavar="SECONDS",
                        help="set --iterations from a measured iteration time so that training takes this long")
    parser.add_argument("--log-every", type=int, default=20, help="iterations between progress lines")
    parser.add_argument("--checkpoint-every", type=int, default=200,
                        help="iterations between resumable checkpoints in --work-dir")
    args = parser.parse_args(argv)
    options = TrainOptions(config=args.config, seeds=args.seeds, iterations=args.iterations,
                           batch_size=args.batch_size, lr=args.lr, local_attention=args.local_attention,
                           seed=args.seed, device=args.device)
    try:
        train(options, args.out, args.work_dir, args.cache_dir, args.workers, args.resume, args.log_every,
              args.checkpoint_every, args.time_budget)
    except (ValueError, OSError) as exc:
        print(f"train_rig: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
