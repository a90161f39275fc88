"""``jepa-mpc demo``: one MuJoCo ``reach`` episode planned with a latent world model.

Runs on a CPU-only machine in a few minutes with the embedded ``sim-small`` model and a
CPU-sized iCEM planner; prints per-step energy, distance and planning time and writes, into
``--out`` (default ``demo_out/``): ``episode.gif`` (each camera frame beside the goal image),
``energy_distance.png`` (energy and distance over the steps) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from planner import Planner
from planner.planner import resolve_device
from world_model import resolve_model
from world_model.files import atomic_write, pyplot, save_figure, write_json

# Defaults that keep one plan to about a second on 2 CPU cores with ``sim-small``.
CPU_PLANNER = "icem"
CPU_OVERRIDES = ["actor.samples=64", "actor.iterations=6", "actor.elites=6"]
TRAIN_HINT = (
    "the embedded model is trained by the recipe in docs/sim_small.md (jepa-mpc collect, then "
    "jepa-mpc train predictor --config predictor_sim_small ...); or pass --model PATH"
)


class DemoError(ValueError):
    """A bad demo argument (the message says which and why)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the command line; raises DemoError on bad values."""
    parser = argparse.ArgumentParser(prog="jepa-mpc demo", description=__doc__)
    parser.add_argument("--model", default="sim-small", help="bundled name, checkpoint path, ...")
    parser.add_argument("--planner", default=CPU_PLANNER, help="configs/planner preset or YAML")
    parser.add_argument(
        "--override",
        action="append",
        default=None,
        help="planner key=value override (repeatable); default: a CPU-sized iCEM",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode and planner seed")
    parser.add_argument("--steps", type=int, default=None, help="control steps (default: task)")
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--fps", type=float, default=4.0, help="GIF frames per second")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the model's sha256 check (docs/security.md)"
    )
    args = parser.parse_args(argv)
    if args.steps is not None and not 1 <= args.steps <= 200:
        raise DemoError(f"--steps must be between 1 and 200, got {args.steps}")
    if args.seed < 0:
        raise DemoError(f"--seed must be >= 0, got {args.seed}")
    if args.fps <= 0:
        raise DemoError(f"--fps must be positive, got {args.fps}")
    if args.override is None:
        args.override = list(CPU_OVERRIDES) if args.planner == CPU_PLANNER else []
    return args


def load_model(spec: str, device: str | torch.device, verify: bool = True):
    """``world_model.resolve_model`` with an error that says how to get the model when it is
    missing, or that it is not an image model."""
    try:
        model = resolve_model(spec, device, verify=verify)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"world model {spec!r} not found ({error}); {TRAIN_HINT}") from None
    if getattr(model, "config", None) is None:  # the ground-truth-state model sees no pixels
        raise DemoError(
            "the demo plans from camera images: give an image world model (sim-small, "
            f"random:<preset>, a checkpoint path), not {spec!r}"
        )
    return model


def run_episode(model, planner, seed: int, steps: int | None, log=print) -> dict:
    """Plan and execute one reach episode; returns per-step records and the frames.

    Returns:
        {"frames": [T+1] uint8 [H, W, 3], "goal": uint8 [H, W, 3], "energy": [T+1] current
        L1 energy to the goal latent, "distance": [T+1] metres, "plan_seconds": [T],
        "predicted_energy": [T], "actions": [T, 7], "success": bool}
    """
    import sim

    env = sim.make("reach", image_size=model.config.img_size, seed=seed)
    try:
        obs, info = env.reset(seed=seed)
        goal = env.unwrapped.goal()
        planner.reset(seed)
        steps = steps or env.unwrapped.episode_length
        record = {"frames": [obs["image"]], "goal": goal["image"], "distance": [info["distance"]]}
        record.update(energy=[], plan_seconds=[], predicted_energy=[], actions=[])
        for step in range(steps):
            record["energy"].append(current_energy(model, planner, obs, goal))
            plan = planner.plan(obs, goal)
            obs, _, _, _, info = env.step(plan.action)
            record["frames"].append(obs["image"])
            record["distance"].append(info["distance"])
            record["plan_seconds"].append(plan.timings["total"])
            record["predicted_energy"].append(plan.energy)
            record["actions"].append(plan.action.tolist())
            log(
                f"step {step + 1:3d}/{steps}  energy {record['energy'][-1]:.4f}  "
                f"predicted {plan.energy:.4f}  distance {info['distance']:.3f} m  "
                f"plan {plan.timings['total']:.2f} s"
            )
        record["energy"].append(current_energy(model, planner, obs, goal))
        record["success"] = bool(info["success"])
    finally:
        env.close()
    return record


def current_energy(model, planner, obs: dict, goal: dict) -> float:
    """Mean |encode(obs) - encode(goal)| (the paper's energy at horizon 0)."""
    latent = model.encode(obs["image"], None)  # [1, N, D]
    goal_latent = planner.goal_latent(goal["image"])  # [1, N, D], cached
    return float((latent - goal_latent).abs().mean())


def write_gif(path: Path, frames: list[np.ndarray], goal: np.ndarray, fps: float) -> None:
    """Write frames [H, W, 3] side by side with ``goal`` as an animated GIF, atomically."""
    import imageio.v2 as imageio

    gap = np.full((goal.shape[0], 4, 3), 255, np.uint8)
    pairs = [np.concatenate((frame, gap, goal), axis=1) for frame in frames]
    atomic_write(
        path,
        lambda temp: imageio.mimwrite(temp, pairs, format="gif", duration=1000.0 / fps, loop=0),
    )


def write_plot(path: Path, energy: list[float], distance: list[float], threshold: float) -> None:
    """PNG of energy (left axis) and TCP-to-goal distance (right axis) over steps, atomically."""
    figure, left = pyplot().subplots(figsize=(6, 3.5))
    steps = np.arange(len(energy))
    left.plot(steps, energy, "o-", color="tab:blue", label="energy")
    left.set_xlabel("control step")
    left.set_ylabel("L1 energy to goal", color="tab:blue")
    right = left.twinx()
    right.plot(steps, distance, "s-", color="tab:red", label="distance")
    right.axhline(threshold, color="tab:red", linestyle=":", linewidth=1)
    right.set_ylabel("distance to goal (m)", color="tab:red")
    figure.tight_layout()
    save_figure(figure, path, dpi=100)


def write_outputs(out: Path, record: dict, args: argparse.Namespace) -> dict:
    """GIF, plot and summary.json into ``out``; returns the summary."""
    from sim.tasks import make_task

    out.mkdir(parents=True, exist_ok=True)
    threshold = make_task("reach").config.success_threshold
    write_gif(out / "episode.gif", record["frames"], record["goal"], args.fps)
    write_plot(out / "energy_distance.png", record["energy"], record["distance"], threshold)
    seconds = record["plan_seconds"]
    summary = {
        "model": args.model,
        "planner": args.planner,
        "overrides": args.override,
        "seed": args.seed,
        "steps": len(seconds),
        "success": record["success"],
        "final_distance": record["distance"][-1],
        "plan_seconds_median": float(np.median(seconds)),
        **{key: record[key] for key in ("energy", "distance", "predicted_energy", "actions")},
        "plan_seconds": seconds,
    }
    write_json(out / "summary.json", summary, indent=1)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc demo``; 0 on success, 2 on bad arguments or a missing model."""
    try:
        args = parse_args(argv)
        began = time.perf_counter()
        model = load_model(args.model, resolve_device(args.device), verify=not args.no_verify)
        planner = Planner.from_config(args.planner, model, args.device, args.override)
        print(f"[demo] model {args.model}, planner {args.planner} {' '.join(args.override)}")
        record = run_episode(model, planner, args.seed, args.steps)
        summary = write_outputs(Path(args.out), record, args)
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc demo: error: {error}", file=sys.stderr)
        return 2
    print(
        f"[demo] success {summary['success']}  final distance {summary['final_distance']:.3f} m  "
        f"median plan {summary['plan_seconds_median']:.2f} s  "
        f"wall {time.perf_counter() - began:.0f} s  wrote {args.out}/episode.gif, "
        f"energy_distance.png, summary.json"
    )
    return 0
