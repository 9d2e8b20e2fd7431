#!/usr/bin/env bash
# The test command: sets up (idempotent), builds aqr_ros with colcon and runs its pytest suite
# through `colcon test`, printing pytest's summary; exits non-zero on any failure.
# Extra arguments are passed to pytest, e.g. scripts/test.sh -k transport
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
# shellcheck disable=SC1091
. "$REPO/scripts/env.sh"
# ROS tests must run here: a broken environment fails them instead of skipping them.
export AQR_REQUIRE_ROS=1
cd "$REPO"

pytest_args=()
[ $# -gt 0 ] && pytest_args=(--pytest-args "$@")

echo "test.sh: colcon build --packages-select aqr_ros"
colcon build --paths "$REPO" --packages-select aqr_ros \
  || { echo "test.sh: FAILED: colcon build of aqr_ros (log: $REPO/log/latest_build)" >&2; exit 1; }

echo "test.sh: colcon test --packages-select aqr_ros"
test_rc=0
colcon test --paths "$REPO" --packages-select aqr_ros \
  --event-handlers console_direct+ --return-code-on-test-failure "${pytest_args[@]}" || test_rc=$?

result_rc=0
colcon test-result --test-result-base "$REPO/build/aqr_ros" --verbose || result_rc=$?

if [ "$test_rc" -ne 0 ] || [ "$result_rc" -ne 0 ]; then
  echo "test.sh: FAILED (colcon test exit $test_rc, colcon test-result exit $result_rc)" >&2
  exit 1
fi
echo "test.sh: all tests passed"
