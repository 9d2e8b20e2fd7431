#!/usr/bin/env bash
# The demo command: sets up (idempotent), then runs `python -m aqr_ros.tools.demo` in the
# environment from scripts/env.sh. Arguments are passed to the demo (see --help).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$REPO/scripts/setup.sh"
# shellcheck disable=SC1091
. "$REPO/scripts/env.sh"
# Stay in the caller's directory (--out and --checkpoint are relative to it); import aqr_ros from the tree.
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec python -m aqr_ros.tools.demo "$@"
