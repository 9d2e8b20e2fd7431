"""aqr_evaluate_nuscenes: scores a nuScenes detection results file with the official nuScenes devkit.

    python -m aqr_ros.tools.evaluate_nuscenes --dataroot D --version v1.0-mini --eval-set mini_val \\
        --results results_nusc.json --out eval/

The devkit (nuscenes-devkit 1.2.0) requires numpy < 2 while aqr_ros runs on numpy 2, so it lives in its own
virtual environment, made by scripts/setup.sh (``$AQR_EVAL_VENV``, default ``<venv>/eval``), and runs there as a
subprocess (:mod:`aqr_ros.tools.nuscenes_devkit_eval`): its ``DetectionEval`` with the ``detection_cvpr_2019``
configuration, no plots. Prints mAP, NDS, the true-positive error table and the per-class table, and writes the
devkit's metrics JSON files into ``--out``. mAP is the devkit's mean over its ten classes; a class without ground
truth in the split scores AP 0, so the line after it also averages over the classes with ground truth.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from aqr_ros.tools.cli import make_parser

#: The command that creates the evaluation environment.
SETUP_COMMAND = "scripts/setup.sh"
_WORKER = Path(__file__).with_name("nuscenes_devkit_eval.py")
#: TP error metrics of the devkit, their summary names and units.
TP_ERRORS = (("trans_err", "mATE", "m"), ("scale_err", "mASE", "1-IoU"), ("orient_err", "mAOE", "rad"),
             ("vel_err", "mAVE", "m/s"), ("attr_err", "mAAE", "1-acc"))


class EvaluationError(RuntimeError):
    """The evaluation could not run: its message says why and, where it helps, what to do."""


def eval_python() -> Path:
    """Python of the evaluation environment: ``$AQR_EVAL_VENV/bin/python``, else ``<this venv>/eval/bin/python``."""
    venv = os.environ.get("AQR_EVAL_VENV") or str(Path(sys.prefix) / "eval")
    return Path(venv) / "bin" / "python"


def _missing_environment(python: Path) -> str:
    return (f"no nuScenes devkit environment: {python} does not exist; create it with `{SETUP_COMMAND}` (or point "
            "AQR_EVAL_VENV at one)")


def _broken_environment(python: Path, detail: str) -> str:
    return (f"the devkit environment {python} cannot import nuscenes.eval.detection ({detail}); recreate it with "
            f"`{SETUP_COMMAND}`")


def check_environment(python: Path) -> None:
    """Raise :class:`EvaluationError` unless ``python`` exists and imports the devkit's detection evaluation."""
    if not python.is_file():
        raise EvaluationError(_missing_environment(python))
    probe = subprocess.run([str(python), "-I", "-c", "import nuscenes.eval.detection.evaluate"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        raise EvaluationError(_broken_environment(python, (probe.stderr.strip().splitlines() or ["?"])[-1]))


def evaluate(dataroot: Path, version: str, eval_set: str, results: Path, out: Path,
             python: Path | None = None) -> dict:
    """Run the devkit's DetectionEval on ``results``; return its metrics summary (also in ``out``) with the kept
    ground-truth boxes per class under ``gt_boxes_per_class``."""
    python = python or eval_python()
    if not python.is_file():
        raise EvaluationError(_missing_environment(python))
    if not Path(results).is_file():
        raise EvaluationError(f"no results file {results}")
    out.mkdir(parents=True, exist_ok=True)
    run = subprocess.run([str(python), "-I", str(_WORKER), str(dataroot), version, eval_set, str(results),
                          str(out)], capture_output=True, text=True)
    if run.returncode != 0:
        lines = run.stderr.strip().splitlines() or ["no output"]
        if any("No module named" in line for line in lines):
            raise EvaluationError(_broken_environment(python, lines[-1]))
        detail = lines[-1] if run.returncode == 2 else "\n".join(lines[-15:])
        raise EvaluationError(detail if run.returncode == 2 else f"the devkit evaluation failed:\n{detail}")
    summary = json.loads((out / "metrics_summary.json").read_text())
    summary["gt_boxes_per_class"] = json.loads((out / "gt_boxes_per_class.json").read_text())
    return summary


def _number(value: float | None) -> str:
    return "  nan" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def format_metrics(summary: dict) -> str:
    """mAP, NDS, the TP error table and the per-class table of a devkit metrics summary, as text."""
    counts = summary.get("gt_boxes_per_class", {})
    present = [name for name, n in counts.items() if n > 0]
    lines = [f"mAP: {summary['mean_ap']:.4f}", f"NDS: {summary['nd_score']:.4f}"]
    if present:
        mean = sum(summary["mean_dist_aps"][name] for name in present) / len(present)
        lines.append(f"mAP over the {len(present)} classes with ground truth: {mean:.4f}")
    lines += ["", "TP errors:"]
    lines += [f"  {label}  {_number(summary['tp_errors'][key])} {unit}" for key, label, unit in TP_ERRORS]
    header = f"{'class':<22}{'GT':>6}{'AP':>8}" + "".join(f"{label[1:]:>8}" for _, label, _ in TP_ERRORS)
    lines += ["", header]
    for name, ap in summary["mean_dist_aps"].items():
        errors = "".join(f"{_number(summary['label_tp_errors'][name][key]):>8}" for key, _, _ in TP_ERRORS)
        lines.append(f"{name:<22}{counts.get(name, 0):>6}{ap:>8.4f}{errors}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``aqr_evaluate_nuscenes --dataroot D --results R [--version V] [--eval-set S] [--out O]``."""
    parser = make_parser("aqr_evaluate_nuscenes", __doc__.splitlines()[0])
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes dataroot (holds <version>/)")
    parser.add_argument("--version", default="v1.0-mini", help="dataset version (table folder)")
    parser.add_argument("--eval-set", default="mini_val", help="devkit split to evaluate (mini_val, val, ...)")
    parser.add_argument("--results", type=Path, required=True, help="nuScenes detection results JSON")
    parser.add_argument("--out", type=Path, default=Path("nuscenes_eval"), help="folder for the metrics JSON")
    args = parser.parse_args(argv)
    try:
        summary = evaluate(args.dataroot, args.version, args.eval_set, args.results, args.out)
    except EvaluationError as exc:
        print(f"aqr_evaluate_nuscenes: {exc}", file=sys.stderr)
        return 1
    print(format_metrics(summary))
    print(f"\nmetrics: {args.out / 'metrics_summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
