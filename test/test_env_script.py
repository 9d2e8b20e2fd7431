"""scripts/env.sh makes this checkout importable from any folder and says when tf2_ros is the test double."""

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_sourced_env_imports_aqr_ros_from_anywhere_and_names_the_tf2_double(tmp_path):
    script = f'. "{REPO}/scripts/env.sh" && cd "{tmp_path}" && python -c "import aqr_ros, tf2_ros; ' \
             'print(aqr_ros.__file__); print(tf2_ros.__file__)"'
    fresh = {"HOME": os.environ.get("HOME", "/root"), "PATH": "/usr/local/bin:/usr/bin:/bin"}  # a new shell
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60, env=fresh)
    assert proc.returncode == 0, proc.stderr
    aqr_file, tf2_file = proc.stdout.split()
    assert Path(aqr_file).is_relative_to(REPO)
    if Path(tf2_file).is_relative_to(REPO / "test" / "doubles"):
        assert "the TEST DOUBLE in test/doubles/tf2_ros is used" in proc.stderr
    else:  # a ROS 2 install provides the real one: no note
        assert "TEST DOUBLE" not in proc.stderr
