# Source me (". scripts/env.sh"): the environment for aqr_ros's tests, demo and CI.
# Activates the venv made by scripts/setup.sh, sources its ament underlay and the test-only
# interface packages, and keeps all DDS traffic on loopback with the large-message profile.
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
unset _aqr_repo _aqr_venv _aqr_nounset
