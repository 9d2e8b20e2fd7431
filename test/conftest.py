"""Shared pytest set-up: loopback-only ROS settings, imports from the source tree, child processes.

Every ROS participant a test creates stays on loopback in a test domain and uses the large-message
Fast DDS profile from config/. Tests marked ``ros`` need rclpy and the test interfaces built by
scripts/setup.sh; ``gpu`` tests need CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOUBLES_DIR = REPO_ROOT / "test" / "doubles"
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_large_data.xml"
TEST_ROS_DOMAIN_ID = "42"

# The source tree wins over any installed copy of aqr_ros (colcon test runs from the build space).
if str(REPO_ROOT) in sys.path:
    sys.path.remove(str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT))
# Test doubles (e.g. tf2_ros) go last, so a real ROS 2 install's packages take precedence.
if str(DOUBLES_DIR) not in sys.path:
    sys.path.append(str(DOUBLES_DIR))

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", TEST_ROS_DOMAIN_ID)
os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_PROFILE))
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

ROS_MODULES = (
    "rclpy", "sensor_msgs.msg", "vision_msgs.msg", "tf2_msgs.msg", "rosbags.typesys",
)


def _missing_ros_module() -> str | None:
    """Name the first ROS module that cannot be imported here, or None when all can."""
    for name in ROS_MODULES:
        try:
            if importlib.util.find_spec(name) is None:
                return name
        except ModuleNotFoundError:
            return name
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``ros`` tests without a ROS environment and ``gpu`` tests without CUDA, saying why.

    With AQR_REQUIRE_ROS=1 (set by scripts/test.sh) ``ros`` tests are never skipped, so a broken
    setup fails loudly instead of passing as skipped.
    """
    if os.environ.get("AQR_REQUIRE_ROS") != "1" and any("ros" in item.keywords for item in items):
        missing = _missing_ros_module()
        if missing is not None:
            skip = pytest.mark.skip(
                reason=f"needs a ROS 2 environment ({missing} not importable): "
                "run scripts/setup.sh and source scripts/env.sh"
            )
            for item in items:
                if "ros" in item.keywords:
                    item.add_marker(skip)
    if any("gpu" in item.keywords for item in items):
        import torch

        if not torch.cuda.is_available():
            skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
            for item in items:
                if "gpu" in item.keywords:
                    item.add_marker(skip)


@pytest.fixture
def ros_env() -> dict[str, str]:
    """Environment for child processes: this one's ROS settings plus the source tree and doubles."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *existing, str(DOUBLES_DIR)])
    return env


SpawnPython = Callable[..., subprocess.Popen]


@pytest.fixture
def spawn_python(ros_env: dict[str, str]) -> Iterator[SpawnPython]:
    """Start child Python processes (``spawn(args, env=None, **popen_kwargs)``); kill them after.

    Each child leads its own process group, and teardown kills that group by the child's PID with
    SIGKILL, because ROS subscribers can hang on SIGINT. Output defaults to one text pipe.
    """
    children: list[subprocess.Popen] = []

    def spawn(
        args: Sequence[str], env: Mapping[str, str] | None = None, **popen_kwargs: object
    ) -> subprocess.Popen:
        options: dict[str, object] = {
            "stdout": subprocess.PIPE,
            "stderr": subprocess.STDOUT,
            "text": True,
            "cwd": str(REPO_ROOT),
        }
        options.update(popen_kwargs)
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=dict(ros_env if env is None else env),
            start_new_session=True,
            **options,
        )
        children.append(proc)
        return proc

    yield spawn

    for proc in children:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
