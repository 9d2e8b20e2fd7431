"""The node-test harness itself: an error in its spin thread fails the waiting test instead of being printed; each
module that starts nodes gets a ROS domain of its own, derived from the environment (conftest's ``ros_domain``)."""

import os
import subprocess
import sys

import pytest

from conftest import MAX_DOMAIN_ID, REPO_ROOT, DomainPool, domain_base, ros_domain

DOMAIN_ID = ros_domain(__name__)


@pytest.mark.ros
def test_an_error_in_the_spin_thread_reaches_the_test():
    from std_msgs.msg import Float64

    from node_harness import RigHarness

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


@pytest.mark.parametrize("environ, base", [
    ({"AQR_TEST_DOMAIN_BASE": "7", "ROS_DOMAIN_ID": "150"}, 7),
    ({"ROS_DOMAIN_ID": "150"}, 150),
    ({"AQR_TEST_DOMAIN_BASE": " ", "ROS_DOMAIN_ID": "0"}, 0),
    ({"ROS_DOMAIN_ID": ""}, 42),
    ({}, 42),
    ({"AQR_TEST_DOMAIN_BASE": "232"}, 232),
])
def test_domain_base_comes_from_the_environment(environ, base):
    assert domain_base(environ) == base


@pytest.mark.parametrize("environ, name", [
    ({"AQR_TEST_DOMAIN_BASE": "233"}, "AQR_TEST_DOMAIN_BASE"),
    ({"AQR_TEST_DOMAIN_BASE": "-1", "ROS_DOMAIN_ID": "5"}, "AQR_TEST_DOMAIN_BASE"),
    ({"ROS_DOMAIN_ID": "forty"}, "ROS_DOMAIN_ID"),
    ({"ROS_DOMAIN_ID": "4.5"}, "ROS_DOMAIN_ID"),
])
def test_a_domain_base_outside_0_to_232_is_refused_naming_the_variable(environ, name):
    with pytest.raises(ValueError, match=rf"^{name}=.* integer in 0\.\.232"):
        domain_base(environ)


def test_each_key_gets_its_own_domain_after_the_base_and_keeps_it():
    pool = DomainPool(150)
    first, second = pool("test_a"), pool("test_b")
    assert (first, second) == (151, 152)
    assert pool("test_a") == first and pool("test_b:other") == 153


@pytest.mark.parametrize("base", [0, 42, 230, MAX_DOMAIN_ID])
def test_every_domain_but_the_base_is_handed_out_once_then_the_pool_refuses(base):
    pool = DomainPool(base)
    ids = [pool(f"module{k}") for k in range(MAX_DOMAIN_ID)]
    assert sorted(ids + [base]) == list(range(MAX_DOMAIN_ID + 1))  # wraps within 0..232, never the base
    with pytest.raises(RuntimeError, match="all 232 test domains besides the base"):
        pool("one_too_many")
    assert pool("module0") == ids[0]


def test_a_pool_base_outside_the_range_is_refused():
    with pytest.raises(ValueError, match="outside 0..232"):
        DomainPool(MAX_DOMAIN_ID + 1)


def test_this_runs_modules_are_on_their_own_domains_beside_the_runs_ros_domain_id():
    assert ros_domain.base == int(os.environ["ROS_DOMAIN_ID"])
    assert DOMAIN_ID != ros_domain.base and ros_domain(__name__) == DOMAIN_ID


def test_aqr_test_domain_base_sets_the_runs_ros_domain_id():
    probe = ("import os, conftest; "
             "print(os.environ['ROS_DOMAIN_ID'], conftest.ros_domain('m1'), conftest.ros_domain('m2'))")
    env = {k: v for k, v in os.environ.items() if k != "AQR_TEST_DOMAIN_BASE"}
    runs = {
        "base": dict(env, AQR_TEST_DOMAIN_BASE="200", ROS_DOMAIN_ID="5"),
        "ros": dict(env, ROS_DOMAIN_ID="5"),
    }
    outputs = {name: subprocess.run([sys.executable, "-c", probe], cwd=REPO_ROOT / "test", env=run, text=True,
                                    capture_output=True, timeout=60) for name, run in runs.items()}
    assert outputs["base"].stdout.split() == ["200", "201", "202"], outputs["base"].stderr
    assert outputs["ros"].stdout.split() == ["5", "6", "7"], outputs["ros"].stderr
