"""Inspect an AQR-CMT checkpoint or convert it to safetensors.

    python -m aqr_ros.tools.checkpoint inspect PATH [--config NAME]
    python -m aqr_ros.tools.checkpoint export PATH OUT.safetensors [--config NAME]

``inspect`` prints the AQR variant, tensor and parameter counts per component and the classes; with
``--config`` it also checks that the checkpoint loads into that model (exit status 1 if not).
``export`` writes the tensors and meta to safetensors, checked against ``--config`` first when given,
and records the config name.
Bad input (a missing file, a directory, a file that is no checkpoint, an unusable output path) exits with status 2
and the reason on stderr; a missing output folder is created. No pickled code is ever executed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from safetensors import SafetensorError

from aqr_ros.model.checkpoint import (
    PICKLE_SUFFIXES,
    SAFETENSORS_SUFFIX,
    CheckpointError,
    RawCheckpoint,
    adapt_state_dict,
    bind_config,
    carried_config,
    describe,
    export_safetensors,
    read_checkpoint,
)
from aqr_ros.model.config import ConfigError, load_config
from aqr_ros.tools.cli import HelpFormatter, make_parser

#: config name → checkpoint key → tensor shape expected by that model.
ExpectedShapes = Callable[[str], Mapping[str, tuple[int, ...]]]


def model_expected_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of the live model built (with random weights) for ``config``."""
    from aqr_ros.model.detector import AqrCmt

    return AqrCmt(load_config(config)).expected_shapes()


#: The formats the tool reads, as its messages name them.
ACCEPTED_FORMATS = (".safetensors written by aqr_ros (checkpoint export, train_rig) or the .pth/.pt of the original "
                    "mmdet3d training ({'meta', 'state_dict'} or a bare state dict)")
#: First bytes of a torch.save zip archive and of a pickle (protocol 2 or later, torch's legacy format).
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80


class UsageError(ValueError):
    """A path given to the tool that cannot be used; the message names it and says why."""


def sniff_format(path: Path) -> str | None:
    """``"pth"`` or ``"safetensors"`` from a file's first bytes, or None when it is neither."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head.startswith(_ZIP_MAGIC) or head[:1] == bytes([_PICKLE_PROTO]):
        return "pth"
    if len(head) == 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    return None


def check_input(path: str) -> None:
    """Refuse, naming the path, a missing file, a directory, and a file whose content is not a checkpoint format."""
    given = Path(path)
    if given.is_dir():
        raise UsageError(f"{path}: is a directory, not a checkpoint file (give the .safetensors or .pth file in it)")
    if not given.exists():
        raise UsageError(f"checkpoint file not found: {path}")
    try:
        found = sniff_format(given)
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    suffix = given.suffix.lower()
    if found is None:
        raise UsageError(f"{path}: not a checkpoint: its content is neither a PyTorch file (zip or pickle) nor "
                         f"safetensors. Accepted: {ACCEPTED_FORMATS}")
    expected = "safetensors" if suffix == SAFETENSORS_SUFFIX else "pth" if suffix in PICKLE_SUFFIXES else None
    if expected is not None and found != expected:
        right = SAFETENSORS_SUFFIX if found == "safetensors" else PICKLE_SUFFIXES[0]
        raise UsageError(f"{path}: named {suffix} but its content is a {found} checkpoint: rename it to end in "
                         f"{right}")


def prepare_output(path: str) -> Path:
    """The export target: a ``.safetensors`` name that is not a directory; its folder is created when missing
    (and said so)."""
    out = Path(path)
    if out.suffix != SAFETENSORS_SUFFIX:
        raise UsageError(f"{path}: the output file name must end in {SAFETENSORS_SUFFIX}")
    if out.is_dir():
        raise UsageError(f"{path}: is a directory; give the output file name, e.g. {out / 'model.safetensors'}")
    folder = out.parent
    if not folder.is_dir():
        if folder.exists():
            raise UsageError(f"{path}: {folder} is a file, not a folder")
        try:
            folder.mkdir(parents=True)
        except OSError as exc:
            raise UsageError(f"{path}: cannot create the folder {folder}: {exc.strerror or exc}") from None
        print(f"created folder {folder}")
    return out


def _read(path: str) -> RawCheckpoint:
    """:func:`read_checkpoint`, with the accepted formats added where the file's content could not be read."""
    try:
        return read_checkpoint(path)
    except CheckpointError as exc:
        if not str(exc).startswith(f"{path}: not a readable"):
            raise
        raise CheckpointError(f"{str(exc).rstrip('.')}. Accepted: {ACCEPTED_FORMATS}") from None


def _parser() -> argparse.ArgumentParser:
    parser = make_parser("python -m aqr_ros.tools.checkpoint",
                         "Inspect AQR-CMT checkpoints (.pth/.pt of the original training, .safetensors) or export "
                         "them to safetensors. Pickled code is never executed.")
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="print what a checkpoint is", formatter_class=HelpFormatter)
    inspect.add_argument("path", help="checkpoint file (.pth, .pt or .safetensors)")
    inspect.add_argument("--config", help="model config name or YAML path to check the checkpoint against")
    export = sub.add_parser("export", help="write the checkpoint as .safetensors", formatter_class=HelpFormatter)
    export.add_argument("path", help="checkpoint file (.pth, .pt or .safetensors)")
    export.add_argument("out", help="output file, ending in .safetensors (a missing folder is created)")
    export.add_argument("--config", help="model config the checkpoint must match; recorded whole in the file, which then "
                        "decides the model it runs in")
    return parser


def main(argv: Sequence[str] | None = None, expected_shapes: ExpectedShapes = model_expected_shapes) -> int:
    """Run the tool and return its exit code: 0 done, 1 the checkpoint does not fit ``--config``, 2 bad input.

    ``expected_shapes`` maps a ``--config`` value to the key → shape of that model (the live model by default).
    """
    args = _parser().parse_args(argv)
    out: Path | None = None
    try:
        check_input(args.path)
        out = prepare_output(args.out) if args.command == "export" else None
        raw = _read(args.path)
        expected = expected_shapes(args.config) if args.config else None
        if out is None:
            print(f"checkpoint:  {args.path}")
            summary = describe(raw, expected)
            print(summary.format())
            return 1 if summary.matches_expected is False else 0
        if expected is not None:
            adapt_state_dict(raw.state_dict, expected)
        carried, chosen = carried_config(raw, args.path), load_config(args.config) if args.config else None
        config = chosen if carried is None else bind_config(carried, chosen, args.path, carried.name)
        export_safetensors(raw, out, config)
        print(f"wrote {out} ({len(raw.state_dict)} tensors)")
        return 0
    except (UsageError, CheckpointError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, SafetensorError) as exc:
        print(f"error: {args.out if out is not None else args.path}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
