"""Per-stage timing: wall time on the CPU, the GPU's own time from CUDA events on a GPU; cancellation at stages."""

import threading
import time

import pytest
import torch

from aqr_ros.model.timing import FrameCancelled, StageTimer, maybe_stage
from conftest import TINY_CONFIG


def test_cpu_stages_accumulate_wall_time():
    timer = StageTimer("cpu", synchronize=False)
    for _ in range(2):
        with timer.stage("sleep"):
            time.sleep(0.01)
    with maybe_stage(timer, "noop"):
        pass
    with maybe_stage(None, "ignored"):
        pass
    assert set(timer.ms) == {"sleep", "noop"}
    assert 20.0 <= timer.ms["sleep"] < 200.0


def test_a_cancelled_timer_refuses_the_next_stage_of_a_forward_pass():
    from aqr_ros.model import AqrCmt, load_config

    cancel = threading.Event()
    timer = StageTimer("cpu", synchronize=False, cancel=cancel)
    with timer.stage("running"):
        cancel.set()  # the stage in progress completes
    with pytest.raises(FrameCancelled, match="before stage next"):
        with timer.stage("next"):
            pytest.fail("a cancelled stage ran")
    assert set(timer.ms) == {"running"}
    torch.manual_seed(0)
    model = AqrCmt(load_config(TINY_CONFIG)).eval()
    cfg = model.config
    with pytest.raises(FrameCancelled, match="before stage voxelize"):  # the forward pass's first stage
        model.infer(torch.zeros((1, cfg.lidar.num_point_features)),
                    torch.zeros((cfg.image.num_views, 3, *cfg.image.input_size)),
                    torch.eye(4).repeat(cfg.image.num_views, 1, 1), timer=StageTimer("cpu", cancel=cancel))


@pytest.mark.gpu
def test_cuda_events_time_the_work_not_the_launch():
    device = torch.device("cuda")
    a = torch.randn(4096, 4096, device=device)
    torch.cuda.synchronize()
    timer = StageTimer(device, synchronize=False)
    launch_start = time.perf_counter()
    with timer.stage("matmul"):
        for _ in range(20):
            a = a @ a / 4096.0
    launch_ms = (time.perf_counter() - launch_start) * 1e3
    gpu_ms = timer.ms["matmul"]  # waits for the end event
    torch.cuda.synchronize()
    assert gpu_ms > 0.0
    assert gpu_ms > launch_ms, "the event time must include the queued work, not only the launches"
