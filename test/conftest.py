"""Shared pytest set-up: loopback-only ROS settings, imports from the source tree, child processes.

Every ROS participant a test creates stays on loopback in a test domain and uses the large-message
Fast DDS profile from config/. The run's domains start at a base (``AQR_TEST_DOMAIN_BASE``, else
``ROS_DOMAIN_ID``, else 42): the base is the run's ROS_DOMAIN_ID, and ``ros_domain`` hands each module
(or test) that starts nodes its own id after it, so two runs with bases far enough apart never meet. Tests
marked ``ros`` need rclpy and the test interfaces built by scripts/setup.sh; ``gpu`` tests need CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
DOUBLES_DIR = REPO_ROOT / "test" / "doubles"
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds_large_data.xml"
#: The small model config of the node and pipeline tests (ResNet-50 at 128x320, 100 queries, 2 layers).
TINY_CONFIG = REPO_ROOT / "test" / "configs" / "tiny.yaml"
TEST_ROS_DOMAIN_ID = "42"
pytest_plugins = ["nuscenes_fixtures", "nuscenes_bag_fixtures"]
#: Highest ROS domain id: DDS derives UDP ports from it, and higher ids overflow the port range.
MAX_DOMAIN_ID = 232

# The source tree wins over any installed copy of aqr_ros (colcon test runs from the build space).
if str(REPO_ROOT) in sys.path:
    sys.path.remove(str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT))
# Test doubles (e.g. tf2_ros) go last, so a real ROS 2 install's packages take precedence.
if str(DOUBLES_DIR) not in sys.path:
    sys.path.append(str(DOUBLES_DIR))

from aqr_ros.tools.processes import stop  # noqa: E402  (the source tree, once on the path above)


def domain_base(environ: Mapping[str, str]) -> int:
    """The run's base ROS domain: ``AQR_TEST_DOMAIN_BASE``, else ``ROS_DOMAIN_ID``, else 42 (empty counts as unset)."""
    for name in ("AQR_TEST_DOMAIN_BASE", "ROS_DOMAIN_ID"):
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        name, value = "default", TEST_ROS_DOMAIN_ID
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_DOMAIN_ID:
        raise ValueError(f"{name}={value!r} is not a ROS domain id: give an integer in 0..{MAX_DOMAIN_ID}")
    return int(value)


class DomainPool:
    """One test run's ROS domains: each new key gets the next id after ``base``, wrapping within 0..232.

    A key asked for again gets its id again; no two keys share one, and the base itself (the run's ROS_DOMAIN_ID,
    which child processes and plain ``rclpy.init()`` use) is never handed out.
    """

    def __init__(self, base: int) -> None:
        if not 0 <= base <= MAX_DOMAIN_ID:
            raise ValueError(f"domain base {base} is outside 0..{MAX_DOMAIN_ID}")
        self.base = base
        self._ids: dict[str, int] = {}

    def __call__(self, key: str) -> int:
        """The domain of ``key`` (e.g. a module's ``__name__``)."""
        if key not in self._ids:
            if len(self._ids) == MAX_DOMAIN_ID:
                raise RuntimeError(f"all {MAX_DOMAIN_ID} test domains besides the base {self.base} are taken; "
                                   f"cannot give {key!r} one of its own")
            self._ids[key] = (self.base + 1 + len(self._ids)) % (MAX_DOMAIN_ID + 1)
        return self._ids[key]


#: ``ros_domain(__name__)`` (or ``f"{__name__}:<test>"``): the ROS domain of a module (or test) that starts nodes.
ros_domain = DomainPool(domain_base(os.environ))

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ["ROS_DOMAIN_ID"] = str(ros_domain.base)
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


def pytest_report_header(config: pytest.Config) -> str:
    """Say which ROS domains this run uses, so that a second run on the machine can keep clear of them."""
    return (f"ROS domains: {ros_domain.base} (ROS_DOMAIN_ID) and the ids after it, one per module (or test) that "
            "starts nodes (set AQR_TEST_DOMAIN_BASE or ROS_DOMAIN_ID at least 40 apart for runs at the same time)")


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


@pytest.fixture(scope="module")
def ros_context() -> Iterator[object]:
    """An rclpy context of its own for a module's in-process nodes, shut down after the module."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def spawn_python(ros_env: dict[str, str]) -> Iterator[SpawnPython]:
    """Start child Python processes (``spawn(args, env=None, **popen_kwargs)``); stop them after.

    Each child leads its own process group, which teardown stops with SIGINT, then SIGKILL after 5 s
    (:func:`aqr_ros.tools.processes.stop`). Output defaults to one text pipe.
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
        try:
            stop(proc)
        finally:
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
