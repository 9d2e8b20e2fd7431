"""Session fixtures for the nuScenes tests: a small synthetic-rig dataset in the nuScenes format, exported once,
and the nuScenes devkit's environment (its own venv, made by scripts/setup.sh) to check it with."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from aqr_ros.tools.evaluate_nuscenes import EvaluationError, check_environment, eval_python
from aqr_ros.tools.nuscenes_export import RigExport, export_rig_nuscenes

#: Length of each exported scene: three key frames (0, 0.5, 1.0 s) and every sweep and image between them.
RIG_NUSCENES_SECONDS = 1.5


@pytest.fixture(scope="session")
def rig_nuscenes(tmp_path_factory: pytest.TempPathFactory) -> RigExport:
    """The mini_val scenes (scene-0103, scene-0916) of the synthetic rig, random streets of seeds 0 and 1,
    exported once per session into a temporary dataroot (version v1.0-mini)."""
    dataroot = tmp_path_factory.mktemp("rig_nuscenes")
    return export_rig_nuscenes(dataroot, "v1.0-mini", ("scene-0103", "scene-0916"), RIG_NUSCENES_SECONDS, seed=0)


@pytest.fixture(scope="session")
def devkit_python() -> Path:
    """Python of the nuScenes devkit environment. Skipped where scripts/setup.sh has not made it, except under
    AQR_REQUIRE_ROS=1 (scripts/test.sh, CI), where a missing environment fails."""
    python = eval_python()
    try:
        check_environment(python)
    except EvaluationError as exc:
        if os.environ.get("AQR_REQUIRE_ROS") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return python


def run_devkit(python: Path, script: str, *args: str) -> object:
    """Run ``script`` with the devkit's Python (``sys.argv[1:]`` = ``args``) and parse the JSON it prints last."""
    run = subprocess.run([str(python), "-I", "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"devkit script failed:\n{run.stderr[-3000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])
