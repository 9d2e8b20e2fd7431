"""Inspect an AQR-CMT checkpoint or convert it to safetensors.

    python -m aqr_ros.tools.checkpoint inspect PATH [--config NAME]
    python -m aqr_ros.tools.checkpoint export PATH OUT.safetensors [--config NAME]

``inspect`` prints the AQR variant, tensor and parameter counts per component and the classes; with
``--config`` it also checks that the checkpoint loads into that model (exit status 1 if not).
``export`` writes the tensors and meta to safetensors, checked against ``--config`` first when given,
and records the config name.
Bad input exits with status 2 and the reason on stderr. No pickled code is ever executed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Mapping, Sequence

from aqr_ros.model.checkpoint import (
    CheckpointError,
    adapt_state_dict,
    bind_config,
    carried_config,
    describe,
    export_safetensors,
    read_checkpoint,
)
from aqr_ros.model.config import ConfigError, load_config

#: config name → checkpoint key → tensor shape expected by that model.
ExpectedShapes = Callable[[str], Mapping[str, tuple[int, ...]]]


def model_expected_shapes(config: str) -> dict[str, tuple[int, ...]]:
    """Key → shape of the live model built (with random weights) for ``config``."""
    from aqr_ros.model.detector import AqrCmt

    return AqrCmt(load_config(config)).expected_shapes()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m aqr_ros.tools.checkpoint",
        description="Inspect AQR-CMT checkpoints (.pth/.pt of the original training, .safetensors) "
        "or export them to safetensors. Pickled code is never executed.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    inspect = sub.add_parser("inspect", help="print what a checkpoint is")
    inspect.add_argument("path", help="checkpoint file (.pth, .pt or .safetensors)")
    inspect.add_argument("--config", help="model config name or YAML path to check the checkpoint against")
    export = sub.add_parser("export", help="write the checkpoint as .safetensors")
    export.add_argument("path", help="checkpoint file (.pth, .pt or .safetensors)")
    export.add_argument("out", help="output file, ending in .safetensors")
    export.add_argument("--config", help="model config the checkpoint must match; recorded whole in the file, which then "
                        "decides the model it runs in")
    return parser


def main(argv: Sequence[str] | None = None, expected_shapes: ExpectedShapes = model_expected_shapes) -> int:
    """Run the tool and return its exit code.

    ``expected_shapes`` maps a ``--config`` value to the key → shape of that model (the live model by default).
    """
    args = _parser().parse_args(argv)
    try:
        raw = read_checkpoint(args.path)
        expected = expected_shapes(args.config) if args.config else None
        if args.command == "inspect":
            print(f"checkpoint:  {args.path}")
            summary = describe(raw, expected)
            print(summary.format())
            return 1 if summary.matches_expected is False else 0
        if expected is not None:
            adapt_state_dict(raw.state_dict, expected)
        carried, chosen = carried_config(raw, args.path), load_config(args.config) if args.config else None
        config = chosen if carried is None else bind_config(carried, chosen, args.path, carried.name)
        export_safetensors(raw, args.out, config)
        print(f"wrote {args.out} ({len(raw.state_dict)} tensors)")
        return 0
    except (CheckpointError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
