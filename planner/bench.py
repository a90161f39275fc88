"""``jepa-mpc bench-planner``: per-action planning time, energy and predictor evaluations of each
actor on one problem, and the evaluation-efficiency table on the ground-truth-state model.

Only the actors asked for run. The default actors fit the device: on a CPU the three that plan
in seconds on sim-small (icem, gd, cem+gd); on a GPU all six (``--actors all`` on a CPU too:
cem_paper, cem_release and mppi take minutes per plan there). A progress bar with an ETA counts
the plans.

Examples::

    jepa-mpc bench-planner                                # sim-small, the device's actors
    jepa-mpc bench-planner --model random:small --actors icem,gd --repeats 1
    jepa-mpc bench-planner --actors all --device cuda --json planner_bench.json
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from tqdm import tqdm

from planner.config import load_planner_config
from planner.planner import Planner
from planner.protocol import LatentWorldModel
from robots.config import ConfigError
from world_model import MODEL_SPEC_HELP, resolve_model
from world_model.console import CommandLineParser, device_option, progress_bar
from world_model.files import write_json
from world_model.state_model import StateWorldModel

ACTORS = ("cem_paper", "cem_release", "icem", "gd", "cem+gd", "mppi")
CPU_ACTORS = ("icem", "gd", "cem+gd")  # seconds per plan on sim-small, 2 CPU cores
REFERENCE = "cem_paper"  # the efficiency table's yardstick, when it is among the actors
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
FLOOR_METRES = 1e-4  # Franka repeatability: energies below a 0.1 mm error are not told apart


def latency(
    model: LatentWorldModel,
    actors: list[str],
    repeats: int,
    device: torch.device,
    bar: tqdm | None = None,
) -> list[dict]:
    """Plan once per repeat (after a warm-up) for each actor on the same observation and goal,
    at the model's image size; ``bar`` ticks once per plan."""
    rng = np.random.default_rng(0)
    side = getattr(getattr(model, "config", None), "img_size", 64)
    goal_state = START + np.array([0.03, -0.02, 0.01, 0, 0, 0, 0], np.float32)
    obs = {"image": rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "state": START}
    goal = {"image": rng.integers(0, 256, (side, side, 3), dtype=np.uint8), "state": goal_state}
    rows = []
    for name in actors:
        planner = Planner.from_config(name, world_model=model, device=device)
        planner.plan(obs, goal)  # warm-up: allocator, kernels, goal cache
        _tick(bar, name)
        times, energies = [], []
        for _ in range(repeats):
            planner.reset()
            plan = planner.plan(obs, goal)
            times.append(plan.timings["plan"])
            energies.append(plan.energy)
            _tick(bar, name)
        rows.append(
            {
                "actor": name,
                "median_s": float(np.median(times)),
                "p90_s": float(np.percentile(times, 90)),
                "energy": float(np.median(energies)),
                "evaluations": plan.evaluations,
            }
        )
    return rows


def _tick(bar: tqdm | None, actor: str) -> None:
    if bar is not None:
        bar.set_postfix_str(actor, refresh=False)
        bar.update(1)


def evaluations_to_reach(trace: np.ndarray, target: float) -> int | None:
    """First evaluation count at which the best energy so far is <= target (None: never)."""
    reached = np.nonzero(trace[:, 1] <= target)[0]
    return int(trace[reached[0], 0]) if len(reached) else None


def efficiency(
    actors: list[str], problems: int, device: torch.device, bar: tqdm | None = None
) -> list[dict]:
    """On the StateWorldModel, the evaluations each actor needs to reach the reference energy
    (floored at the energy of a 0.1 mm error), over ``problems`` random reach goals: the final
    energy of ``REFERENCE`` (paper CEM) when it is among ``actors``, else the lowest final
    energy any of them reached. ``bar`` ticks once per plan."""
    model = StateWorldModel().to(device)
    image = np.zeros((32, 32, 3), np.uint8)
    rng = np.random.default_rng(1)
    results: dict[str, list] = {name: [] for name in actors}
    budget = []
    for _ in range(problems):
        offset = rng.normal(size=3)
        offset *= rng.uniform(0.02, 0.07) / np.abs(offset).sum()  # inside the paper's L1 ball
        goal_state = START.copy()
        goal_state[:3] += offset.astype(np.float32)
        goal = {"image": image, "state": goal_state}
        obs = {"image": image, "state": START}
        plans = {}
        for name in actors:
            plans[name] = Planner.from_config(name, world_model=model, device=device).plan(
                obs, goal
            )
            _tick(bar, name)
        reached = (
            plans[REFERENCE].energy
            if REFERENCE in plans
            else min(plan.energy for plan in plans.values())
        )
        target = max(reached, floor_energy(model, goal_state))
        if REFERENCE in plans:
            budget.append(plans[REFERENCE].evaluations)
        for name, plan in plans.items():
            results[name].append((evaluations_to_reach(plan.trace, target), plan.evaluations))
    rows = []
    for name, runs in results.items():
        needed = [n for n, _ in runs if n is not None]
        rows.append(
            {
                "actor": name,
                "reached": f"{len(needed)}/{problems}",
                "median_evaluations_to_reach": float(np.median(needed)) if needed else None,
                "evaluations_per_plan": int(np.median([total for _, total in runs])),
                "fraction_of_cem_paper": (
                    float(np.median(needed)) / float(np.median(budget))
                    if needed and budget
                    else None
                ),
            }
        )
    return rows


def floor_energy(model: StateWorldModel, goal_state: np.ndarray) -> float:
    """Mean energy between the goal and the goal moved 0.1 mm along ±x, ±y, ±z."""
    moved = np.repeat(goal_state[None], 6, axis=0)
    for axis in range(3):
        moved[2 * axis, axis] += FLOOR_METRES
        moved[2 * axis + 1, axis] -= FLOOR_METRES
    goal = model.encode(None, torch.from_numpy(goal_state))
    return float((model.encode(None, torch.from_numpy(moved)) - goal).abs().mean())


def print_tables(latency_rows: list[dict], efficiency_rows: list[dict], model_name: str) -> None:
    """Both tables on stdout."""
    print(f"\nplanning time per action (model: {model_name})")
    print(f"{'actor':<12} {'median s':>9} {'p90 s':>9} {'energy':>10} {'evaluations':>12}")
    for row in latency_rows:
        print(
            f"{row['actor']:<12} {row['median_s']:>9.4f} {row['p90_s']:>9.4f} "
            f"{row['energy']:>10.4g} {row['evaluations']:>12d}"
        )
    reference = (
        f"{REFERENCE}'s final energy"
        if any(row["actor"] == REFERENCE for row in efficiency_rows)
        else "the best final energy of these actors"
    )
    print(f"\nevaluations to reach {reference} (StateWorldModel, 0.1 mm floor)")
    print(f"{'actor':<12} {'reached':>8} {'evals to reach':>15} {'per plan':>9} {'vs paper':>9}")
    for row in efficiency_rows:
        need, frac = row["median_evaluations_to_reach"], row["fraction_of_cem_paper"]
        need_text = "-" if need is None else str(int(need))
        print(
            f"{row['actor']:<12} {row['reached']:>8} {need_text:>15} "
            f"{row['evaluations_per_plan']:>9d} {'-' if frac is None else f'{frac:.3f}':>9}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (one line and exit 2 on a bad value)."""
    parser = CommandLineParser("jepa-mpc bench-planner", description=__doc__)
    parser.add_argument("--model", default="sim-small", help=f"model spec: {MODEL_SPEC_HELP}")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--actors",
        default=None,
        help="comma-separated planner presets, or 'all' (default: on a CPU "
        f"{','.join(CPU_ACTORS)}; on a GPU all: {','.join(ACTORS)})",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed plans per actor")
    parser.add_argument("--problems", type=int, default=5, help="goals for the efficiency table")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.problems < 1:
        parser.error(f"--repeats and --problems must be >= 1, got {args.repeats}, {args.problems}")
    return args


def chosen_actors(text: str | None, device: torch.device) -> list[str]:
    """The actors of ``--actors`` (unique, in order; "all" = every one), or the device's."""
    if text is None:
        return list(ACTORS if device.type == "cuda" else CPU_ACTORS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    names = list(ACTORS) if names == ["all"] else list(dict.fromkeys(names))
    if not names:
        raise ConfigError("--actors names no planner preset")
    return names


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see ``--help``. Returns 2 on a bad model spec, actor or device."""
    args = parse_args(argv)
    try:
        device = device_option(args.device)
        actors = chosen_actors(args.actors, device)
        for name in actors:  # a bad name fails here, before any planning
            load_planner_config(name)
        model, model_name = resolve_model(args.model, device), args.model
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc bench-planner: error: {error}", file=sys.stderr)
        return 2
    print(f"[bench-planner] {model_name} on {device}: {', '.join(actors)}", flush=True)
    with progress_bar(len(actors) * (1 + args.repeats), "planning time", "plan") as bar:
        latency_rows = latency(model, actors, args.repeats, device, bar)
    with progress_bar(len(actors) * args.problems, "efficiency (state model)", "plan") as bar:
        efficiency_rows = efficiency(actors, args.problems, device, bar)
    print_tables(latency_rows, efficiency_rows, model_name)
    if args.json:
        payload = {
            "model": model_name,
            "device": str(device),
            "latency": latency_rows,
            "efficiency": efficiency_rows,
        }
        write_json(args.json, payload)
        print(f"\nwrote {args.json}")
    return 0
