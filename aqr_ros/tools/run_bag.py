"""aqr_run_bag: the node's pipeline over recorded bags, offline and deterministic, into an output bag and a
nuScenes detection results file.

Every LiDAR key frame (or, with ``--every-sweep``, every cloud) is processed, nothing dropped, by the node's own
code: the live ``aqr_node`` configured from the same parameter file and remaps, fed the recorded messages through
its callbacks (:mod:`aqr_ros.ros.offline`). Key frames come from the dataset tables (``--dataroot``), else from
the bag's ground-truth topic, else every cloud is one. With ``--dataroot`` the boxes go to a results JSON in the
global frame per ``sample_token`` (``aqr_evaluate_nuscenes`` scores it with the nuScenes devkit).

    aqr_run_bag bags/scene-0103 --dataroot /data/nuscenes --version v1.0-mini --checkpoint model.safetensors
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import rclpy
from rclpy.utilities import remove_ros_args

from aqr_ros.resources import share_path
from aqr_ros.ros.launch_args import DEFAULT_CAMERAS, DEFAULT_IMAGE_SUFFIX, DEFAULT_LIDAR_TOPIC, camera_remaps
from aqr_ros.ros.offline import DetectedFrame, OfflineAqrNode, OfflineRunner, configure_offline
from aqr_ros.tools.bag_io import BagError, BagWriter, bag_topics, read_messages
from aqr_ros.tools.nuscenes_tables import NuScenesError, NuScenesTables
from aqr_ros.tools.progress import ProgressLine
from aqr_ros.tools.cli import add_device_argument, add_precision_argument, HelpFormatter

#: Output topics recorded by default (resolved names of the node ``aqr_node`` in the root namespace).
DEFAULT_RECORD = ("/aqr_node/output/detections", "/aqr_node/output/label_info", "/aqr_node/debug/frame_report")
#: What ``--record`` adds: markers, weight-map images, the per-query AQR weights.
EXTRA_RECORD = {
    "markers": ("/aqr_node/output/markers",),
    "weight_maps": ("/aqr_node/debug/weight_map/",),
    "aqr_weights": ("/aqr_node/debug/aqr_weights",),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aqr_run_bag", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("bags", nargs="+", type=Path, help="input bag folders (one per scene), read in order")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; relative to the cwd)")
    parser.add_argument("--params-file", type=Path, default=share_path("config", "nuscenes.yaml"),
                        help="node parameter file, as for aqr_node")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="node parameter override (repeatable), as `ros2 run ... -p`")
    parser.add_argument("--checkpoint", default="", help="model.checkpoint ('' keeps the parameter file's)")
    parser.add_argument("--config", default="", help="model.config ('' keeps the parameter file's)")
    add_device_argument(parser)
    add_precision_argument(parser)
    parser.add_argument("--random-weights", action="store_true",
                        help="allow an empty checkpoint (random weights: plumbing checks only)")
    parser.add_argument("--lidar-topic", default=DEFAULT_LIDAR_TOPIC, help="the cloud topic in the bag")
    parser.add_argument("--camera-namespaces", default=DEFAULT_CAMERAS,
                        help="comma-separated camera namespaces in model camera order")
    parser.add_argument("--image-suffix", default=DEFAULT_IMAGE_SUFFIX, help="image topic under each camera namespace")
    parser.add_argument("--raw-images", action="store_true", help="the bag holds sensor_msgs/Image, not compressed")
    parser.add_argument("--gt-topic", default="/gt/detections", help="ground truth whose stamps mark key frames")
    parser.add_argument("--every-sweep", action="store_true", help="infer on every cloud, not only key frames")
    parser.add_argument("--dataroot", type=Path, help="nuScenes dataroot: key frames and sample tokens from its "
                                                      "tables, and a results JSON")
    parser.add_argument("--version", default="v1.0-mini", help="nuScenes version folder under --dataroot")
    parser.add_argument("--record", default="", help=f"also record: comma-separated of {', '.join(EXTRA_RECORD)}")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="output bag storage")
    return parser


def node_ros_arguments(args: argparse.Namespace) -> list[str]:
    """The node's ``--ros-args``: the parameter file, the overrides and the inputs remapped onto the bag's topics."""
    ros = ["--ros-args", "--params-file", str(args.params_file), "-p", "autostart:=false",
           "-p", f"model.threads:={os.cpu_count() or 1}",  # no executor to leave cores to; -p may still set it
           "-p", f"input.compressed_images:={str(not args.raw_images).lower()}",
           "-p", f"model.device:={args.device}", "-p", f"model.precision:={args.precision}"]
    for name, value in (("model.checkpoint", args.checkpoint), ("model.config", args.config)):
        if value:
            ros += ["-p", f"{name}:={value}"]
    if args.random_weights:
        ros += ["-p", "model.allow_random_weights:=true"]
    for item in args.param:
        ros += ["-p", item]
    remaps = [("~/input/pointcloud", args.lidar_topic),
              *camera_remaps(args.camera_namespaces, args.image_suffix, compressed=not args.raw_images)]
    return ros + [arg for name, topic in remaps for arg in ("-r", f"{name}:={topic}")]


def recorded(extra: str) -> tuple[str, ...]:
    """The output topic prefixes recorded for ``--record``; unknown names are an error naming the accepted ones."""
    prefixes = list(DEFAULT_RECORD)
    for name in filter(None, (part.strip() for part in extra.split(","))):
        if name not in EXTRA_RECORD:
            raise ValueError(f"--record: unknown output {name!r} (accepted: {', '.join(EXTRA_RECORD)})")
        prefixes += EXTRA_RECORD[name]
    return tuple(prefixes)


def indexed_topics(bag: Path) -> tuple[Optional[set[str]], str]:
    """The topics in the bag's index and "", or None and why it has none (e.g. an MCAP cut short: its messages up to
    the damage are still read, in written order, by ``read_messages(bag, None)``)."""
    try:
        return set(bag_topics(bag)), ""
    except BagError as exc:
        return None, str(exc)


@dataclass
class KeyFrames:
    """The cloud stamps to infer on (None: every cloud), where they came from, and (with a dataroot) the sample
    token of each key-frame stamp and the sample tokens of each scene."""

    stamps: Optional[set[int]]
    source: str
    tokens: dict[int, str] = field(default_factory=dict)
    scene_samples: dict[str, list[str]] = field(default_factory=dict)


def key_frames(args: argparse.Namespace) -> KeyFrames:
    """Key frames from the dataset tables, else the bags' ground truth stamps, else every cloud."""
    if args.dataroot is not None:
        tables = NuScenesTables(args.dataroot, args.version)
        scenes = list(tables.iter_scenes())
        stamps = {t_us * 1000: token for scene in scenes for t_us, token in tables.keyframe_tokens(scene).items()}
        return KeyFrames(None if args.every_sweep else set(stamps), f"the tables of {args.dataroot / args.version}",
                         stamps, {scene["name"]: tables.sample_tokens(scene) for scene in scenes})
    if args.every_sweep:
        return KeyFrames(None, "--every-sweep")
    stamps: set[int] = set()
    for bag in args.bags:
        present, _ = indexed_topics(bag)
        try:
            if present is None or args.gt_topic in present:
                topics = None if present is None else [args.gt_topic]
                stamps |= {stamp for topic, stamp, _ in read_messages(bag, topics) if topic == args.gt_topic}
        except BagError as exc:  # the key frames read before the damage still count
            print(f"{bag}: {exc}", file=sys.stderr)
    if stamps:
        return KeyFrames(stamps, f"stamps of {args.gt_topic}")
    return KeyFrames(None, f"every cloud (no --dataroot and no {args.gt_topic} in the bags)")


@dataclass(frozen=True)
class BagRun:
    """One bag's run: frames processed, why processing stopped for good ("" = it did not), and why the bag ended
    early ("" = it did not)."""

    frames: int
    fatal: str
    problem: str


def run_bag(node: OfflineAqrNode, bag: Path, frames: Optional[set[int]]) -> BagRun:
    """Process one bag with the configured offline node."""
    runner = OfflineRunner(node, frames)
    wanted = runner.input_topics()
    present, damage = indexed_topics(bag)
    if present is None:
        print(f"{bag}: {damage}; reading the messages before the damage", file=sys.stderr)
    if present is not None and node.topics.cloud not in present:
        return BagRun(0, "", f"no cloud topic {node.topics.cloud} in the bag (topics: {', '.join(sorted(present))})")
    for topic in (t for t in wanted if present is not None and t not in present and t != "/tf"):
        print(f"{bag}: no topic {topic} in the bag: that input stays empty (a missing camera is masked)",
              file=sys.stderr)
    progress = ProgressLine(bag.name, "frames")
    problem = ""
    try:
        for topic, stamp_ns, msg in read_messages(bag, None if present is None else [t for t in wanted
                                                                                        if t in present]):
            if topic not in wanted:
                continue
            runner.feed(topic, stamp_ns, msg)
            progress.update(runner.processed)
            if runner.fatal:
                break
    except BagError as exc:
        problem = f"{exc}; results cover the frames read before it"
    runner.finish()
    progress.update(runner.processed, final=True)
    return BagRun(runner.processed, runner.fatal, problem)


@dataclass(frozen=True)
class Results:
    """Boxes per sample token, and what is missing: processed frames that are no key frame (or had no global
    pose), and the key frames of the scenes run that no frame covered (given no boxes)."""

    per_sample: dict[str, list[dict]]
    frames_without_sample: int
    samples_without_frame: int


def results_for(frames: Iterable[DetectedFrame], keys: KeyFrames) -> Results:
    """nuScenes results of every sample of each scene a processed frame belongs to."""
    from aqr_ros.tools.nuscenes_results import detection_results

    per_sample: dict[str, list[dict]] = {}
    unmatched = 0
    for frame in frames:
        token = keys.tokens.get(frame.stamp_ns)
        if token is None or frame.T_fixed_lidar is None:
            unmatched += 1
            continue
        det = frame.detections
        per_sample[token] = detection_results(det.boxes, det.names, det.scores, frame.T_fixed_lidar)
    covered = [samples for samples in keys.scene_samples.values() if any(t in per_sample for t in samples)]
    empty = {token: [] for samples in covered for token in samples if token not in per_sample}
    return Results({**per_sample, **empty}, unmatched, len(empty))


#: Timings that measure the recording's clock offline, not the processing: left out of the summary.
RECORDING_CLOCK_TIMINGS = ("wait", "latency")


def stage_summary(stage_ms: dict[str, list[float]]) -> dict[str, float]:
    """Mean time (ms) per stage over the processed frames."""
    return {stage: float(np.mean(times)) for stage, times in stage_ms.items()
            if times and stage not in RECORDING_CLOCK_TIMINGS}


@dataclass
class Outcome:
    """What the runs produced: frames processed, the time they took, problems met, per-stage means and the frames."""

    frames: int
    seconds: float
    problems: list[str]
    stage_ms: dict[str, float]
    detected: list[DetectedFrame]


def process_bags(args: argparse.Namespace, frames: Optional[set[int]], prefixes: tuple[str, ...],
                 writer: BagWriter) -> Outcome:
    """Configure one offline node for all bags and run them in order; a fatal error ends the run."""
    context = rclpy.Context()
    rclpy.init(args=["aqr_run_bag", *node_ros_arguments(args)], context=context)
    node = OfflineAqrNode(writer.write, lambda topic: topic.startswith(prefixes), context=context)
    try:
        configure_offline(node)
        started = time.perf_counter()
        total, problems = 0, []
        for bag in args.bags:
            result = run_bag(node, bag, frames)
            total += result.frames
            for what in filter(None, (result.problem, result.fatal and f"processing stopped: {result.fatal}")):
                problems.append(f"{bag}: {what}")
                print(f"aqr_run_bag: {bag}: {what}", file=sys.stderr)
            if result.fatal:
                break
        return Outcome(total, time.perf_counter() - started, problems, stage_summary(node.stage_ms), node.detected)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(remove_ros_args(["aqr_run_bag", *argv])[1:])
    try:
        prefixes = recorded(args.record)
    except ValueError as exc:
        parser.error(str(exc))
    for bag in args.bags:
        if not bag.exists():
            parser.error(f"no such bag {str(bag)!r}")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    try:
        keys = key_frames(args)
        with BagWriter(out / "detections", storage=args.storage) as writer:
            print(f"key frames: {keys.source}", file=sys.stderr)
            outcome = process_bags(args, keys.stamps, prefixes, writer)
    except (OSError, ValueError, BagError, NuScenesError) as exc:
        print(f"aqr_run_bag: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:  # configure failed: the reason names the parameter
        print(f"aqr_run_bag: FATAL: {exc}", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "bags": [str(b.resolve()) for b in args.bags], "key_frames": keys.source, "frames": outcome.frames,
        "seconds": outcome.seconds, "frames_per_s": outcome.frames / max(outcome.seconds, 1e-9),
        "stage_ms": outcome.stage_ms, "problems": outcome.problems, "output_bag": str(out / "detections")}
    if args.dataroot is not None:
        from aqr_ros.tools.nuscenes_results import results_document

        results = results_for(outcome.detected, keys)
        path = out / "results_nusc.json"
        path.write_text(json.dumps(results_document(results.per_sample, {"use_camera": True, "use_lidar": True})))
        summary.update(results=str(path), samples=len(results.per_sample),
                       frames_without_sample=results.frames_without_sample,
                       samples_without_frame=results.samples_without_frame)
        if results.samples_without_frame:
            print(f"aqr_run_bag: {results.samples_without_frame} key frames of the scenes run were not processed "
                  "(truncated bag?): they have no boxes in the results", file=sys.stderr)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"{outcome.frames} frames in {outcome.seconds:.1f} s ({summary['frames_per_s']:.2f} frames/s); per stage "
          "(ms): " + ", ".join(f"{k} {v:.1f}" for k, v in outcome.stage_ms.items()))
    print(f"output bag: {out / 'detections'}")
    if "results" in summary:
        print(f"results: {summary['results']} ({summary['samples']} samples)")
    return 0 if outcome.frames and not outcome.problems else 1


if __name__ == "__main__":
    sys.exit(main())
