"""The benchmark tools run end to end (the demo's tests are in test_demo.py).

The benchmarks use the reduced test configuration, so the suite stays fast; what is checked is that each tool
produces its promised output, not any timing.
"""

from __future__ import annotations

import pytest

from aqr_ros.tools import bench

from conftest import TINY_CONFIG, ros_domain



def test_model_benchmark_prints_every_stage(capsys):
    assert bench.main(["model", "--config", str(TINY_CONFIG), "--devices", "cpu", "--precisions", "fp32",
                       "--iters", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    for stage in ("voxelize", "sparse_encoder", "bev_2d", "image_backbone_neck", "aqr", "decoder", "decode"):
        assert f"   {stage} " in text, stage
    assert "forward" in text and "peak memory" in text


def test_aqr_benchmark_compares_gathered_and_dense(capsys):
    assert bench.main(["aqr", "--config", str(TINY_CONFIG), "--devices", "cpu", "--queries", "100,180",
                       "--iters", "1", "--warmup", "0"]) == 0
    text = capsys.readouterr().out
    assert "-- 100 queries: AQR total" in text and "-- 180 queries" in text
    assert "gathered" in text and "dense mask" in text


@pytest.mark.ros
def test_dds_benchmark_counts_large_messages_between_two_processes(spawn_python, ros_env):
    proc = spawn_python(["-m", "aqr_ros.tools.bench", "dds", "--sizes-mb", "6", "--count", "3", "--hz", "5",
                         "--domain-id", str(ros_domain(__name__))], env=ros_env)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, text
    assert "config/fastdds_large_data.xml" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("6.0")]
    assert rows == [["6.0", "3", "of", "3", "3", "of", "3"]], text  # a 6 MB cloud and image, each delivered
