"""Starting the node and the rig publisher as child processes (demo, node benchmark).

They run as separate processes talking over real DDS on loopback, as they would on a vehicle.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from aqr_ros.resources import IMPORT_ROOT, share_path, source_root
from aqr_ros.tools.synthetic_rig import CAMERA_NAMES

#: Fully qualified name of the node started by :func:`node_arguments`.
NODE = "/aqr_node"


def child_env(domain_id: int | None) -> tuple[dict[str, str], str]:
    """Environment for the children: loopback DDS, the large-message profile, this process's aqr_ros, a tf2_ros.

    ``domain_id`` None keeps this process's ``ROS_DOMAIN_ID`` (or ROS's default when unset). Where no ROS 2
    install provides tf2_ros (the PyPI ROS wheels have none), the node gets the test double from the source
    checkout's ``test/doubles`` (an install has none: the node then fails naming tf2_ros); the returned note
    says which one is used.
    """
    env = dict(os.environ)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    if "FASTDDS_DEFAULT_PROFILES_FILE" not in env:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(share_path("config", "fastdds_large_data.xml"))
    paths = [str(IMPORT_ROOT)]
    note = "tf2_ros from the ROS 2 install"
    found = importlib.util.find_spec("tf2_ros")
    checkout = source_root()
    doubles = checkout / "test" / "doubles" if checkout is not None else None
    if found is not None and doubles is not None and Path(found.origin or "").is_relative_to(doubles):
        note = "tf2_ros TEST DOUBLE from test/doubles (no ROS 2 install provides tf2_ros here)"
    elif found is None:
        if checkout is None:
            note = "NO tf2_ros: no ROS 2 install provides it and an installed aqr_ros has no test double"
        else:
            paths.append(str(checkout / "test" / "doubles"))
            note = "tf2_ros TEST DOUBLE from test/doubles (no ROS 2 install provides tf2_ros here)"
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env, note


def params_file() -> Path:
    """The shipped parameter file the node is started with (``config/aqr.yaml``)."""
    return share_path("config", "aqr.yaml")


def shipped_parameter(name: str) -> object:
    """Value of the dotted parameter ``name`` (e.g. ``sync.max_camera_lidar_delay``) in :func:`params_file`."""
    value = yaml.safe_load(params_file().read_text())["/**"]["ros__parameters"]
    for key in name.split("."):
        value = value[key]
    return value


def node_arguments(params: Mapping[str, object], num_views: int) -> list[str]:
    """``python`` arguments starting aqr_node with the shipped parameters, ``params`` overrides, and its
    inputs remapped onto the rig publisher's topics."""
    args = ["-m", "aqr_ros.ros.node", "--ros-args", "--params-file", str(params_file())]
    if not params.get("model.checkpoint"):  # the benchmarks' and the demo's fallback: knowingly random weights
        args += ["-p", "model.allow_random_weights:=true"]
    for name, value in params.items():
        args += ["-p", f"{name}:={value}"]
    args += ["-r", "~/input/pointcloud:=/lidar_top/points"]
    for i, name in enumerate(CAMERA_NAMES[:num_views]):
        args += ["-r", f"~/input/camera{i}/image:=/{name}/image_raw",
                 "-r", f"~/input/camera{i}/camera_info:=/{name}/camera_info"]
    return args


def spawn(args: Sequence[str], env: Mapping[str, str], log: Path) -> subprocess.Popen:
    """Start ``python args`` in its own process group, output to ``log``."""
    with log.open("wb") as handle:
        return subprocess.Popen([sys.executable, *args], env=dict(env), stdout=handle, stderr=subprocess.STDOUT,
                                start_new_session=True)


def log_problems(log: Path, tail: int = 20) -> list[str]:
    """The FATAL and ERROR lines of a child's log, else its last ``tail`` lines (e.g. a Python traceback)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    problems = [line for line in lines if re.search(r"\[(FATAL|ERROR)\]", line)]
    return problems or lines[-tail:]


#: How long a stopping node may take: its worker waits up to ``aqr_ros.ros.node.WORKER_STOP_S`` (30 s) for the
#: frame in the model to reach its next stage, then ROS shuts down.
NODE_STOP_S = 35.0


def stop(proc: subprocess.Popen | None, timeout: float = 5.0) -> None:
    """SIGINT the whole process group, then SIGKILL it after ``timeout`` s (a subscriber can hang on SIGINT).

    SIGINT first lets the children shut ROS down: a killed Fast DDS participant leaves its shared-memory segments
    (often 100+ MB each with large images) in /dev/shm until the machine restarts.
    """
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=timeout)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)
