"""The tools' shared argument vocabulary (aqr_ros.tools.cli), the checkpoint tool's messages on bad paths, and the
rig publisher's bounded render-ahead queue and progress line.

Every tool except the demo (tested elsewhere) is checked: ``--help`` shows each option's default, and an unknown
device or precision is refused while parsing, with the accepted values.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

from aqr_ros.tools import bench, bench_dds, bench_node, checkpoint, cli, evaluate_rig, gpu_check, train_rig
from aqr_ros.tools.synthetic_rig import CAMERA_NAMES, SyntheticRig

from conftest import REPO_ROOT

DOMAIN_ID = "140"


def _parse(args: list[str], **add) -> argparse.Namespace:
    parser = cli.make_parser("t", "test")
    cli.add_device_argument(parser, **add)
    cli.add_precision_argument(parser)
    return parser.parse_args(args)


def _refused(call, capsys) -> str:
    """stderr of an argparse refusal (exit status 2)."""
    with pytest.raises(SystemExit) as exc:
        call()
    assert exc.value.code == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------- the vocabulary


def test_device_and_precision_accept_the_documented_values():
    for value in ("auto", "cpu", "CPU", "cuda", "cuda:0", "cuda:12"):
        assert _parse(["--device", value], check_available=False).device == value.lower()
    args = _parse([])
    assert args.device == "auto" and args.precision == "fp32"
    assert _parse(["--precision", "fp16"]).precision == "fp16"


@pytest.mark.parametrize("value", ["gpu", "cuda:", "cuda:x", "cuda0", "mps", ""], ids=lambda v: f"device={v!r}")
def test_unknown_device_is_refused_with_the_accepted_values(value, capsys):
    err = _refused(lambda: _parse(["--device", value]), capsys)
    assert f"invalid device {value!r}" in err and "auto, cpu, cuda, cuda:N" in err


def test_unknown_precision_is_refused_with_the_accepted_values(capsys):
    err = _refused(lambda: _parse(["--precision", "fp8"]), capsys)
    assert "'fp8'" in err and "fp32" in err and "fp16" in err


def test_cuda_without_a_cuda_torch_names_the_setup_command(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    err = _refused(lambda: _parse(["--device", "cuda:1"]), capsys)
    assert "'cuda:1' requested" in err and "scripts/setup.sh --cuda" in err
    # a CUDA build that finds no GPU: the driver is the problem, not the build
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    err = _refused(lambda: _parse(["--device", "cuda"]), capsys)
    assert "finds no usable GPU" in err and "setup.sh" not in err
    assert _parse(["--device", "cuda"], check_available=False).device == "cuda"  # the GPU check reports it instead


def test_device_and_precision_lists():
    parse_devices = cli.device_list_type(check_available=False)
    assert parse_devices("cpu, cuda:1") == ["cpu", "cuda:1"]
    with pytest.raises(argparse.ArgumentTypeError, match="auto, cpu, cuda, cuda:N"):
        parse_devices("cpu,gpu")
    assert cli.precision_list("fp32,FP16") == ["fp32", "fp16"]
    with pytest.raises(argparse.ArgumentTypeError, match="fp8.*fp32, fp16"):
        cli.precision_list("fp32,fp8")


def test_resolve_device_maps_auto_to_what_torch_can_use():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert cli.resolve_device("auto").type == expected
    assert cli.resolve_device("cpu") == torch.device("cpu")


# ---------------------------------------------------------------- every tool


def _tool_parsers(monkeypatch) -> dict[str, argparse.ArgumentParser]:
    """Each tool's parser (subcommands included), captured from the tool's own ``--help`` path."""
    made: list[argparse.ArgumentParser] = []

    def recording(prog: str, description: str) -> argparse.ArgumentParser:
        made.append(cli.make_parser(prog, description))
        return made[-1]

    runs = {"bench": lambda: bench.main(["model", "--help"]), "bench node": lambda: bench_node.main(["--help"]),
            "bench dds": lambda: bench_dds.main(["--help"]), "train_rig": lambda: train_rig.main(["--help"]),
            "evaluate_rig": lambda: evaluate_rig.main(["--help"]), "gpu_check": lambda: gpu_check.parse_args(["-h"]),
            "checkpoint": lambda: checkpoint.main(["--help"])}
    modules = {"bench": bench, "bench node": bench_node, "bench dds": bench_dds, "train_rig": train_rig,
               "evaluate_rig": evaluate_rig, "gpu_check": gpu_check, "checkpoint": checkpoint}
    parsers = {}
    for name, run in runs.items():
        module = modules[name]
        monkeypatch.setattr(module, "make_parser", recording)
        with pytest.raises(SystemExit) as exc:
            run()
        assert exc.value.code == 0, name
        parsers[name] = made[-1]
        for action in made[-1]._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.update({f"{name} {sub}": p for sub, p in action.choices.items()})
    return parsers


def _assert_help_shows_defaults(name: str, parser: argparse.ArgumentParser) -> None:
    """Each option of ``parser`` has help text, and ``--help`` shows its default where it has a meaningful one."""
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), name
    text = "".join(parser.format_help().split())  # line wrapping removed
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS or action.dest == "help":
            continue
        assert action.help, f"{name} {action.option_strings[0]}: no help text"
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.default in (None, "") or flag or "(default" in action.help:
            continue
        shown = "".join(f"(default: {action.default})".split())
        assert shown in text, f"{name} {action.option_strings[0]}: default {action.default!r} not in --help"


def test_every_tool_help_shows_each_option_with_its_default(monkeypatch, capsys):
    parsers = _tool_parsers(monkeypatch)
    assert {"bench model", "bench aqr", "checkpoint export", "checkpoint inspect"} <= set(parsers)
    for name, parser in parsers.items():
        _assert_help_shows_defaults(name, parser)
    help_text = " ".join(parsers["bench node"].format_help().split())
    assert "(default: auto)" in help_text and "(default: fp32)" in help_text and "(default: 10.0)" in help_text


@pytest.mark.parametrize("call", [
    lambda: bench_node.main(["--device", "gpu"]),
    lambda: bench_node.main(["--precision", "fp8"]),
    lambda: bench.main(["model", "--devices", "cpu,gpu"]),
    lambda: bench.main(["model", "--precisions", "fp8"]),
    lambda: bench.main(["aqr", "--devices", "tpu"]),
    lambda: train_rig.main(["--out", "x.safetensors", "--device", "gpu"]),
    lambda: evaluate_rig.main(["--device", "gpu"]),
    lambda: gpu_check.parse_args(["--device", "gpu"]),
], ids=["bench node device", "bench node precision", "bench model devices", "bench model precisions",
        "bench aqr devices", "train_rig", "evaluate_rig", "gpu_check"])
def test_tools_refuse_unknown_devices_and_precisions_at_parse_time(call, capsys):
    err = _refused(call, capsys)
    assert "auto, cpu, cuda, cuda:N" in err or "fp32, fp16" in err or "'fp32', 'fp16'" in err, err


def test_tools_refuse_cuda_where_torch_has_none(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    for call in (lambda: bench_node.main(["--device", "cuda"]), lambda: bench.main(["model", "--devices", "cpu,cuda"]),
                 lambda: evaluate_rig.main(["--device", "cuda:0"])):
        assert "scripts/setup.sh --cuda" in _refused(call, capsys)
    assert gpu_check.parse_args(["--device", "cuda"]).device == "cuda"  # reported in gpu_check.json instead


# ---------------------------------------------------------------- the checkpoint tool


def _checkpoint_tool(*args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-m", "aqr_ros.tools.checkpoint", *args], capture_output=True, text=True,
                          timeout=120, cwd=REPO_ROOT)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def test_checkpoint_tool_says_what_is_wrong_with_the_input(tmp_path):
    folder = tmp_path / "weights.pth"
    folder.mkdir()
    code, text = _checkpoint_tool("inspect", str(folder))
    assert code == 2 and f"{folder}: is a directory" in text and "not found" not in text
    code, text = _checkpoint_tool("inspect", str(tmp_path / "missing.pth"))
    assert code == 2 and f"checkpoint file not found: {tmp_path / 'missing.pth'}" in text
    for name, content in (("notes.pth", b"hello, not a checkpoint\n"), ("noise.safetensors", bytes(range(64))),
                          ("broken.pth", b"PK\x03\x04not really a zip")):
        path = tmp_path / name
        path.write_bytes(content)
        code, text = _checkpoint_tool("inspect", str(path))
        assert code == 2 and str(path) in text, text
        assert "Accepted: .safetensors written by aqr_ros" in text and "mmdet3d" in text, text
    renamed = tmp_path / "exported.pth"
    save_file({"w": torch.zeros(2)}, str(renamed))
    code, text = _checkpoint_tool("inspect", str(renamed))
    assert code == 2 and "content is a safetensors checkpoint: rename it to end in .safetensors" in text


def test_checkpoint_export_creates_a_missing_folder_and_refuses_unusable_outputs(tmp_path):
    source = tmp_path / "small.safetensors"
    save_file({"layer.weight": torch.arange(6.0).reshape(2, 3)}, str(source))
    out = tmp_path / "new" / "deeper" / "out.safetensors"
    code, text = _checkpoint_tool("export", str(source), str(out))
    assert code == 0 and f"created folder {out.parent}" in text and out.is_file(), text
    code, text = _checkpoint_tool("export", str(source), str(tmp_path / "small.safetensors" / "x.safetensors"))
    assert code == 2 and "is a file, not a folder" in text
    code, text = _checkpoint_tool("export", str(source), str(tmp_path / "new"))
    assert code == 2 and "must end in .safetensors" in text
    (tmp_path / "dir.safetensors").mkdir()
    code, text = _checkpoint_tool("export", str(source), str(tmp_path / "dir.safetensors"))
    assert code == 2 and "is a directory" in text


# ---------------------------------------------------------------- the rig publisher


@pytest.fixture
def rig_publisher():
    """aqr_ros.tools.rig_publisher (it imports rclpy and the message packages)."""
    from aqr_ros.tools import rig_publisher

    return rig_publisher


@pytest.mark.ros
def test_rig_publisher_help_shows_defaults(rig_publisher):
    _assert_help_shows_defaults("rig_publisher", rig_publisher.build_parser())


@pytest.mark.ros
def test_prebuffer_is_bounded_by_default_and_all_renders_everything(rig_publisher, capsys):
    parser = rig_publisher.build_parser()
    assert parser.parse_args([]).prebuffer == rig_publisher.DEFAULT_PREBUFFER_S
    assert parser.parse_args(["--prebuffer", "all"]).prebuffer is None
    assert "positive seconds, or 'all'" in _refused(lambda: parser.parse_args(["--prebuffer", "0"]), capsys)
    rig = SyntheticRig(seed=0)
    all_cameras = tuple(range(len(CAMERA_NAMES)))
    one_second = rig_publisher.events_ahead(rig, 100, all_cameras, 1.0)
    assert one_second == 20 + 6 * 12  # 20 clouds and 12 images per camera in the first second, not 100 frames' worth
    assert rig_publisher.events_ahead(rig, 100, all_cameras[1:], 1.0) == 20 + 5 * 12
    assert rig_publisher.events_ahead(rig, 100, all_cameras, None) == 0  # unbounded: the whole sequence first


@pytest.mark.ros
def test_renderer_stops_at_the_queue_bound_until_events_are_taken(rig_publisher):
    import queue

    rendered = []

    def frames(count, cameras):
        for i in range(count):
            rendered.append(i)
            yield i

    node = SimpleNamespace(options=SimpleNamespace(frames=12), cameras=(),
                           rig=SimpleNamespace(frames=frames),
                           render=lambda i: rig_publisher._Ready(i * 0.05, [], [], True))
    progress = rig_publisher.Progress(12, 1.0, lambda line: None)
    ready: queue.Queue = queue.Queue(maxsize=3)
    stop = threading.Event()
    worker = threading.Thread(target=rig_publisher._renderer, args=(node, ready, stop, progress), daemon=True)
    worker.start()
    time.sleep(0.3)
    assert len(rendered) <= 4 and ready.qsize() == 3  # three queued, at most one waiting to be put
    taken = [ready.get(timeout=5) for _ in range(13)]
    assert [r.t for r in taken[:-1]] == pytest.approx([i * 0.05 for i in range(12)]) and taken[-1] is None
    assert progress.rendered == 12 and progress.rendered_at is not None  # the render rate stops at the end
    worker.join(timeout=5)


@pytest.mark.ros
def test_progress_line_counts_frames_and_rates(rig_publisher):
    lines: list[str] = []
    progress = rig_publisher.Progress(100, 0.5, lines.append)
    progress.rendered = 30
    assert "rendered 30/100 LiDAR frames" in progress.line(progress.started + 3.0)
    assert "publishing starts when the prebuffer is full" in progress.line(progress.started + 3.0)
    progress.publishing_since, progress.published = progress.started + 1.0, 20
    line = progress.line(progress.started + 3.0)
    assert "(10.0/s)" in line and "published 20/100 (10.0/s, 0.50x real time; asked for 0.5x)" in line
    progress.tick()
    assert lines == []  # not due yet
    progress._next = 0.0
    progress.tick()
    assert len(lines) == 1 and lines[0].startswith("rendered 30/100")


@pytest.mark.ros
def test_rig_publisher_reports_progress(ros_env):
    env = dict(ros_env, ROS_DOMAIN_ID=DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-m", "aqr_ros.tools.rig_publisher", "--frames", "3", "--no-noise",
                           "--linger", "0"], env=env, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "rendered 3/3 LiDAR frames" in text and "published 3/3" in text, text
