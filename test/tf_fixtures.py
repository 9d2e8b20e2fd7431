"""Helpers shared by the tf tests: a rotation about z, and an rclpy node in its own context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import rclpy
from rclpy.context import Context
from rclpy.node import Node


def rot_z(deg: float, t: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 rotation by ``deg`` about z followed by the translation ``t``."""
    a = np.radians(deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = t
    return T


@contextmanager
def isolated_node(name: str, domain_id: int, **kwargs: Any) -> Iterator[Node]:
    """A node in a fresh context on ``domain_id``, shut down on exit."""
    context = Context()
    rclpy.init(context=context, domain_id=domain_id)
    node = Node(name, context=context, **kwargs)
    try:
        yield node
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)
