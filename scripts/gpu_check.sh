#!/usr/bin/env bash
# GPU check (issue 8 §7) for a machine with CUDA, Python >= 3.10 and PyTorch but no ROS, no venv and no network:
# the gpu-marked tests, the model and AQR benchmarks at fp32/fp16, fp16-vs-fp32 agreement of the rig model and
# peak GPU memory, into gpu_check.json + gpu_check.txt ($OUT, else out/gpu_check; or --out DIR), in <= 6 min.
# Needs numpy, opencv (cv2), PyYAML, safetensors, pytest and, for the training test, scipy: a missing one is
# named in the report and the steps that need it are skipped. The logic is aqr_ros/tools/gpu_check.py; extra
# arguments go to it (e.g. --device cpu --quick). Environment: PYTHON (default python3),
# AQR_GPU_CHECK_TIMEOUTS (per-step seconds), AQR_GPU_CHECK_TOTAL (hard limit of the whole run, seconds).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
STEP_TIMEOUTS="${AQR_GPU_CHECK_TIMEOUTS:-tests=150,bench_model=90,bench_aqr=45,agreement=60}"
TOTAL_TIMEOUT="${AQR_GPU_CHECK_TOTAL:-360}"

command -v "$PYTHON" >/dev/null || { echo "gpu_check.sh: $PYTHON not found (set PYTHON=...)" >&2; exit 2; }
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
cd "$REPO"
# The steps' own timeouts add up to less than the total; this one only stops a run that hangs outside them.
exec timeout --kill-after=10 "$TOTAL_TIMEOUT" "$PYTHON" -m aqr_ros.tools.gpu_check --timeouts "$STEP_TIMEOUTS" "$@"
