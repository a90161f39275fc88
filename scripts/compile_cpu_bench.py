"""Does ``torch.compile`` pay for the ``fast`` planner's rollouts on this CPU?

Times, side by side in interleaved rounds, the two rollout calls one ``fast`` plan makes (20
and 13 sequences, horizon 1: ``configs/planner/fast.yaml``) with the predictor step eager and
compiled (``WorldModel.compile_rollout``: batches padded to powers of two), in bf16 autocast,
random weights of a preset (default ``small-residual``, sim-small's sizes). Prints one line and,
with ``--json``, writes the figures. Session 8's result is in docs/benchmark.md ("CPU hot path").

    python scripts/compile_cpu_bench.py --threads 1 --json compile_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import world_model
from world_model.files import write_json

BATCHES = (20, 13)  # fast: candidates + probes + first local samples, then one refinement


def build(preset: str, compiled: bool) -> world_model.WorldModel:
    """A random-weight model of ``preset`` in bf16 autocast, its rollout compiled or not."""
    model = world_model.build(preset, seed=0).eval()
    model.autocast_dtype = torch.bfloat16
    if compiled:
        model.compile_rollout()
    return model


@torch.no_grad()
def plan_rollouts(model: world_model.WorldModel, inputs: tuple) -> float:
    """Seconds for one plan's rollout calls."""
    latent, state, actions = inputs
    start = time.perf_counter()
    for batch in actions:
        model.rollout(latent, state, batch)
    return time.perf_counter() - start


def measure(preset: str, threads: int, rounds: int) -> dict[str, float]:
    """Build time of the compiled graphs and median eager / compiled seconds per plan (torch's
    thread count is restored after)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _measure(preset, threads, rounds)
    finally:
        torch.set_num_threads(previous)


def _measure(preset: str, threads: int, rounds: int) -> dict[str, float]:
    generator = torch.Generator().manual_seed(0)
    eager, compiled = build(preset, False), build(preset, True)
    shape = (1, eager.num_patches, eager.latent_dim)
    latent = torch.nn.functional.layer_norm(torch.randn(shape, generator=generator), shape[-1:])
    actions = [torch.randn(b, 1, 7, generator=generator) * 0.02 for b in BATCHES]
    inputs = (latent, torch.rand(1, 7, generator=generator), actions)
    build_s = plan_rollouts(compiled, inputs)  # the first calls compile
    plan_rollouts(eager, inputs)
    times: dict[str, list[float]] = {"eager": [], "compiled": []}
    for _ in range(rounds):
        times["eager"].append(plan_rollouts(eager, inputs))
        times["compiled"].append(plan_rollouts(compiled, inputs))
    eager_s, compiled_s = (statistics.median(times[k]) for k in ("eager", "compiled"))
    return {
        "preset": preset,
        "threads": threads,
        "rounds": rounds,
        "build_s": build_s,
        "eager_s": eager_s,
        "compiled_s": compiled_s,
        "ratio": compiled_s / eager_s,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; 2 on bad arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="small-residual", help="world model preset")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--rounds", type=int, default=12, help="interleaved timing rounds")
    parser.add_argument("--json", help="file to write the figures to")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.rounds < 1:
        print("compile_cpu_bench: --threads and --rounds must be >= 1")
        return 2
    row = measure(args.preset, args.threads, args.rounds)
    print(
        f"{row['preset']}, {row['threads']} thread(s): compile {row['build_s']:.1f} s; one plan's "
        f"rollouts eager {row['eager_s'] * 1000:.1f} ms, compiled {row['compiled_s'] * 1000:.1f} "
        f"ms ({row['ratio']:.2f}x)"
    )
    if args.json:
        write_json(Path(args.json), row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
