"""``jepa-mpc convert-checkpoint in.pt out_dir/``: official V-JEPA 2-AC checkpoint -> our folder
format (``model.safetensors`` + ``config.json``), checked by a strict load on the way."""

from __future__ import annotations

import sys

from world_model.checkpoint import load, save
from world_model.console import CommandLineParser
from world_model.errors import CheckpointError, CheckpointNotFoundError


def main(argv: list[str] | None = None) -> int:
    """Convert; returns 0 on success, 2 (one line on stderr) on a bad checkpoint or config."""
    parser = CommandLineParser(
        "jepa-mpc convert-checkpoint",
        description="Convert an official V-JEPA 2-AC .pt into model.safetensors + config.json.",
    )
    parser.add_argument("checkpoint", help="official .pt (or a converted folder)")
    parser.add_argument("out_dir", help="folder to write (written atomically)")
    parser.add_argument(
        "--config", default=None, help="model preset or YAML/JSON path (default: inferred)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace out_dir if it exists")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the sha256 check against the card/sidecar"
    )
    args = parser.parse_args(argv)
    try:
        model = load(args.checkpoint, config=args.config, verify=not args.no_verify)
        out = save(model, args.out_dir, overwrite=args.overwrite)
    except (CheckpointError, CheckpointNotFoundError, FileExistsError, ValueError) as error:
        print(f"jepa-mpc convert-checkpoint: error: {error}", file=sys.stderr)
        return 2
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {out} ({params / 1e6:.2f} M parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
