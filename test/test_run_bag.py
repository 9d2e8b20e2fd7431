"""aqr_run_bag end to end on the synthetic rig's nuScenes export: bags -> the node's pipeline offline -> a results
file the real nuScenes devkit scores; the live node over DDS gives the same boxes; damaged input is survived."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from vision_msgs.msg import Detection3DArray

from aqr_ros.ros.to_msg import nanoseconds_from_stamp
from aqr_ros.tools.bag_io import BagWriter, read_messages
from aqr_ros.tools.evaluate_nuscenes import evaluate
from aqr_ros.tools.nuscenes_tables import NuScenesTables
from aqr_ros.tools.nuscenes_to_bag import convert_scene
from aqr_ros.tools.run_bag import build_parser, node_ros_arguments
from bag_player import BagPlayer, collect
from conftest import ros_domain

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "weights" / "aqr_cmt_rig_small.safetensors"
#: The rig's clouds are REP-103 (x forward), unlike nuScenes' LIDAR_TOP; cameras wait for completeness only.
RIG_ARGS = ["-p", "input.lidar_axes:=rep103", "-p", "sync.wait_timeout:=1.0", "--device", "cpu"]
DETECTIONS = "/aqr_node/output/detections"


def run_bag(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_DOMAIN_ID=str(ros_domain(__name__)))
    return subprocess.run([sys.executable, "-m", "aqr_ros.tools.run_bag", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def detections_by_stamp(bag: Path) -> dict[int, Detection3DArray]:
    return {nanoseconds_from_stamp(msg.header.stamp): msg for _, _, msg in read_messages(bag, [DETECTIONS])}


def box_rows(msg: Detection3DArray) -> np.ndarray:
    """One row per detection: centre, orientation, size, score."""
    return np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.position.z,
                      d.bbox.center.orientation.x, d.bbox.center.orientation.y, d.bbox.center.orientation.z,
                      d.bbox.center.orientation.w, d.bbox.size.x, d.bbox.size.y, d.bbox.size.z,
                      d.results[0].hypothesis.score] for d in msg.detections]).reshape(-1, 11)


@pytest.fixture(scope="module")
def scene_bags(rig_nuscenes_bag: Any, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Both exported scenes as bags (the mini_val split needs both): the session's first, the second made here."""
    export = rig_nuscenes_bag.export
    second = tmp_path_factory.mktemp("second_scene") / export.scenes[1]
    report = convert_scene(NuScenesTables(export.dataroot, export.version), export.scenes[1], second, progress=False)
    assert not report.error and not report.missing
    return [rig_nuscenes_bag.bag, second]


@pytest.fixture(scope="module")
def trained_run(scene_bags: list[Path], rig_nuscenes: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run_trained")
    proc = run_bag([*map(str, scene_bags), "--out", str(out), "--dataroot", str(rig_nuscenes.dataroot),
                    "--checkpoint", str(CHECKPOINT), *RIG_ARGS])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_every_key_frame_is_processed_and_written(trained_run: Path, rig_nuscenes: Any) -> None:
    summary = json.loads((trained_run / "summary.json").read_text())
    tokens = [t for scene in rig_nuscenes.scenes for t in rig_nuscenes.sample_tokens[scene]]
    assert summary["frames"] == len(tokens) and summary["samples"] == len(tokens) and summary["problems"] == []
    assert summary["frames_per_s"] > 0 and summary["stage_ms"]["model"] > 0 and "latency" not in summary["stage_ms"]
    results = json.loads((trained_run / "results_nusc.json").read_text())
    assert set(results["results"]) == set(tokens) and results["meta"]["use_lidar"]
    tables = NuScenesTables(rig_nuscenes.dataroot, rig_nuscenes.version)
    key_stamps = {sample["timestamp"] * 1000 for scene in rig_nuscenes.scenes
                  for sample in tables.samples(tables.scene(scene))}
    written = detections_by_stamp(trained_run / "detections")
    assert set(written) == key_stamps
    assert all(msg.header.frame_id == "lidar_top" for msg in written.values())


def test_devkit_scores_the_rig_model_well_above_random_weights(trained_run: Path, scene_bags: list[Path],
                                                                rig_nuscenes: Any, devkit_python: Path,
                                                                tmp_path: Path) -> None:
    trained = evaluate(rig_nuscenes.dataroot, rig_nuscenes.version, "mini_val", trained_run / "results_nusc.json",
                       tmp_path / "trained", devkit_python)
    random_out = tmp_path / "random"
    proc = run_bag([*map(str, scene_bags), "--out", str(random_out), "--dataroot", str(rig_nuscenes.dataroot),
                    "--config", "aqr_cmt_rig_small", "--random-weights", *RIG_ARGS])
    assert proc.returncode == 0, proc.stderr[-3000:]
    random = evaluate(rig_nuscenes.dataroot, rig_nuscenes.version, "mini_val", random_out / "results_nusc.json",
                      tmp_path / "random_eval", devkit_python)
    print(f"rig model: mAP {trained['mean_ap']:.4f} NDS {trained['nd_score']:.4f}; "
          f"random weights: mAP {random['mean_ap']:.4f} NDS {random['nd_score']:.4f}")
    assert trained["mean_ap"] > 0.1  # boxes land on the objects: a wrong axis, yaw or size convention gives ~0
    assert random["mean_ap"] < 0.02


def test_live_node_over_dds_publishes_what_run_bag_writes(rig_nuscenes_bag: Any, tmp_path: Path) -> None:
    """One code path: the node fed the bag over DDS gives, for every frame it processed, run_bag's boxes."""
    bag = rig_nuscenes_bag.bag
    common = [str(bag), "--out", str(tmp_path / "offline"), "--checkpoint", str(CHECKPOINT), "--every-sweep",
              "-p", "model.threads:=1", *RIG_ARGS]
    proc = run_bag(common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    offline = detections_by_stamp(tmp_path / "offline" / "detections")

    domain = ros_domain(__name__)
    live_args = node_ros_arguments(build_parser().parse_args(common))
    live_args += ["-p", "autostart:=true", "-p", "qos.input_reliability:=reliable", "-p", "qos.input_depth:=50"]
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain))
    node_proc = subprocess.Popen([sys.executable, "-m", "aqr_ros.ros.node", *live_args], env=env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    player_node = rclpy.create_node("bag_player", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(player_node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    received: list[Detection3DArray] = []
    try:
        collect(player_node, DETECTIONS, Detection3DArray, received)
        spinner.start()
        player = BagPlayer(player_node, bag, [*(t for t in _bag_inputs(bag))])
        player.wait_for_subscribers([t for t in player.topics if t not in ("/tf", "/tf_static")], timeout_s=120)
        player.play(rate=0.25, lead_s=0.5)
        deadline = time.monotonic() + 30
        last = max(offline)
        while time.monotonic() < deadline and not any(nanoseconds_from_stamp(m.header.stamp) == last
                                                      for m in received):
            time.sleep(0.2)
    finally:
        node_proc.terminate()
        log, _ = node_proc.communicate(timeout=30)
        executor.shutdown()
        player_node.destroy_node()
        rclpy.shutdown(context=context)
    live = {nanoseconds_from_stamp(m.header.stamp): m for m in received}
    both = sorted(set(live) & set(offline))
    assert len(both) >= 3, f"live processed {sorted(live)}, offline {sorted(offline)}\n{log[-3000:]}"
    for stamp in both:
        a, b = box_rows(live[stamp]), box_rows(offline[stamp])
        assert a.shape == b.shape and len(a) > 0, stamp
        np.testing.assert_allclose(a, b, atol=1e-4, err_msg=f"frame {stamp}")


def _bag_inputs(bag: Path) -> list[str]:
    from aqr_ros.tools.bag_io import bag_topics

    return [t for t in bag_topics(bag) if not t.startswith("/gt")]


def copy_without(bag: Path, out: Path, drop: set[str]) -> None:
    """A copy of ``bag`` without the topics in ``drop``."""
    with BagWriter(out) as writer:
        for topic, stamp, msg in read_messages(bag):
            if topic not in drop:
                writer.write(topic, msg, stamp)


def test_a_missing_camera_is_named_and_masked(rig_nuscenes_bag: Any, tmp_path: Path) -> None:
    damaged = tmp_path / "no_cam_back"
    copy_without(rig_nuscenes_bag.bag, damaged, {"/cam_back/image_raw/compressed", "/cam_back/camera_info"})
    proc = run_bag([str(damaged), "--out", str(tmp_path / "out"), "--checkpoint", str(CHECKPOINT), *RIG_ARGS])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no topic /cam_back/image_raw/compressed in the bag" in proc.stderr
    assert len(detections_by_stamp(tmp_path / "out" / "detections")) == rig_nuscenes_bag.report.counts["/gt/detections"]


def test_a_truncated_bag_gives_partial_results_and_says_so(rig_nuscenes_bag: Any, rig_nuscenes: Any,
                                                           tmp_path: Path) -> None:
    damaged = tmp_path / "truncated"
    shutil.copytree(rig_nuscenes_bag.bag, damaged)
    data = next(damaged.glob("*.mcap"))
    data.write_bytes(data.read_bytes()[: data.stat().st_size * 2 // 3])
    proc = run_bag([str(damaged), "--out", str(tmp_path / "out"), "--checkpoint", str(CHECKPOINT),
                    "--dataroot", str(rig_nuscenes.dataroot), *RIG_ARGS])
    assert proc.returncode == 1
    assert "truncated or corrupt" in proc.stderr and str(damaged) in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["problems"] and 0 < summary["frames"] < 3
    assert summary["samples_without_frame"] == 3 - summary["frames"]


def test_a_dataroot_without_its_tables_is_named(rig_nuscenes_bag: Any, tmp_path: Path) -> None:
    proc = run_bag([str(rig_nuscenes_bag.bag), "--out", str(tmp_path / "out"), "--checkpoint", str(CHECKPOINT),
                    "--dataroot", str(tmp_path / "nowhere"), *RIG_ARGS], timeout=120)
    assert proc.returncode == 1 and "nowhere" in proc.stderr and "Traceback" not in proc.stderr
