"""Failures inside the worker, by fault injection into the real node process over DDS.

The node runs from a small wrapper that replaces ``AqrCmt.infer`` so chosen frames raise: an ordinary error must
be logged with its traceback once, counted, and leave the next frame unharmed; an unrecoverable CUDA error must
stop processing with an ERROR status, an error transition and exit code 1 (no CUDA is needed to raise one).
"""

from __future__ import annotations

import subprocess
import time

import pytest

from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, rig_remaps, start_node, stop_node
from aqr_ros.ros.node import MAX_OOM_FRAMES, WORKER_STOP_S, unrecoverable
from aqr_ros.tools.processes import NODE_STOP_S

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
CUDA_DOMAIN_ID = ros_domain(f"{__name__}:cuda")
CTRL_C_DOMAIN_ID = ros_domain(f"{__name__}:ctrl_c")
SLOW_STAGES_DOMAIN_ID = ros_domain(f"{__name__}:slow_stages")
PARAMS = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "diag.period": 0.2, "model.warmup_iters": 0,
          "diag.stale_timeout": 600.0}

#: Runs the node with frames ``FAIL`` (1-based forward passes) raising ``MESSAGE``.
WRAPPER = """
import sys
from aqr_ros.model.detector import AqrCmt
from aqr_ros.ros.node import main
real_infer, calls = AqrCmt.infer, [0]
def injected_infer(self, *args, **kwargs):
    calls[0] += 1
    if calls[0] in {fail}:
        raise RuntimeError({message!r} + f" (frame {{calls[0]}})")
    return real_infer(self, *args, **kwargs)
AqrCmt.infer = injected_infer
sys.exit(main())
"""


#: Runs the node with every model stage taking a second longer, announced on stdout: a frame lasts 10 s or more.
SLOW_STAGES = """
import sys, time
from contextlib import contextmanager
from aqr_ros.model import timing
from aqr_ros.ros.node import main
real_stage = timing.StageTimer.stage
@contextmanager
def slow_stage(self, name):
    print(f"stage {name} entered", flush=True)
    time.sleep(1.0)
    with real_stage(self, name):
        yield
timing.StageTimer.stage = slow_stage
sys.exit(main())
"""


def _start(fail: set[int], message: str, domain_id: int, code: str = ""):
    args = node_command("", PARAMS, rig_remaps())
    code = code or WRAPPER.format(fail=sorted(fail), message=message)
    return start_node(["-c", code, *args[2:]], domain_id)  # args[:2] is "-m aqr_ros.ros.node"


def test_ordinary_errors_are_logged_once_with_traceback_counted_and_the_next_frame_runs():
    log = _start({2, 3}, "injected failure", DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    try:
        harness.publish_static_tf()
        harness.publish_until_output(1_700_000_000 * SEC, 60, log)  # forward pass 1 runs
        # Passes 2 and 3 fail. A slow first frame may leave a frame of publish_until_output in flight, so
        # frames are sent until both errors are counted rather than one per expected error.
        harness.publish_until_status(lambda s: s["worker errors"].startswith("2 "), 60, "two errors counted", log)
        harness.publish_until_output(harness.next_stamp(SEC), 60, log)  # forward pass 4 runs again
        status = harness.last_status()
        assert status["worker errors"].startswith("2 (last: RuntimeError: injected failure (frame 3))"), status
    finally:
        harness.close()
        stop_node(log)
    out = log.text()
    assert out.count("Traceback (most recent call last)") == 1, out  # the traceback once per kind of error
    assert "injected_infer" in out and "failed (1 errors so far)" in out and "failed again (2 errors so far)" in out
    assert log.proc.returncode == 0


def test_an_unrecoverable_cuda_error_stops_processing_with_error_status_and_exit_code_1():
    log = _start({2}, "CUDA error: an illegal memory access was encountered", CUDA_DOMAIN_ID)
    harness = RigHarness(CUDA_DOMAIN_ID, "")
    try:
        harness.publish_static_tf()
        first, _ = harness.publish_until_output(1_700_000_000 * SEC, 60, log)
        harness.publish_frame(first + SEC)
        code = log.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        code = None
    finally:
        harness.close()
        stop_node(log)
    out = log.text()
    assert code == 1, out
    assert "processing stopped: unrecoverable CUDA error: CUDA error: an illegal memory access" in out
    assert "deactivated after an unrecoverable error" in out and "error processing: node released" in out
    assert any(s.status[0].level == b"\x02" and s.status[0].message.startswith("processing stopped")
               for s in harness.rec.diagnostics), "no ERROR status before exiting"


def test_which_errors_end_processing():
    import torch

    assert unrecoverable(RuntimeError("CUDA error: device-side assert triggered"), 0).startswith("unrecoverable")
    assert unrecoverable(RuntimeError("shape mismatch"), 0) == ""
    oom = torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert unrecoverable(oom, MAX_OOM_FRAMES - 1) == ""
    assert unrecoverable(oom, MAX_OOM_FRAMES) == f"CUDA out of memory in {MAX_OOM_FRAMES} consecutive frames"


def test_ctrl_c_while_a_frame_is_in_the_model_exits_cleanly():
    log = _start(set(), "never raised", CTRL_C_DOMAIN_ID)
    harness = RigHarness(CTRL_C_DOMAIN_ID, "")
    try:
        harness.publish_static_tf()
        first, _ = harness.publish_until_output(1_700_000_000 * SEC, 60, log)
        harness.publish_frame(first + SEC)
        time.sleep(0.3)  # the tiny model takes about a second on this CPU: the frame is in the forward pass
    finally:
        harness.close()
        stop_node(log)  # SIGINT
    out = log.text()
    assert log.proc.returncode == 0, out
    assert "terminate called" not in out and "Traceback" not in out and "[ERROR]" not in out, out


def test_tools_give_a_stopping_node_the_time_its_worker_may_take():
    assert NODE_STOP_S > WORKER_STOP_S  # else the demo, the benchmark and the tests SIGKILL it mid-stage


def test_ctrl_c_ends_a_long_frame_at_its_next_model_stage():
    """A frame far longer than the node waits (the full model on a CPU) stops at a stage boundary: the process
    exits cleanly instead of abandoning a thread inside torch (which aborted it: 'terminate called')."""
    log = _start(set(), "", SLOW_STAGES_DOMAIN_ID, code=SLOW_STAGES)
    harness = RigHarness(SLOW_STAGES_DOMAIN_ID, "")

    def entered() -> int:
        return sum(line.startswith("stage ") for line in log.lines)

    try:
        harness.publish_static_tf()
        harness.publish_until_output(1_700_000_000 * SEC, 120, log)
        harness.publish_frame(harness.next_stamp(SEC))
        seen = entered()
        harness.wait_for(lambda: entered() > seen, 30, "a frame in the model", log)
        at_stop = entered()
    finally:
        harness.close()
        stop_node(log)  # SIGINT in a frame's stage, with most of its ten 1 s stages still to run
    out = log.text()
    assert log.proc.returncode == 0, out
    assert "terminate called" not in out and "Traceback" not in out and "[ERROR]" not in out, out
    # The stage running at SIGINT ends, the next one is refused (one line more when it was announced first).
    assert entered() - at_stop <= 2, f"{entered() - at_stop} more stages after SIGINT:\n{out}"
