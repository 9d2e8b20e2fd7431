"""The nuScenes devkit side of aqr_evaluate_nuscenes, run by the evaluation environment's Python (numpy < 2).

    <eval venv>/bin/python -I nuscenes_devkit_eval.py DATAROOT VERSION EVAL_SET RESULTS OUT

Imports only the standard library and nuscenes-devkit (never aqr_ros, whose environment has numpy 2). Checks the
results file against the split (every sample present, no other sample, known classes and attributes), then runs
the devkit's ``DetectionEval`` with ``detection_cvpr_2019`` and no plots, and writes the devkit's
``metrics_summary.json`` and ``metrics_details.json`` into OUT, plus the ground-truth boxes per class the
evaluation kept (``gt_boxes_per_class.json``). A problem with the inputs exits with status 2 and one line on
stderr saying what is wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

#: Exit status for inputs the evaluation refuses (the message is on stderr).
BAD_INPUT = 2


def _refuse(message: str) -> None:
    print(message, file=sys.stderr)
    sys.exit(BAD_INPUT)


def check_results(results_path: str, split_tokens: set[str], eval_set: str) -> None:
    """Refuse a results file that is not the devkit's format or does not cover exactly the split's samples."""
    from nuscenes.eval.detection.constants import ATTRIBUTE_NAMES, DETECTION_NAMES

    try:
        with open(results_path) as f:
            document = json.load(f)
    except (OSError, ValueError) as exc:
        _refuse(f"cannot read the results file {results_path}: {exc}")
    if not isinstance(document, dict) or not isinstance(document.get("results"), dict) or "meta" not in document:
        _refuse(f"results file {results_path} is not a nuScenes results document: expected an object with "
                "'meta' and 'results' (sample token -> list of boxes)")
    results = document["results"]
    missing = sorted(split_tokens - set(results))
    if missing:
        _refuse(f"results file {results_path} misses {len(missing)} of the {len(split_tokens)} samples of split "
                f"{eval_set} (first: {missing[0]}): list every sample of the split, with [] where nothing was "
                "detected")
    extra = sorted(set(results) - split_tokens)
    if extra:
        _refuse(f"results file {results_path} has {len(extra)} samples that are not in split {eval_set} (first: "
                f"{extra[0]}): evaluate the split the results were made for (--eval-set)")
    for token, boxes in results.items():
        for k, box in enumerate(boxes):
            name = box.get("detection_name")
            if name not in DETECTION_NAMES:
                _refuse(f"results file {results_path}: box {k} of sample {token} names an unknown class "
                        f"{name!r}; accepted: {', '.join(DETECTION_NAMES)}")
            attribute = box.get("attribute_name", "")
            if attribute and attribute not in ATTRIBUTE_NAMES:
                _refuse(f"results file {results_path}: box {k} of sample {token} has an unknown attribute "
                        f"{attribute!r}; accepted: '' or {', '.join(ATTRIBUTE_NAMES)}")


def main(argv: list[str]) -> int:
    """Check the inputs, run DetectionEval, write the metrics into OUT."""
    dataroot, version, eval_set, results_path, out = argv
    from nuscenes import NuScenes
    from nuscenes.eval.detection.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval
    from nuscenes.utils.splits import create_splits_scenes

    splits = create_splits_scenes()
    if eval_set not in splits:
        _refuse(f"unknown eval set {eval_set!r}: the devkit's splits are {', '.join(sorted(splits))}")
    if not os.path.isdir(os.path.join(dataroot, version)):
        _refuse(f"no nuScenes tables in {os.path.join(dataroot, version)} (dataroot {dataroot}, version {version})")
    with contextlib.redirect_stdout(sys.stderr):
        nusc = NuScenes(version=version, dataroot=dataroot, verbose=False)
    scenes = set(splits[eval_set])
    split_tokens = {s["token"] for s in nusc.sample if nusc.get("scene", s["scene_token"])["name"] in scenes}
    if not split_tokens:
        _refuse(f"{dataroot} ({version}) has no scene of split {eval_set} ({', '.join(sorted(scenes)[:4])}, ...)")
    check_results(results_path, split_tokens, eval_set)
    os.makedirs(out, exist_ok=True)
    with contextlib.redirect_stdout(sys.stderr):
        evaluation = DetectionEval(nusc, config_factory("detection_cvpr_2019"), results_path, eval_set, out,
                                   verbose=False)
        metrics, metric_data = evaluation.evaluate()
    summary = metrics.serialize()
    summary["meta"] = evaluation.meta.copy()
    with open(os.path.join(out, "metrics_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    with open(os.path.join(out, "metrics_details.json"), "w") as f:
        json.dump(metric_data.serialize(), f, indent=2)
    counts = {name: 0 for name in evaluation.cfg.class_names}
    for box in evaluation.gt_boxes.all:
        counts[box.detection_name] += 1
    with open(os.path.join(out, "gt_boxes_per_class.json"), "w") as f:
        json.dump(counts, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
