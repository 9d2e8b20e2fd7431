"""The node-test harness itself: an error in its spin thread fails the waiting test instead of being printed."""

import pytest
from std_msgs.msg import Float64

from node_harness import RigHarness

pytestmark = pytest.mark.ros

DOMAIN_ID = 86


def test_an_error_in_the_spin_thread_reaches_the_test():
    harness = RigHarness(DOMAIN_ID, "")
    try:
        def broken(msg: Float64) -> None:
            raise ValueError(f"callback failed on {msg.data}")

        harness.node.create_subscription(Float64, "harness_self_test", broken, 10)
        publisher = harness.node.create_publisher(Float64, "harness_self_test", 10)
        with pytest.raises(AssertionError, match="stopped spinning: ValueError") as failure:
            # Publishes at every poll (publish returns None) until the subscription has matched and failed.
            harness.wait_for(lambda: publisher.publish(Float64(data=1.0)), 20, "the callback's error")
        assert "callback failed on 1.0" in str(failure.value.__cause__)
    finally:
        harness.close()
