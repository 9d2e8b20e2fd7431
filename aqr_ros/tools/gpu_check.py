"""GPU check (issue 8 §7): what a machine with CUDA, Python and PyTorch but no ROS says about the model.

    python -m aqr_ros.tools.gpu_check [--out DIR]                 # on the GPU machine (scripts/gpu_check.sh)
    python -m aqr_ros.tools.gpu_check --device cpu --quick ...    # the same path on a CPU, for its test

Steps, each in its own process with its own timeout, so a hang or a crash costs one step, not the report:

* ``tests``: the pytest tests marked ``gpu`` (CUDA against CPU, fp16, the training step on CUDA);
* ``bench_model``: the whole forward of ``--config`` at fp32 and fp16 with per-stage times and peak memory
  (:func:`aqr_ros.tools.bench.bench_model`);
* ``bench_aqr``: AQR alone and its local attention (:func:`aqr_ros.tools.bench.bench_aqr`);
* ``agreement``: the shipped rig model on a held-out rig frame at fp16 against fp32 (same queries and classes
  detected, centre, score and yaw differences, the same top detections), fp32 run twice, and the device
  against the CPU.

Writes ``gpu_check.json`` (after every step, so a killed run still leaves what it measured), a readable
``gpu_check.txt`` and one log per step into ``--out`` (default ``$OUT``, else ``out/gpu_check``). Only the
standard library is imported up front, so a missing package is reported by name instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aqr_ros.tools.cli import add_device_argument, make_parser

REPO = Path(__file__).resolve().parents[2]
RIG_CHECKPOINT = REPO / "models" / "weights" / "aqr_cmt_rig_small.safetensors"
STEPS = ("tests", "bench_model", "bench_aqr", "agreement")
#: Seconds per step; together they stay within the 6 minutes the check is given.
DEFAULT_TIMEOUTS = {"tests": 150, "bench_model": 90, "bench_aqr": 45, "agreement": 60}
#: Import name → the distribution that provides it (what to install where it is missing).
PACKAGES = {"torch": "torch", "numpy": "numpy", "cv2": "opencv-python-headless", "yaml": "PyYAML",
            "safetensors": "safetensors", "scipy": "scipy", "pytest": "pytest"}
#: Imports each step needs. scipy is needed by the training test only; without it that file fails to collect
#: and the others still run (reported as a collection error).
NEEDS = {"tests": ("pytest", "torch", "numpy", "cv2", "yaml"), "bench_model": ("torch", "numpy", "cv2", "yaml"),
         "bench_aqr": ("torch", "numpy", "cv2", "yaml"), "agreement": ("torch", "numpy", "cv2", "yaml", "safetensors")}
#: Held-out rig scene (never trained on) and its LiDAR frame for the agreement step.
AGREEMENT_SEED = 9000
AGREEMENT_FRAME = 8
#: Detections at or above this score are compared (the node's default ``score_threshold``).
SCORE_THRESHOLD = 0.3
TOP_K = 10


def environment() -> dict[str, Any]:
    """Python, the packages (version or None when missing) and, when torch imports, CUDA and the GPU."""
    packages = {}
    for module, dist in PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            packages[module] = None
            continue
        try:
            packages[module] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:  # e.g. opencv-python instead of -headless
            packages[module] = "installed"
    env: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
                           "missing": {m: PACKAGES[m] for m, v in packages.items() if v is None}}
    if packages["torch"] is not None:
        import torch

        env["torch"] = torch.__version__
        env["cuda_available"] = torch.cuda.is_available()
        env["cuda_version"] = torch.version.cuda
        env["cudnn_version"] = torch.backends.cudnn.version() if torch.cuda.is_available() else None
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["cpu_threads"] = torch.get_num_threads()
    return env


# ----------------------------------------------------------------------------------------------- agreement


def compare_detections(reference: Any, other: Any, score_threshold: float = SCORE_THRESHOLD,
                       top_k: int = TOP_K) -> dict[str, Any]:
    """How far ``other`` (:class:`~aqr_ros.model.detector.Detections` on the CPU) is from ``reference``.

    Detections are paired by (query, class): the same query predicting the same class is the same detection.
    Compared are the reference's detections scoring at least ``score_threshold``; ``missing`` counts those
    absent from ``other``'s list, ``threshold_flips`` the pairs on different sides of the threshold. Centres
    are geometric (bottom + dz / 2); yaw differences are wrapped to [0, pi]. The AQR weights of all queries
    are compared too.
    """
    import numpy as np

    def table(det: Any) -> dict[tuple[int, int], tuple[float, np.ndarray, float]]:
        boxes = det.boxes.numpy().astype(np.float64)
        centres = boxes[:, :3] + np.c_[np.zeros((len(boxes), 2)), boxes[:, 5] / 2]
        keys = zip(det.query_index.tolist(), det.labels.tolist())
        return {key: (float(s), c, float(y)) for key, s, c, y in zip(keys, det.scores.tolist(), centres, boxes[:, 6])}

    ref, oth = table(reference), table(other)
    kept = [k for k, (s, _, _) in ref.items() if s >= score_threshold]
    matched = [k for k in kept if k in oth]
    centre = np.array([np.linalg.norm(ref[k][1] - oth[k][1]) for k in matched])
    score = np.array([abs(ref[k][0] - oth[k][0]) for k in matched])
    yaw = np.array([abs(np.remainder(ref[k][2] - oth[k][2] + np.pi, 2 * np.pi) - np.pi) for k in matched])
    flips = sum((ref[k][0] >= score_threshold) != (oth[k][0] >= score_threshold) for k in set(ref) & set(oth))

    def top(det: Any) -> list[list[int]]:
        return [[int(q), int(c)] for q, c in zip(det.query_index[:top_k].tolist(), det.labels[:top_k].tolist())]

    def stats(values: np.ndarray) -> dict[str, float | None]:
        if not values.size:
            return {"max": None, "mean": None}
        return {"max": float(values.max()), "mean": float(values.mean())}

    ref_top, oth_top = top(reference), top(other)
    return {
        "score_threshold": score_threshold,
        "reference_detections": len(kept),
        "other_detections": sum(s >= score_threshold for s, _, _ in oth.values()),
        "matched": len(matched),
        "missing": len(kept) - len(matched),
        "threshold_flips": int(flips),
        "centre_diff_m": stats(centre),
        "score_diff": stats(score),
        "yaw_diff_rad": stats(yaw),
        "top_k": top_k,
        "top_k_same_set": sorted(map(tuple, ref_top)) == sorted(map(tuple, oth_top)),
        "top_k_same_order": ref_top == oth_top,
        "reference_top_k": ref_top,
        "lidar_weight_diff_max": float((reference.lidar_weights - other.lidar_weights).abs().max()),
        "camera_weight_diff_max": float((reference.camera_weights - other.camera_weights).abs().max()),
        "bev_map_diff_max": float((reference.bev_weight_map - other.bev_weight_map).abs().max()),
    }


def run_agreement(device: str, checkpoint: Path) -> dict[str, Any]:
    """The rig model on one held-out rig frame: fp32 twice, fp16 (CUDA only), and the CPU (for a GPU).

    The frame is rendered once per run (milliseconds), straight on the model's device.
    """
    from aqr_ros.model import AqrCmt
    from aqr_ros.tools.rig_inputs import rig_model_input
    from aqr_ros.tools.rig_scenes import random_scene
    from aqr_ros.tools.synthetic_rig import SyntheticRig

    def infer(model: AqrCmt, fp16: bool = False) -> Any:
        frame = rig_model_input(SyntheticRig(AGREEMENT_SEED, scene=random_scene(AGREEMENT_SEED)), model.config,
                                AGREEMENT_FRAME, device=model.device)
        return model.infer(frame.points, frame.images, frame.lidar2img, frame.camera_valid, fp16=fp16).to("cpu")

    model = AqrCmt.from_checkpoint(checkpoint, device=device)
    fp32 = infer(model)
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "config": model.config.name, "device": device,
                           "rig_seed": AGREEMENT_SEED, "rig_frame": AGREEMENT_FRAME,
                           "fp32_repeat": compare_detections(fp32, infer(model))}
    if model.device.type == "cuda":
        out["fp16_vs_fp32"] = {"run": True, **compare_detections(fp32, infer(model, fp16=True))}
        out["device_vs_cpu_fp32"] = compare_detections(infer(AqrCmt.from_checkpoint(checkpoint)), fp32)
    else:
        out["fp16_vs_fp32"] = {"run": False, "reason": f"fp16 runs under CUDA autocast only; not run on {device}"}
    return out


# ------------------------------------------------------------------------------------------------- steps


def run_step(name: str, options: argparse.Namespace) -> dict[str, Any]:
    """One step in this process → its JSON result (with this process's peak memory)."""
    import torch

    from aqr_ros.model import load_config
    from aqr_ros.tools import bench

    device = torch.device(options.device)
    if name == "bench_model":
        precisions = ["fp32", "fp16"] if device.type == "cuda" else ["fp32"]
        records = bench.bench_model(load_config(options.config), None, [device], precisions, options.iters,
                                    options.warmup)
        result: dict[str, Any] = {"config": options.config, "runs": records}
        if device.type != "cuda":
            result["fp16"] = f"not run: fp16 runs under CUDA autocast only, the device is {device}"
    elif name == "bench_aqr":
        cfg = load_config(options.config)
        queries = [cfg.head.num_query] if options.quick else [900, 1730]
        result = {"config": options.config,
                  "runs": bench.bench_aqr(cfg, [device], queries, options.iters, options.warmup)}
    elif name == "agreement":
        result = run_agreement(options.device, Path(options.rig_checkpoint))
    else:
        raise ValueError(f"unknown step {name!r}")
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if device.type == "cuda":
        result["peak_cuda_allocated_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["peak_cuda_reserved_mib"] = torch.cuda.max_memory_reserved(device) / 2**20
    return result


def gpu_test_files() -> list[str]:
    """Test files holding tests marked ``gpu`` (only these are collected: the others may need ROS)."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "test").glob("test_*.py")
                  if "@pytest.mark.gpu" in p.read_text())


def junit_summary(path: Path) -> dict[str, Any]:
    """Counts of a pytest JUnit XML report, and the name and message of every failure, error and skip."""
    root = ElementTree.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    outcomes: dict[str, list[dict[str, str]]] = {"failed_tests": [], "error_tests": [], "skipped_tests": []}
    for case in suite.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        for tag, kind in (("failure", "failed_tests"), ("error", "error_tests"), ("skipped", "skipped_tests")):
            element = case.find(tag)
            if element is not None:
                outcomes[kind].append({"test": name, "message": (element.get("message") or "")[:500]})
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {**counts, "passed": passed, **outcomes}


def step_command(name: str, options: argparse.Namespace, part: Path) -> list[str]:
    """The child process of one step."""
    if name == "tests":
        return [sys.executable, "-m", "pytest", "-m", "gpu", "-p", "no:cacheprovider", "-q", "-rfEs",
                "--continue-on-collection-errors", f"--junitxml={part}", *gpu_test_files()]
    args = [sys.executable, "-m", "aqr_ros.tools.gpu_check", "--step", name, "--part", str(part),
            "--device", options.device, "--config", options.config, "--rig-checkpoint", options.rig_checkpoint]
    return args + (["--quick"] if options.quick else [])


def child_env(options: argparse.Namespace) -> dict[str, str]:
    """The source tree on the path; no GPU visible when the check runs on the CPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]])
    env["PYTHONUNBUFFERED"] = "1"
    if options.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_child(name: str, options: argparse.Namespace, timeout: float, out: Path, work: Path) -> dict[str, Any]:
    """Run one step's process with its timeout; its status, wall time, log file and result."""
    part = work / f"{name}.{'xml' if name == 'tests' else 'json'}"
    log = out / "logs" / f"{name}.log"
    start = time.monotonic()
    status: dict[str, Any] = {"timeout_s": timeout, "log": str(log.relative_to(out))}
    with log.open("w") as stream:
        proc = subprocess.Popen(step_command(name, options, part), cwd=str(REPO), env=child_env(options),
                                stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc = None
    status["wall_s"] = round(time.monotonic() - start, 1)
    result = None
    if part.is_file():
        result = junit_summary(part) if name == "tests" else json.loads(part.read_text())
    status["status"] = "timeout" if rc is None else "ok" if rc == 0 and result is not None else "failed"
    status["returncode"] = rc
    if status["status"] != "ok":
        status["log_tail"] = log.read_text(errors="replace")[-3000:]
    return {"status": status, "result": result}


# ----------------------------------------------------------------------------------------------- summary


def _ms(value: float | None) -> str:
    """A time for the summary (n/a when it was not measured)."""
    return "n/a" if value is None else f"{value:.1f} ms"


def _num(value: float | None) -> str:
    """A difference for the summary, three significant digits (n/a when nothing was compared)."""
    return "n/a" if value is None else f"{value:.3g}"


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The report as readable text."""
    env = report["environment"]
    mode = ", quick" if report["quick"] else ""
    lines = [f"GPU check on {env.get('gpu') or 'CPU'} (device {report['device']}{mode}): "
             f"Python {env['python']}, torch {env.get('torch', 'missing')}, CUDA {env.get('cuda_version')}"]
    if env["missing"]:
        lines.append("missing packages: " + ", ".join(f"{m} (install {d})" for m, d in env["missing"].items()))
    for name in report["steps_run"]:
        status = report["steps"][name]
        head = f"[{status['status']}] {name}"
        if "wall_s" in status:
            head += f" ({status['wall_s']} s of {status['timeout_s']} s)"
        if status.get("reason"):
            head += f": {status['reason']}"
        lines.append(head)
        result = report.get(name)
        if not result:
            continue
        if name == "tests":
            lines.append(f"    {result['passed']} passed, {result['failures']} failed, {result['errors']} errors, "
                         f"{result['skipped']} skipped")
            for entry in result["failed_tests"] + result["error_tests"]:
                lines.append(f"    FAILED {entry['test']}: {entry['message'][:200]}")
            reasons = sorted({entry["message"] for entry in result["skipped_tests"]})
            lines += [f"    skipped: {reason}" for reason in reasons]
        elif name == "bench_model":
            for run in result["runs"]:
                lines.append(f"    {run['precision']} on {run['device']}: forward {_ms(run['forward_ms'])}, "
                             f"peak memory {run['peak_memory_mib']:.0f} MiB")
            if "fp16" in result:
                lines.append(f"    fp16 {result['fp16']}")
        elif name == "bench_aqr":
            for run in result["runs"]:
                lines.append(f"    {run['queries']} queries: AQR {_ms(run['aqr_total_ms'])}, renderer "
                             f"{_ms(run['renderer_ms'])}, local attention gathered {_ms(run['gathered_attention_ms'])}"
                             f" vs dense {_ms(run['dense_attention_ms'])}")
        elif name == "agreement":
            for key in ("fp32_repeat", "fp16_vs_fp32", "device_vs_cpu_fp32"):
                figures = result.get(key)
                if figures is None:
                    continue
                if figures.get("run") is False:
                    lines.append(f"    {key}: {figures['reason']}")
                    continue
                lines.append(
                    f"    {key}: {figures['matched']}/{figures['reference_detections']} detections >= "
                    f"{figures['score_threshold']} matched ({figures['missing']} missing, {figures['threshold_flips']}"
                    f" across the threshold); centre diff max {_num(figures['centre_diff_m']['max'])} m, score diff "
                    f"max {_num(figures['score_diff']['max'])}; top {figures['top_k']} same set "
                    f"{figures['top_k_same_set']}, same order {figures['top_k_same_order']}")
    peak = report["peak_memory"]
    if peak["cuda_allocated_mib"] is not None:
        lines.append(f"peak GPU memory: {peak['cuda_allocated_mib']:.0f} MiB allocated, "
                     f"{peak['cuda_reserved_mib']:.0f} MiB reserved (largest step: {peak['step']})")
    else:
        lines.append(f"peak GPU memory: {peak['note']}")
    lines.append("result: " + ("OK" if report["ok"] else "FAILED"))
    return lines


def peak_memory(report: dict[str, Any]) -> dict[str, Any]:
    """The largest CUDA peak of any step (each step is its own process), or why there is none."""
    best: dict[str, Any] = {"cuda_allocated_mib": None, "cuda_reserved_mib": None, "step": None}
    for name in report["steps_run"]:
        result = report.get(name) or {}
        allocated = result.get("peak_cuda_allocated_mib")
        if allocated is not None and (best["cuda_allocated_mib"] is None or allocated > best["cuda_allocated_mib"]):
            best = {"cuda_allocated_mib": allocated, "cuda_reserved_mib": result["peak_cuda_reserved_mib"],
                    "step": name}
    if best["cuda_allocated_mib"] is None:
        best["note"] = f"none measured (device {report['device']})"
    return best


def write_report(report: dict[str, Any], out: Path) -> None:
    """gpu_check.json and gpu_check.txt, rewritten whole (atomically) after every step."""
    report["peak_memory"] = peak_memory(report)
    report["ok"] = all(report["steps"][n]["status"] == "ok" for n in report["steps_run"])
    for name, text in (("gpu_check.json", json.dumps(report, indent=2)),
                       ("gpu_check.txt", "\n".join(summary_lines(report)) + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(out / name)


def parse_timeouts(text: str) -> dict[str, float]:
    """``tests=150,bench_model=90`` → per-step seconds over :data:`DEFAULT_TIMEOUTS`."""
    timeouts = dict(DEFAULT_TIMEOUTS)
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, _, value = item.partition("=")
        if name not in STEPS or not value:
            raise argparse.ArgumentTypeError(f"bad timeout {item!r}: expected STEP=SECONDS with STEP in {STEPS}")
        timeouts[name] = float(value)
    return timeouts


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = make_parser("gpu_check", __doc__.splitlines()[0])
    # Availability is not checked here: a machine without CUDA still gets a report that says so.
    add_device_argument(parser, default="cuda", check_available=False, help="the device the steps measure")
    parser.add_argument("--quick", action="store_true",
                        help="one timed iteration, no warm-up, AQR at the config's own query count")
    parser.add_argument("--out", default=os.environ.get("OUT") or "out/gpu_check",
                        help="output folder ($OUT when set, else out/gpu_check)")
    parser.add_argument("--config", default="cmt_aqr_voxel0100_r50_800x320",
                        help="model config of the benchmarks (name or YAML path)")
    parser.add_argument("--rig-checkpoint", default=str(RIG_CHECKPOINT), help="checkpoint of the agreement step")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--timeouts", type=parse_timeouts,
                        default=",".join(f"{name}={seconds}" for name, seconds in DEFAULT_TIMEOUTS.items()),
                        help="per-step seconds, STEP=SECONDS, comma-separated")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--part", help=argparse.SUPPRESS)
    options = parser.parse_args(argv)
    options.iters, options.warmup = (1, 0) if options.quick else (5, 2)
    unknown = [s for s in options.steps.split(",") if s not in STEPS]
    if unknown:
        parser.error(f"unknown steps {unknown}: expected some of {STEPS}")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    """Run the steps and write the report; exit 0 when every step ran and passed, 1 otherwise."""
    options = parse_args(argv)
    if options.step:
        Path(options.part).write_text(json.dumps(run_step(options.step, options)))
        return 0
    out = Path(options.out).resolve()
    (out / "logs").mkdir(parents=True, exist_ok=True)
    env = environment()
    steps = [s for s in STEPS if s in options.steps.split(",")]
    report: dict[str, Any] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv,
                              "device": options.device, "quick": options.quick, "config": options.config,
                              "environment": env, "steps_run": steps,
                              "steps": {name: {"status": "pending"} for name in steps}}
    if options.device.startswith("cuda") and not env.get("cuda_available"):
        report["error"] = "CUDA is not available to torch here: run with --device cpu, or fix the CUDA setup"
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as work:
        for name in steps:
            missing = [m for m in NEEDS[name] if env["packages"][m] is None]
            if missing or "error" in report:
                reason = report.get("error") or "missing " + ", ".join(f"{m} ({PACKAGES[m]})" for m in missing)
                report["steps"][name] = {"status": "skipped", "reason": reason}
            else:
                print(f"gpu_check: {name} (timeout {options.timeouts[name]:.0f} s) ...", flush=True)
                done = run_child(name, options, options.timeouts[name], out, Path(work))
                report["steps"][name], report[name] = done["status"], done["result"]
            write_report(report, out)
    print("\n".join(summary_lines(report)))
    print(f"gpu_check: wrote {out / 'gpu_check.json'} and {out / 'gpu_check.txt'}")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
