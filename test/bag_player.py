"""A minimal stand-in for ``ros2 bag play`` in tests (PyPI has no rosbag2 wheel): publishes a bag's messages over
DDS in recording order at a scaled rate, with /tf_static latched, once every subscriber has matched."""

from __future__ import annotations

import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from aqr_ros.tools.bag_io import bag_topics, message_class, read_messages

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)


class BagPlayer:
    """Publishers for ``topics`` of ``bag`` on ``node`` (reliable; /tf_static transient local)."""

    def __init__(self, node: Node, bag: Path, topics: Collection[str]) -> None:
        self.bag = bag
        types = bag_topics(bag)
        self.topics = [t for t in topics if t in types]
        self.publishers = {t: node.create_publisher(message_class(types[t].msgtype), t,
                                                    LATCHED if t == "/tf_static" else QoSProfile(depth=50))
                           for t in self.topics}

    def wait_for_subscribers(self, topics: Collection[str], timeout_s: float) -> None:
        """Block until each of ``topics`` has a matched subscriber (AssertionError naming those without)."""
        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [t for t in topics if self.publishers[t].get_subscription_count() == 0]
            if not waiting:
                return
            assert time.monotonic() < deadline, f"no subscriber on {waiting} after {timeout_s} s"
            time.sleep(0.05)

    def play(self, rate: float, lead_s: float = 0.0) -> int:
        """Publish every message at ``rate`` times its recorded pace; /tf and camera_info ``lead_s`` (recording
        time) early, as a fast odometry source and a camera_info sent ahead of its first image would be, so no frame
        races its own pose or calibration. Returns the number published."""
        lead_ns = int(lead_s * 1e9)
        schedule = sorted(((stamp_ns - lead_ns if topic == "/tf" or topic.endswith("/camera_info") else stamp_ns,
                            i, topic, msg)
                           for i, (topic, stamp_ns, msg) in enumerate(read_messages(self.bag, self.topics))),
                          key=lambda item: item[:2])
        start_wall, start_rec, count = time.monotonic(), None, 0
        for stamp_ns, _, topic, msg in schedule:
            start_rec = stamp_ns if start_rec is None else start_rec
            delay = start_wall + (stamp_ns - start_rec) * 1e-9 / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publishers[topic].publish(msg)
            count += 1
        return count


def collect(node: Node, topic: str, msg_type: type, sink: list[Any]) -> Any:
    """Subscribe ``sink.append`` to ``topic`` (reliable, deep queue)."""
    return node.create_subscription(msg_type, topic, sink.append, QoSProfile(depth=100))
