"""Optional per-stage timing of a forward pass, used by the benchmarks and the node's diagnostics."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch


class StageTimer:
    """Accumulates wall time per named stage.

    With ``synchronize=True`` the CUDA stream is synchronized around each stage so GPU time is
    attributed to the right stage; that costs a host sync per stage, so only benchmarks enable it.
    """

    def __init__(self, device: torch.device | str = "cpu", synchronize: bool = True) -> None:
        self.device = torch.device(device)
        self.synchronize = synchronize and self.device.type == "cuda"
        self.ms: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block and add it to ``ms[name]``."""
        if self.synchronize:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronize:
                torch.cuda.synchronize(self.device)
            self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3


@contextmanager
def maybe_stage(timer: StageTimer | None, name: str) -> Iterator[None]:
    """``timer.stage(name)`` when a timer is given, else a no-op."""
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield
