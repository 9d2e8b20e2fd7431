"""Node benchmark (not a test): the rig at a fixed LiDAR rate through the real node, over DDS.

``python -m aqr_ros.tools.bench node [--hz 10] [--duration 20] [--device auto] [--config NAME]``

The rig publisher stamps its messages with the playback clock (a live sensor), so the latency is
measured from the cloud stamp to the arrival of the detections in this process. Per-stage times come
from the node's own diagnostics (published every 50 ms here), drops from its counters. The figure of
interest for the ROS side is everything but the model forward: printed as a sum and as a ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from aqr_ros.model import load_config
from aqr_ros.tools.processes import NODE, child_env, node_arguments, spawn, stop
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD

#: Goal of issue 4: ROS-side work per frame on CPU (ms), and as a fraction of the model time on a GPU.
GOAL_ROS_SIDE_CPU_MS = 10.0
GOAL_ROS_SIDE_GPU_FRACTION = 0.10
#: Stages that are not ROS-side work: the forward pass and its sub-stages, and the queueing wait.
_NON_ROS_STAGES = ("model", "wait")


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``aqr_bench node``."""
    parser = argparse.ArgumentParser(prog="aqr_bench node", description=__doc__.splitlines()[0])
    parser.add_argument("--hz", type=float, default=10.0, help="LiDAR rate of the rig")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of sensor data")
    parser.add_argument("--config", default="cmt_aqr_voxel0100_r50_800x320")
    parser.add_argument("--checkpoint", default="")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    parser.add_argument("--out", type=Path, default=Path("out/bench_node"), help="folder for the child logs")
    parser.add_argument("--domain-id", type=int, default=43)
    args = parser.parse_args(argv)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from vision_msgs.msg import Detection3DArray

    views = load_config(args.config).image.num_views
    args.out.mkdir(parents=True, exist_ok=True)
    env, tf_note = child_env(args.domain_id)
    params: dict[str, object] = {"model.config": args.config, "model.device": args.device,
                                 "model.precision": args.precision, "diag.period": 0.05}
    if args.checkpoint:
        params["model.checkpoint"] = args.checkpoint
    rate = args.hz * LIDAR_PERIOD
    frames = max(1, int(args.duration * args.hz))
    print(f"node benchmark: {args.config} on '{args.device}' ({args.precision}), rig at {args.hz:g} Hz for "
          f"{args.duration:g} s ({frames} clouds, six 1600x900 bgr8 images each); {tf_note}")

    rclpy.init(domain_id=args.domain_id)
    listener = rclpy.create_node("aqr_bench_node")
    latencies: list[float] = []
    stage_samples: dict[int, dict[str, float]] = {}
    counters: dict[str, str] = {}

    def on_detections(msg: Detection3DArray) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        latencies.append((time.time() - stamp) * 1e3)

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id != NODE:
                continue
            values = {kv.key: kv.value for kv in status.values}
            counters.update({k: v for k, v in values.items() if k.startswith("frames ")})
            published = int(values.get("frames published", "0"))
            stages = {k[len("stage "):-len(" ms")]: float(v) for k, v in values.items()
                      if k.startswith("stage ") and k.endswith(" ms")}
            if published and stages:
                stage_samples[published] = stages

    listener.create_subscription(Detection3DArray, f"{NODE}/output/detections", on_detections, 10)
    listener.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 50)
    executor = SingleThreadedExecutor()
    executor.add_node(listener)
    node_proc = spawn(node_arguments(params, views), env, args.out / "aqr_node.log")
    rig_proc = None
    try:
        while listener.count_publishers(f"{NODE}/output/detections") == 0:
            executor.spin_once(timeout_sec=0.2)
            if node_proc.poll() is not None:
                print(f"aqr_node exited with code {node_proc.returncode}; see {args.out / 'aqr_node.log'}")
                return 1
        print("rendering the rig sequence before publishing ...")
        rig_proc = spawn(["-m", "aqr_ros.tools.rig_publisher", "--frames", str(frames), "--rate", str(rate),
                          "--live-stamps", "--wait-for-subscribers", "1", "--linger", "2"],
                         env, args.out / "rig_publisher.log")
        while rig_proc.poll() is None:
            executor.spin_once(timeout_sec=0.05)
        settle = time.monotonic() + 5.0
        while time.monotonic() < settle:
            executor.spin_once(timeout_sec=0.05)
    finally:
        stop(rig_proc)
        stop(node_proc)
        listener.destroy_node()
        rclpy.try_shutdown()

    device = "cuda" if args.device in ("auto", "") and torch.cuda.is_available() else args.device
    print(f"\nprocessed {len(latencies)} of {frames} clouds; node counters: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counters.items())))
    print(f"latency cloud stamp -> detections received: p50 {_percentile(latencies, 50):.1f} ms, "
          f"p99 {_percentile(latencies, 99):.1f} ms")
    if not stage_samples:
        print("no per-stage samples (no frame was published)")
        return 1
    names = list(next(iter(stage_samples.values())))
    print(f"per-stage times, median of {len(stage_samples)} frames (node diagnostics):")
    for name in names:
        values = [s[name] for s in stage_samples.values() if name in s]
        print(f"   {name:<28} {statistics.median(values):9.2f} ms")
    ros_side = [sum(v for k, v in s.items() if k.split("/")[0] not in _NON_ROS_STAGES) for s in stage_samples.values()]
    model = [s["model"] for s in stage_samples.values() if "model" in s]
    ros_ms, model_ms = statistics.median(ros_side), statistics.median(model)
    print(f"ROS-side work (everything but the model forward and the queue wait): {ros_ms:.1f} ms per frame; "
          f"model {model_ms:.1f} ms; ratio {ros_ms / model_ms:.3f}")
    if device.startswith("cuda"):
        print(f"   goal: <= {GOAL_ROS_SIDE_GPU_FRACTION:.0%} of the model time -> "
              f"{ros_ms / model_ms / GOAL_ROS_SIDE_GPU_FRACTION:.2f} of the budget")
    else:
        print(f"   goal on CPU: <= {GOAL_ROS_SIDE_CPU_MS:.0f} ms -> {ros_ms / GOAL_ROS_SIDE_CPU_MS:.2f} of the budget")
    return 0
