# Source me (". scripts/env.sh"): the environment for aqr_ros's tests, demo, CI and your own scripts.
# Activates the venv made by scripts/setup.sh, sources its ament underlay and the test-only
# interface packages, puts this checkout's aqr_ros on PYTHONPATH (importable from any folder), and
# keeps all DDS traffic on loopback with the large-message profile. Where no ROS 2 install provides
# tf2_ros, the test double in test/doubles is put last on PYTHONPATH, and this says so.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  echo "env.sh: source this file (. scripts/env.sh), do not execute it" >&2
  exit 1
fi
_aqr_repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_aqr_venv="${AQR_VENV:-$_aqr_repo/.venv}"
if [ ! -f "$_aqr_venv/local_setup.bash" ] || [ ! -f "$_aqr_venv/test_interfaces/install/local_setup.bash" ]; then
  echo "env.sh: $_aqr_venv is not set up: run $_aqr_repo/scripts/setup.sh first" >&2
  unset _aqr_repo _aqr_venv
  return 1
fi
case $- in *u*) _aqr_nounset=1; set +u ;; *) _aqr_nounset="" ;; esac
# shellcheck disable=SC1091
. "$_aqr_venv/bin/activate"
# shellcheck disable=SC1091
. "$_aqr_venv/local_setup.bash"
# shellcheck disable=SC1091
. "$_aqr_venv/test_interfaces/install/local_setup.bash"
[ -n "$_aqr_nounset" ] && set -u
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-42}"
export FASTDDS_DEFAULT_PROFILES_FILE="$_aqr_repo/config/fastdds_large_data.xml"
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export PYTHONPATH="$_aqr_repo${PYTHONPATH:+:$PYTHONPATH}"
if ! python -c "import tf2_ros" 2>/dev/null; then
  export PYTHONPATH="$PYTHONPATH:$_aqr_repo/test/doubles"
  echo "env.sh: NOTE: no ROS 2 install provides tf2_ros here; the TEST DOUBLE in test/doubles/tf2_ros is used" >&2
fi
unset _aqr_repo _aqr_venv _aqr_nounset
