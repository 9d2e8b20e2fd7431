"""The demo: the node and the synthetic rig as separate processes talking over real DDS on loopback.

Starts ``aqr_node`` (the real node, model on the configured device) and ``aqr_rig_publisher`` (cloud,
six cameras, camera_info, tf), listens to the node's outputs from this process, prints each processed
frame's latency and detections, and writes per frame the weight-map images (PNG) and the detections
(JSON) to the output folder. Without ``--checkpoint`` the model has random weights: the boxes are then
meaningless, and the demo says so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from aqr_ros.tools.processes import NODE, child_env, node_arguments, spawn, stop
from aqr_ros.tools.synthetic_rig import LIDAR_PERIOD


@dataclass
class FrameRecord:
    """Everything the demo received for one processed frame (keyed by the cloud stamp)."""

    stamp_ns: int
    detections: list[dict[str, Any]] = field(default_factory=list)
    processing_ms: float | None = None


def _stamp_ns(stamp: Any) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _yaw(q: Any) -> float:
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))


def _detections_json(msg: Any) -> list[dict[str, Any]]:
    out = []
    for det in msg.detections:
        c, s = det.bbox.center, det.bbox.size
        hyp = det.results[0].hypothesis if det.results else None
        out.append({
            "query_index": int(det.id) if det.id.isdigit() else det.id,
            "class": hyp.class_id if hyp else "",
            "score": round(float(hyp.score), 4) if hyp else None,
            "center": [round(c.position.x, 3), round(c.position.y, 3), round(c.position.z, 3)],
            "size_lwh": [round(s.x, 3), round(s.y, 3), round(s.z, 3)],
            "yaw": round(_yaw(c.orientation), 4),
        })
    return out


class DemoListener:
    """rclpy node in the demo process recording the aqr_node outputs per cloud stamp."""

    def __init__(self, node: Any, views: int) -> None:
        from sensor_msgs.msg import Image
        from std_msgs.msg import Float64
        from vision_msgs.msg import Detection3DArray

        self.node = node
        self.frames: dict[int, FrameRecord] = {}
        self.order: list[int] = []
        #: Latest weight-map picture per publisher ("bev", "camera0", ...).
        self.latest_images: dict[str, np.ndarray] = {}
        self.lock = threading.Lock()
        #: The node's processing time of each published frame, in publishing order (one per detections message).
        self.processing_ms: list[float] = []
        node.create_subscription(Detection3DArray, f"{NODE}/output/detections", self._on_detections, 10)
        node.create_subscription(Float64, f"{NODE}/debug/processing_time_ms", self._on_time, 10)
        node.create_subscription(Image, f"{NODE}/debug/weight_map/bev", lambda m: self._on_image("bev", m), 10)
        for i in range(views):
            node.create_subscription(Image, f"{NODE}/debug/weight_map/camera{i}",
                                     lambda m, i=i: self._on_image(f"camera{i}", m), 10)

    def _record(self, stamp_ns: int) -> FrameRecord:
        if stamp_ns not in self.frames:
            self.frames[stamp_ns] = FrameRecord(stamp_ns)
        return self.frames[stamp_ns]

    def _on_detections(self, msg: Any) -> None:
        with self.lock:
            rec = self._record(_stamp_ns(msg.header.stamp))
            rec.detections = _detections_json(msg)
            self.order.append(rec.stamp_ns)

    def _on_time(self, msg: Any) -> None:
        with self.lock:
            self.processing_ms.append(float(msg.data))

    def _on_image(self, name: str, msg: Any) -> None:
        if msg.encoding != "rgb8":
            return
        rgb = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.step)[:, :msg.width * 3]
        with self.lock:
            self.latest_images[name] = rgb.reshape(msg.height, msg.width, 3)

    def processed(self) -> int:
        """Number of frames whose detections arrived."""
        with self.lock:
            return len(self.order)


def _write_frame(out: Path, index: int, rec: FrameRecord, images: dict[str, np.ndarray]) -> None:
    folder = out / f"frame_{index:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    for name, rgb in images.items():
        cv2.imwrite(str(folder / f"weight_map_{name}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    (folder / "detections.json").write_text(json.dumps(
        {"stamp_ns": rec.stamp_ns, "processing_ms": rec.processing_ms, "detections": rec.detections}, indent=1))


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point (``aqr_demo``, ``./scripts/demo.sh``)."""
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser(prog="aqr_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20 if cuda else 3, help="processed frames to collect")
    parser.add_argument("--config", default="cmt_aqr_voxel0100_r50_800x320", help="model config name or YAML")
    parser.add_argument("--checkpoint", default="", help="model checkpoint (.pth/.safetensors); empty = random")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--rate", type=float, default=1.0 if cuda else 0.05,
                        help="rig playback speed (1 = real time; slower on CPU so frames are not all dropped)")
    parser.add_argument("--out", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--domain-id", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "42")))
    args = parser.parse_args(argv)

    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from aqr_ros.model import load_config

    views = load_config(args.config).image.num_views
    args.out.mkdir(parents=True, exist_ok=True)
    env, tf_note = child_env(args.domain_id)
    print(f"aqr_ros demo: model {args.config} on device '{args.device}', {args.frames} frames, output {args.out}")
    print(f"  DDS on loopback, ROS_DOMAIN_ID={args.domain_id}; {tf_note}")
    if not args.checkpoint:
        print("  NOTE: no --checkpoint given: the model has RANDOM weights, so boxes and weight maps are "
              "meaningless; they only show the data path.")

    params: dict[str, object] = {"model.config": args.config, "model.device": args.device, "score_threshold": 0.0}
    if args.checkpoint:
        params["model.checkpoint"] = args.checkpoint
    node_args = node_arguments(params, views)
    # Enough rig time to process the requested frames at the measured speed is unknown up front:
    # publish plenty of frames slowly; the node always takes the newest complete one.
    rig_frames = max(40, args.frames * 12)
    rig_args = ["-m", "aqr_ros.tools.rig_publisher", "--frames", str(rig_frames), "--rate", str(args.rate),
                "--prebuffer", "2.0", "--wait-for-subscribers", "1", "--wait-timeout", str(args.timeout)]

    rclpy.init(domain_id=args.domain_id)
    listener_node = rclpy.create_node("aqr_demo")
    listener = DemoListener(listener_node, views)
    executor = SingleThreadedExecutor()
    executor.add_node(listener_node)
    node_proc = spawn(node_args, env, args.out / "aqr_node.log")
    rig_proc = None
    start = time.monotonic()
    written = 0
    try:
        print("  starting aqr_node (model load and warm-up) ...")
        while listener_node.count_publishers(f"{NODE}/output/detections") == 0:
            executor.spin_once(timeout_sec=0.2)
            if node_proc.poll() is not None:
                print(f"aqr_node exited with code {node_proc.returncode}; see {args.out / 'aqr_node.log'}")
                return 1
            if time.monotonic() - start > args.timeout:
                print("timed out waiting for aqr_node")
                return 1
        print(f"  aqr_node ready after {time.monotonic() - start:.1f} s; starting the rig at {args.rate}x real time "
              f"({1 / (LIDAR_PERIOD / args.rate):.1f} clouds/s)")
        rig_proc = spawn(rig_args, env, args.out / "rig_publisher.log")
        last_count = 0
        while written < args.frames and time.monotonic() - start < args.timeout:
            executor.spin_once(timeout_sec=0.1)
            if listener.processed() > last_count:
                # Give the weight-map images of this frame a moment to arrive.
                settle = time.monotonic() + 1.0
                while time.monotonic() < settle:
                    executor.spin_once(timeout_sec=0.05)
                with listener.lock:
                    stamp = listener.order[last_count]
                    rec = listener.frames[stamp]
                    if len(listener.processing_ms) > last_count:  # the k-th time belongs to the k-th frame
                        rec.processing_ms = listener.processing_ms[last_count]
                    images = dict(listener.latest_images)
                last_count += 1
                _write_frame(args.out, written, rec, images)
                top = sorted(rec.detections, key=lambda d: -(d["score"] or 0))[:3]
                ms = f"{rec.processing_ms:.0f} ms" if rec.processing_ms is not None else "n/a"
                print(f"frame {written}: stamp {stamp / 1e9:.3f}  node latency {ms}  {len(rec.detections)} detections"
                      + "".join(f"\n    {d['class']:<20} {d['score']:.3f} at ({d['center'][0]:7.2f}, "
                                f"{d['center'][1]:7.2f}, {d['center'][2]:5.2f}) id {d['query_index']}" for d in top))
                written += 1
            if rig_proc.poll() is not None and listener.processed() == last_count:
                executor.spin_once(timeout_sec=2.0)
                if listener.processed() == last_count:
                    break
    finally:
        stop(rig_proc)
        stop(node_proc)
        listener_node.destroy_node()
        rclpy.try_shutdown()
    times = [listener.frames[s].processing_ms for s in listener.order[:written]
             if listener.frames[s].processing_ms is not None]
    summary = {"frames": written, "config": args.config, "checkpoint": args.checkpoint or None,
               "processing_ms": times}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    if times:
        print(f"processed {written} frames; node latency median {np.median(times):.0f} ms, max {max(times):.0f} ms")
    print(f"wrote {written} frame folders (weight_map_*.png, detections.json) and summary.json to {args.out}")
    return 0 if written >= args.frames else 1


if __name__ == "__main__":
    sys.exit(main())
