"""The node as a managed node: every transition driven through its real lifecycle services over DDS."""

from __future__ import annotations

import time

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

from conftest import ros_domain
from node_harness import SEC, TINY_CONFIG, RigHarness, node_command, rig_remaps, start_node, stop_node

pytestmark = pytest.mark.ros

DOMAIN_ID = ros_domain(__name__)
FAILED_CONFIGURE_DOMAIN_ID = ros_domain(f"{__name__}:failed_configure")
PARAMS = {"model.config": str(TINY_CONFIG), "model.device": "cpu", "autostart": "false", "diag.period": 0.2,
          "model.warmup_iters": 0, "score_threshold": 0.0}
SERVICE_TIMEOUT_S = 120.0  # configure loads the model


class LifecycleClient:
    """get_state / change_state of the node under test, called from the harness's node."""

    def __init__(self, harness: RigHarness, node: str = "/aqr_node") -> None:
        self.harness = harness
        self.get = harness.node.create_client(GetState, f"{node}/get_state")
        self.change = harness.node.create_client(ChangeState, f"{node}/change_state")
        assert self.get.wait_for_service(timeout_sec=30), "no lifecycle services on the node"

    def _call(self, client, request):
        future = client.call_async(request)
        deadline = time.monotonic() + SERVICE_TIMEOUT_S
        while not future.done():
            assert time.monotonic() < deadline, f"no answer from {client.srv_name}"
            time.sleep(0.05)
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success


def _frames_answered(harness: RigHarness, first_ns: int, count: int) -> int:
    """Publish ``count`` frames from ``first_ns`` (1 s apart, time to answer each); how many were answered."""
    stamps = [first_ns + k * SEC for k in range(count)]
    for stamp in stamps:
        harness.publish_frame(stamp)
        time.sleep(1.0)
    time.sleep(2.0)
    return sum(bool(harness.detections_at(s)) for s in stamps)


@pytest.fixture(scope="module")
def managed():
    log = start_node(node_command("", PARAMS, rig_remaps()), DOMAIN_ID)
    harness = RigHarness(DOMAIN_ID, "")
    harness.publish_static_tf()
    client = LifecycleClient(harness)
    try:
        yield log, harness, client
    finally:
        harness.close()
        stop_node(log)


def test_unconfigured_then_inactive_then_active_publishes_only_when_active(managed):
    log, harness, client = managed
    assert client.state() == "unconfigured"
    assert "loading model" not in log.text(), "autostart false must not load the model"
    assert _frames_answered(harness, 1_700_000_000 * SEC, 2) == 0

    assert client.transition(Transition.TRANSITION_CONFIGURE), log.text()
    assert client.state() == "inactive"
    status = harness.wait_status(lambda s: s.get("lifecycle state") == "inactive", 10, "inactive diagnostics", log)
    assert status["level"] == "0", status  # an inactive node is not stale: it chose not to listen
    assert _frames_answered(harness, harness.next_stamp(SEC), 2) == 0

    assert client.transition(Transition.TRANSITION_ACTIVATE), log.text()
    assert client.state() == "active"
    harness.publish_until_output(harness.next_stamp(SEC), 60, log)
    harness.wait_status(lambda s: s.get("lifecycle state") == "active", 10, "active diagnostics", log)


def test_deactivate_stops_output_and_cleanup_then_configure_starts_again(managed):
    log, harness, client = managed
    assert client.state() == "active"
    assert client.transition(Transition.TRANSITION_DEACTIVATE), log.text()
    assert client.state() == "inactive"
    assert _frames_answered(harness, harness.next_stamp(SEC), 2) == 0

    assert client.transition(Transition.TRANSITION_CLEANUP), log.text()
    assert client.state() == "unconfigured"
    assert client.transition(Transition.TRANSITION_CONFIGURE), log.text()
    assert client.transition(Transition.TRANSITION_ACTIVATE), log.text()
    harness.publish_until_output(harness.next_stamp(SEC), 60, log)


def test_shutdown_finalizes_and_the_process_still_exits_cleanly(managed):
    log, harness, client = managed
    assert client.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN), log.text()
    assert client.state() == "finalized"
    assert _frames_answered(harness, harness.next_stamp(SEC), 1) == 0
    stop_node(log)
    assert log.proc.returncode == 0, log.text()
    assert "Traceback" not in log.text(), log.text()


def test_a_failed_configure_stays_unconfigured_names_the_parameter_and_keeps_serving(tmp_path):
    missing = tmp_path / "missing.safetensors"
    log = start_node(node_command("", {**PARAMS, "model.checkpoint": str(missing)}, {}), FAILED_CONFIGURE_DOMAIN_ID)
    harness = RigHarness(FAILED_CONFIGURE_DOMAIN_ID, "")
    try:
        client = LifecycleClient(harness)
        assert not client.transition(Transition.TRANSITION_CONFIGURE)
        assert client.state() == "unconfigured"
        assert "configure failed: parameter 'model.checkpoint'" in log.text() and str(missing) in log.text()
        assert log.proc.poll() is None, "a managed node stays up for its manager"
    finally:
        harness.close()
        stop_node(log)
    assert log.proc.returncode == 0, log.text()

