"""The installed package works outside the source tree (issue 8 §3).

colcon installs this checkout into a temporary prefix; then, from a temporary working directory with the
checkout off the path, the named model configs, ``aqr_demo --help``, the checkpoint tool on the shipped
weights and the node itself (shipped parameters and weights from share/aqr_ros) must all work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import ros_domain

from aqr_ros.resources import ResourceError, share_dir, share_path, source_root

pytestmark = pytest.mark.ros

REPO = Path(__file__).resolve().parents[1]
DOMAIN_ID = ros_domain(__name__)
RIG_CONFIG = "aqr_cmt_rig_small"
#: Seconds the node gets to load the rig model and log ``ready`` on two busy cores.
READY_TIMEOUT = 60.0

#: Run in the installed environment: where aqr_ros and its data come from, the node's named configs, and the
#: parameter file and DDS profile the demo and ``aqr_bench node`` give their child processes.
PROBE = """
import json, os, sys
import aqr_ros
from aqr_ros.model import available_configs, load_config
from aqr_ros.model.detector import DEFAULT_CONFIG
from aqr_ros.resources import share_dir, source_root
from aqr_ros.tools.processes import child_env, params_file
del os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]
print(json.dumps({"package": aqr_ros.__file__, "sys_path": sys.path, "share": str(share_dir()),
                  "source_root": source_root() and str(source_root()), "configs": available_configs(),
                  "default": load_config(DEFAULT_CONFIG).name, "rig": load_config("%s").name,
                  "params": str(params_file()), "profile": child_env(None)[0]["FASTDDS_DEFAULT_PROFILES_FILE"]}))
""" % RIG_CONFIG


def _in_source_build_outputs() -> list[str]:
    """What a setup.py run in the checkout would leave there: ``*.egg-info`` and the content of ``build/``."""
    build = REPO / "build"
    made = [p.name for p in REPO.glob("*.egg-info")] + ([p.name for p in build.iterdir()] if build.is_dir() else [])
    return sorted(made)


def _without_aqr_ros(paths: str, marker: str) -> list[str]:
    """The entries of a path list that provide no aqr_ros (``marker`` is aqr_ros's subpath in an entry)."""
    return [p for p in paths.split(os.pathsep) if p and Path(p).resolve() != REPO and not (Path(p) / marker).exists()]


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A colcon install of this checkout in a temporary prefix: its paths and an environment that sees it and
    no other aqr_ros (the tf2_ros test double is kept: the PyPI ROS wheels have no tf2_ros)."""
    base = tmp_path_factory.mktemp("aqr_install")
    assert REPO not in base.parents
    before = _in_source_build_outputs()
    build = subprocess.run(
        [sys.executable, "-m", "colcon", "--log-base", str(base / "log"), "build", "--paths",
         str(REPO), "--build-base", str(base / "build"), "--install-base", str(base / "install")],
        cwd=base, capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stdout + build.stderr
    assert _in_source_build_outputs() == before, "the install build wrote into the source checkout"
    prefix = base / "install" / "aqr_ros"
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(site), *_without_aqr_ros(env.get("PYTHONPATH", ""), "aqr_ros"), str(REPO / "test" / "doubles")])
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(
        [str(prefix), *_without_aqr_ros(env.get("AMENT_PREFIX_PATH", ""), "share/aqr_ros")])
    share = prefix / "share" / "aqr_ros"
    env.update(ROS_DOMAIN_ID=str(DOMAIN_ID), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1",
               FASTDDS_DEFAULT_PROFILES_FILE=str(share / "config" / "fastdds_large_data.xml"),
               ROS_LOG_DIR=str(base / "ros_log"))
    work = base / "cwd"
    work.mkdir()
    return {"prefix": prefix, "share": share, "scripts": prefix / "lib" / "aqr_ros", "env": env, "cwd": work}


def _run(install: dict, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``args`` in the installed environment from the temporary working directory."""
    return subprocess.run(args, cwd=install["cwd"], env=install["env"], capture_output=True, text=True,
                          timeout=timeout)


def test_source_checkout_is_its_own_data_folder():
    assert source_root() == REPO and share_dir() == REPO
    assert share_path("models", f"{RIG_CONFIG}.yaml").is_file()
    with pytest.raises(ResourceError, match=r"models/no_such\.yaml .*the source checkout"):
        share_path("models", "no_such.yaml")


def test_installed_package_finds_its_data_in_its_share_folder(install):
    probe = _run(install, [sys.executable, "-c", PROBE])
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout)
    assert Path(found["package"]).is_relative_to(install["prefix"]), found["package"]
    assert str(REPO) not in found["sys_path"]
    assert found["source_root"] is None and Path(found["share"]) == install["share"]
    assert RIG_CONFIG in found["configs"] and found["rig"] == RIG_CONFIG
    assert found["default"] == "cmt_aqr_voxel0100_r50_800x320"
    assert Path(found["params"]) == install["share"] / "config" / "aqr.yaml"
    assert Path(found["profile"]) == install["share"] / "config" / "fastdds_large_data.xml"


def test_installed_demo_entry_point_answers_help(install):
    demo = _run(install, [str(install["scripts"] / "aqr_demo"), "--help"])
    assert demo.returncode == 0, demo.stderr
    assert "--checkpoint" in demo.stdout and "--random-weights" in demo.stdout


def test_installed_checkpoint_tool_inspects_the_shipped_weights(install):
    weights = install["share"] / "models" / "weights" / f"{RIG_CONFIG}.safetensors"
    tool = _run(install, [sys.executable, "-m", "aqr_ros.tools.checkpoint", "inspect", str(weights),
                          "--config", RIG_CONFIG])
    assert tool.returncode == 0, tool.stdout + tool.stderr
    assert str(weights) in tool.stdout


def test_installed_node_starts_with_the_shipped_params_and_weights(install):
    share = install["share"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "aqr_ros.ros.node", "--ros-args", "--params-file", str(share / "config" / "aqr.yaml"),
         "-p", f"model.checkpoint:={share / 'models' / 'weights' / f'{RIG_CONFIG}.safetensors'}",
         "-p", f"model.config:={RIG_CONFIG}", "-p", "model.device:=cpu"],
        cwd=install["cwd"], env=install["env"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None and not any("ready: model" in x for x in lines):
            time.sleep(0.2)
        assert any(f"ready: model {RIG_CONFIG}" in line for line in lines), "".join(lines)
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=15) == 0, "".join(lines)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        reader.join(timeout=10)
        proc.stdout.close()
