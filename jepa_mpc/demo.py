"""``jepa-mpc demo``: one MuJoCo ``reach`` episode planned with a latent world model.

Runs on a CPU-only machine in under a minute with the embedded ``sim-small`` model and the
``fast`` planner (its policy proposes, a small iCEM search refines: ~0.08 s per action on 2
idle cores); other models get a CPU-sized iCEM search (on a GPU the full ``icem`` preset), as
``fast``'s policy belongs to ``sim-small``. Shows a progress bar and a line per
step (energy, distance, planning time) and writes, into ``--out`` (default ``demo_out/``):
``episode.gif`` (per step: the camera frame with the reach target marked by a green ring, a
view from above with the target as a green sphere, and the goal image; panels labelled),
``energy_distance.png`` (energy and distance to the target over the steps, with the success
threshold) and ``summary.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from jepa_mpc.demo_media import above_view, write_gif, write_plot
from planner import Planner
from planner.config import FALLBACK_PRESET, default_preset
from world_model import resolve_model
from world_model.console import CommandLineParser, device_option, progress_bar
from world_model.files import write_json

# Without --planner: ``planner.config.default_preset`` (fast for sim-small, else icem); icem on
# the CPU gets overrides that keep one plan to about a second on 2 cores.
CPU_PLANNER = FALLBACK_PRESET
CPU_OVERRIDES = ["actor.samples=64", "actor.iterations=6", "actor.elites=6"]
TRAIN_HINT = (
    "the embedded model is trained by the recipe in docs/sim_small.md (jepa-mpc collect, then "
    "jepa-mpc train predictor --config predictor_sim_small ...); or pass --model PATH"
)


class DemoError(ValueError):
    """A bad demo argument (the message says which and why)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse and check the command line; raises DemoError on bad values."""
    parser = CommandLineParser("jepa-mpc demo", description=__doc__)
    parser.add_argument(
        "--model", default="sim-small", help="bundled name, checkpoint path or random:<preset>"
    )
    parser.add_argument(
        "--planner",
        default=None,
        help="configs/planner preset or YAML (default: fast for a model that ships a proposal "
        "policy, such as sim-small; else icem)",
    )
    parser.add_argument(
        "--override",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="planner override, repeatable (default on the CPU with icem: "
        f"{' '.join(CPU_OVERRIDES)}; on a GPU: none)",
    )
    parser.add_argument("--seed", type=int, default=0, help="episode and planner seed")
    parser.add_argument(
        "--steps", type=int, default=None, help="control steps (default: the task's, 20)"
    )
    parser.add_argument("--out", default="demo_out", help="output folder")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--fps", type=float, default=4.0, help="GIF frames per second")
    parser.add_argument(
        "--no-verify", action="store_true", help="skip the model's sha256 check (docs/security.md)"
    )
    args = parser.parse_args(argv)
    if args.planner is None:
        args.planner = default_preset(args.model)
    if args.steps is not None and not 1 <= args.steps <= 200:
        raise DemoError(f"--steps must be between 1 and 200, got {args.steps}")
    if args.seed < 0:
        raise DemoError(f"--seed must be >= 0, got {args.seed}")
    if args.fps <= 0:
        raise DemoError(f"--fps must be positive, got {args.fps}")
    return args


def planner_overrides(args: argparse.Namespace, device: torch.device) -> list[str]:
    """The overrides asked for, else the CPU sizing of the default planner on a CPU."""
    if args.override is not None:
        return args.override
    return list(CPU_OVERRIDES) if args.planner == CPU_PLANNER and device.type == "cpu" else []


def check_out(out: Path) -> Path:
    """Make the output folder and try a file in it, before any planning.

    Raises:
        DemoError: it cannot be made or written ("--out /proc/nope: cannot write there: ...").
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise DemoError(f"--out {out}: cannot write there ({reason})") from None
    return out


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


def run_episode(model, planner, seed: int, steps: int | None) -> dict:
    """Plan and execute one reach episode (a progress bar on stderr, a line per step on
    stdout); returns per-step records and the frames.

    Returns:
        {"frames": [T+1] uint8 [H, W, 3], "goal": uint8 [H, W, 3], "goal_position": [3]
        metres, "above": [T+1] uint8 views from above with the target (empty if not MuJoCo),
        "energy": [T+1] current L1 energy to the goal latent, "distance": [T+1] metres,
        "plan_seconds": [T], "predicted_energy": [T], "actions": [T, 7], "success": bool}
    """
    import sim
    from sim.scene import cameras_for_views

    cameras = cameras_for_views(model.config.views)
    env = sim.make("reach", image_size=model.config.img_size, seed=seed, cameras=cameras)
    view = None
    try:
        obs, info = env.reset(seed=seed)
        goal = env.unwrapped.goal()
        planner.reset(seed)
        steps = steps or env.unwrapped.episode_length
        record = {"frames": [obs["image"]], "goal": goal["image"], "distance": [info["distance"]]}
        record.update(goal_position=goal["state"][:3].tolist())
        record.update(energy=[], plan_seconds=[], predicted_energy=[], actions=[])
        view = above_view(env, goal["state"][:3])
        record["above"] = [] if view is None else [view.render()]
        with progress_bar(steps, "demo reach", "step") as bar:
            for step in range(steps):
                record["energy"].append(current_energy(model, planner, obs, goal))
                plan = planner.plan(obs, goal)
                obs, _, _, _, info = env.step(plan.action)
                record["frames"].append(obs["image"])
                record["distance"].append(info["distance"])
                record["plan_seconds"].append(plan.timings["total"])
                record["predicted_energy"].append(plan.energy)
                record["actions"].append(plan.action.tolist())
                if view is not None:
                    record["above"].append(view.render())
                bar.write(
                    f"step {step + 1:3d}/{steps}  energy {record['energy'][-1]:.4f}  "
                    f"predicted {plan.energy:.4f}  distance {info['distance']:.3f} m  "
                    f"plan {plan.timings['total']:.2f} s",
                    file=sys.stdout,
                )
                bar.update(1)
        record["energy"].append(current_energy(model, planner, obs, goal))
        record["success"] = bool(info["success"])
    finally:
        if view is not None:
            view.close()
        env.close()
    return record


def current_energy(model, planner, obs: dict, goal: dict) -> float:
    """Mean |encode(obs) - encode(goal)| (the paper's energy at horizon 0)."""
    latent = model.encode(obs["image"], None)  # [1, N, D]
    goal_latent = planner.goal_latent(goal["image"])  # [1, N, D], cached
    return float((latent - goal_latent).abs().mean())


def captions(distances: list[float]) -> list[str]:
    """The camera panel's caption per frame: step and distance to the target."""
    last = len(distances) - 1
    return [
        f"camera  step {step}/{last}  {100 * distance:.1f} cm to target"
        for step, distance in enumerate(distances)
    ]


def write_outputs(out: Path, record: dict, args: argparse.Namespace) -> dict:
    """GIF, plot and summary.json into ``out``; returns the summary."""
    from sim.tasks import make_task

    threshold = make_task("reach").config.success_threshold
    write_gif(
        out / "episode.gif",
        record["frames"],
        record["goal"],
        np.asarray(record["goal_position"]),
        captions(record["distance"]),
        args.fps,
        record["above"],
    )
    outcome = "reached" if record["success"] else "missed"
    title = (
        f"reach, seed {args.seed}: {args.model} + {args.planner} ({outcome}, final distance "
        f"{100 * record['distance'][-1]:.1f} cm)"
    )
    plot = out / "energy_distance.png"
    write_plot(plot, record["energy"], record["distance"], threshold, title)
    seconds = record["plan_seconds"]
    summary = {
        "model": args.model,
        "planner": args.planner,
        "overrides": args.override,
        "device": args.device,
        "seed": args.seed,
        "steps": len(seconds),
        "success": record["success"],
        "final_distance": record["distance"][-1],
        "goal_position": record["goal_position"],
        "plan_seconds_median": float(np.median(seconds)),
        **{key: record[key] for key in ("energy", "distance", "predicted_energy", "actions")},
        "plan_seconds": seconds,
    }
    write_json(out / "summary.json", summary, indent=1)
    return summary


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc demo``; 0 on success, 2 on bad arguments, a missing model or
    device, or an output folder that cannot be written."""
    try:
        args = parse_args(argv)
        began = time.perf_counter()
        device = device_option(args.device)
        model = load_model(args.model, device, verify=not args.no_verify)
        args.override = planner_overrides(args, device)
        planner = Planner.from_config(args.planner, model, device, args.override)
        out = check_out(Path(args.out))
        sizing = " ".join(args.override) or "preset as is"
        print(f"[demo] model {args.model}, planner {args.planner} ({sizing}) on {device}")
        record = run_episode(model, planner, args.seed, args.steps)
        summary = write_outputs(out, record, args)
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
