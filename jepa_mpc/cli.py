"""The ``jepa-mpc`` console script: one dispatcher over the sub-commands (each module exposes
``main(argv) -> int``): the applications of this package, and the training, conversion and
benchmark tools that live in the library packages that own them."""

from __future__ import annotations

import importlib
import sys

# command -> (module whose main(argv) runs it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "jepa_mpc.demo",
        "one reach episode in MuJoCo planned with the embedded sim-small model",
    ),
    "render": ("jepa_mpc.render", "render reset/goal/subgoal frames of a task to PNG files"),
    "bench": (
        "jepa_mpc.bench",
        "headless planning benchmark: tasks x planners x models, baselines",
    ),
    "bench-merge": ("jepa_mpc.bench_merge", "merge bench shards run on consecutive seed ranges"),
    "bench-env": ("jepa_mpc.bench_env", "env steps/s and renders/s per backend and image size"),
    "convert-checkpoint": (
        "world_model.convert",
        "official V-JEPA 2-AC .pt -> safetensors + config folder",
    ),
    "bench-model": ("world_model.bench", "time one predictor rollout (FLOPs, % of peak)"),
    "bench-planner": ("planner.bench", "per-action planning time and energy for each actor"),
    "collect": ("jepa_mpc.collect", "record expert and random-walk trajectories for training"),
    "train": (
        "world_model.train",
        "train the encoder, the predictor, the readout, or ('train policy') the proposal policy",
    ),
    "soak": ("jepa_mpc.soak", "long planning run in sim: resident memory growth and latency drift"),
    "presets": ("jepa_mpc.presets", "list the presets in configs/ (per group) and their keys"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: jepa-mpc <command> [args...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'jepa-mpc <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"jepa-mpc: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    name = COMMANDS[command][0]
    if command == "train" and rest[:1] == ["policy"]:  # the planner's proposal, not a model stage
        name, rest = "planner.policy_train", rest[1:]
    return int(importlib.import_module(name).main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
