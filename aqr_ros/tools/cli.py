"""The command-line vocabulary the aqr_ros tools share: ``--device``, ``--precision`` and ``--help`` with defaults.

A device or precision the tools do not know is refused while the arguments are parsed, with the accepted values,
so a typo never reaches a model load. Only the standard library is imported up front (torch when a CUDA device
is checked), so tools that must start without torch (the GPU check) use it too.
"""

from __future__ import annotations

import argparse
import re

#: What ``--device`` accepts, as the error and the help say it.
DEVICE_VALUES = "auto, cpu, cuda, cuda:N"
#: What ``--precision`` accepts (fp16 runs under CUDA autocast).
PRECISIONS = ("fp32", "fp16")
#: The command that installs a CUDA build of torch into this project's environment.
CUDA_SETUP = "scripts/setup.sh --cuda"

_DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``--help`` with each option's default appended, except where it says nothing: no default (None or empty), an
    on/off flag, or a help text that already states the default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        flag = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.default in (None, "") or flag or "(default" in text:
            return text
        return super()._get_help_string(action)


def make_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """An ArgumentParser whose ``--help`` shows the defaults (:class:`HelpFormatter`)."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)


def cuda_problem(device: str) -> str | None:
    """Why ``device`` (``cuda`` or ``cuda:N``) cannot run here, or None when it can (and for non-CUDA devices)."""
    if not device.startswith("cuda"):
        return None
    import torch

    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            return (f"{device!r} requested but this torch ({torch.__version__}) is a CPU-only build without CUDA: "
                    f"install a CUDA build with `{CUDA_SETUP}`, or choose cpu (or auto)")
        return (f"{device!r} requested but this torch (CUDA {torch.version.cuda}) finds no usable GPU: check the "
                "NVIDIA driver (nvidia-smi), or choose cpu (or auto)")
    index = int(device.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        return f"{device!r} requested but torch sees {count} CUDA device(s): cuda:0 to cuda:{count - 1}"
    return None


def resolve_device(name: str) -> "torch.device":
    """``auto`` → CUDA when torch can use it, else the CPU; any other accepted value as it is."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def device_type(check_available: bool = True):
    """An argparse ``type`` for one device: one of :data:`DEVICE_VALUES`, and with ``check_available`` a CUDA
    device only where torch can use it (the error then names :data:`CUDA_SETUP`)."""

    def parse(text: str) -> str:
        value = text.strip().lower()
        if not _DEVICE.fullmatch(value):
            raise argparse.ArgumentTypeError(f"invalid device {text!r}: accepted {DEVICE_VALUES} (N a GPU index)")
        problem = cuda_problem(value) if check_available else None
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def device_list_type(check_available: bool = True):
    """An argparse ``type`` for a comma-separated list of devices, each checked as by :func:`device_type`."""
    one = device_type(check_available)

    def parse(text: str) -> list[str]:
        values = [one(item) for item in text.split(",") if item.strip()]
        if not values:
            raise argparse.ArgumentTypeError(f"no device given: accepted {DEVICE_VALUES}, comma-separated")
        return values

    return parse


def precision_list(text: str) -> list[str]:
    """An argparse ``type`` for a comma-separated list of precisions, each one of :data:`PRECISIONS`."""
    values = [item.strip().lower() for item in text.split(",") if item.strip()]
    unknown = [v for v in values if v not in PRECISIONS]
    if unknown or not values:
        raise argparse.ArgumentTypeError(f"invalid precision {', '.join(unknown) or repr(text)}: accepted "
                                         f"{', '.join(PRECISIONS)}, comma-separated")
    return values


def add_device_argument(parser: argparse.ArgumentParser, default: str = "auto", check_available: bool = True,
                        help: str = "where the model runs: auto is CUDA when available, else the CPU") -> None:
    """``--device`` (:func:`device_type`); the default is checked like a given value when it is parsed."""
    parser.add_argument("--device", type=device_type(check_available), default=default, metavar="DEVICE",
                        help=f"{help} ({DEVICE_VALUES})")


def add_precision_argument(parser: argparse.ArgumentParser, default: str = "fp32",
                           help: str = "fp16 runs under CUDA autocast") -> None:
    """``--precision``: one of :data:`PRECISIONS`, anything else refused with the accepted values."""
    parser.add_argument("--precision", type=str.lower, choices=PRECISIONS, default=default, help=help)
