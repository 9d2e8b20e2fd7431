"""Optional per-stage timing of a forward pass, used by the benchmarks and the node's diagnostics; its stage
boundaries are also where a stopping node abandons a frame (:class:`FrameCancelled`)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from typing import Iterator

import torch


class FrameCancelled(Exception):
    """The timer's ``cancel`` event was set when a stage was about to start: the forward pass is abandoned there,
    so a node can stop within one stage instead of a whole frame (or leave torch running in a thread at exit)."""


class StageTimer:
    """Time per named stage, in milliseconds (:attr:`ms`).

    On the CPU a stage's time is its wall time. On CUDA the stage is bracketed by CUDA events recorded on the
    current stream, so the time is the GPU's own and the launches stay asynchronous (host timers around
    asynchronous launches measure the launch, not the work); :attr:`ms` waits for the last event.
    ``synchronize=True`` instead synchronizes the device around each stage and uses wall time, which
    attributes host and device time together (the benchmarks' per-stage breakdown). Once ``cancel`` is set,
    the next stage raises :class:`FrameCancelled` instead of starting.
    """

    def __init__(self, device: torch.device | str = "cpu", synchronize: bool = True,
                 cancel: threading.Event | None = None) -> None:
        self.device = torch.device(device)
        self.cancel = cancel
        self.synchronize = synchronize and self.device.type == "cuda"
        self._events = self.device.type == "cuda" and not self.synchronize
        self._wall_ms: dict[str, float] = {}
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the enclosed block and add it to ``ms[name]``; :class:`FrameCancelled` when cancelled before it."""
        if self.cancel is not None and self.cancel.is_set():
            raise FrameCancelled(f"cancelled before stage {name}")
        if self._events:
            start_event = torch.cuda.Event(enable_timing=True)
            end_event = torch.cuda.Event(enable_timing=True)
            start_event.record()
            try:
                yield
            finally:
                end_event.record()
                self._pending.append((name, start_event, end_event))
            return
        if self.synchronize:
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self.synchronize:
                torch.cuda.synchronize(self.device)
            self._wall_ms[name] = self._wall_ms.get(name, 0.0) + (time.perf_counter() - start) * 1e3

    @property
    def ms(self) -> dict[str, float]:
        """Milliseconds per stage; with CUDA events this waits until the last timed stage finished on the GPU."""
        if self._pending:
            self._pending[-1][2].synchronize()
            for name, start_event, end_event in self._pending:
                self._wall_ms[name] = self._wall_ms.get(name, 0.0) + start_event.elapsed_time(end_event)
            self._pending.clear()
        return dict(self._wall_ms)


@contextmanager
def maybe_stage(timer: StageTimer | None, name: str) -> Iterator[None]:
    """``timer.stage(name)`` when a timer is given, else a no-op."""
    if timer is None:
        yield
    else:
        with timer.stage(name):
            yield
