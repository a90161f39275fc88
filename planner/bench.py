"""``jepa-mpc bench-planner``: per-action planning time, energy and predictor evaluations of each
actor on one problem, and the evaluation-efficiency table on the ground-truth-state model."""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from planner.planner import Planner, resolve_device
from planner.protocol import LatentWorldModel
from world_model import MODEL_SPEC_HELP, resolve_model
from world_model.files import write_json
from world_model.state_model import StateWorldModel

ACTORS = ("cem_paper", "cem_release", "icem", "gd", "cem+gd", "mppi")
START = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
FLOOR_METRES = 1e-4  # Franka repeatability: energies below a 0.1 mm error are not told apart


def latency(
    model: LatentWorldModel, actors: list[str], repeats: int, device: torch.device
) -> list[dict]:
    """Plan once per repeat (after a warm-up) for each actor on the same observation and goal."""
    rng = np.random.default_rng(0)
    goal_state = START + np.array([0.03, -0.02, 0.01, 0, 0, 0, 0], np.float32)
    obs = {"image": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "state": START}
    goal = {"image": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), "state": goal_state}
    rows = []
    for name in actors:
        planner = Planner.from_config(name, world_model=model, device=device)
        planner.plan(obs, goal)  # warm-up: allocator, kernels, goal cache
        times, energies = [], []
        for _ in range(repeats):
            planner.reset()
            plan = planner.plan(obs, goal)
            times.append(plan.timings["plan"])
            energies.append(plan.energy)
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


def evaluations_to_reach(trace: np.ndarray, target: float) -> int | None:
    """First evaluation count at which the best energy so far is <= target (None: never)."""
    reached = np.nonzero(trace[:, 1] <= target)[0]
    return int(trace[reached[0], 0]) if len(reached) else None


def efficiency(actors: list[str], problems: int, device: torch.device) -> list[dict]:
    """On the StateWorldModel, the evaluations each actor needs to reach the paper-CEM's final
    energy (floored at the energy of a 0.1 mm error), over ``problems`` random reach goals."""
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
        paper = Planner.from_config("cem_paper", world_model=model, device=device).plan(obs, goal)
        target = max(paper.energy, floor_energy(model, goal_state))
        budget.append(paper.evaluations)
        for name in actors:
            plan = Planner.from_config(name, world_model=model, device=device).plan(obs, goal)
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
                    float(np.median(needed)) / float(np.median(budget)) if needed else None
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
    print(f"\nplanning time per action (model: {model_name})")
    print(f"{'actor':<12} {'median s':>9} {'p90 s':>9} {'energy':>10} {'evaluations':>12}")
    for row in latency_rows:
        print(
            f"{row['actor']:<12} {row['median_s']:>9.4f} {row['p90_s']:>9.4f} "
            f"{row['energy']:>10.4g} {row['evaluations']:>12d}"
        )
    print("\nevaluations to reach cem_paper's final energy (StateWorldModel, 0.1 mm floor)")
    print(f"{'actor':<12} {'reached':>8} {'evals to reach':>15} {'per plan':>9} {'vs paper':>9}")
    for row in efficiency_rows:
        need, frac = row["median_evaluations_to_reach"], row["fraction_of_cem_paper"]
        need_text = "-" if need is None else str(int(need))
        print(
            f"{row['actor']:<12} {row['reached']:>8} {need_text:>15} "
            f"{row['evaluations_per_plan']:>9d} {'-' if frac is None else f'{frac:.3f}':>9}"
        )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see ``--help``. Returns 2 when the model spec names no model."""
    parser = argparse.ArgumentParser(prog="jepa-mpc bench-planner", description=__doc__)
    parser.add_argument("--model", default="random:small", help=f"model spec: {MODEL_SPEC_HELP}")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--actors", default=",".join(ACTORS), help="comma-separated presets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--problems", type=int, default=5, help="goals for the efficiency table")
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    actors = [name.strip() for name in args.actors.split(",") if name.strip()]
    if "cem_paper" not in actors:
        actors.insert(0, "cem_paper")  # the efficiency table's reference
    device = resolve_device(args.device)
    try:
        model, model_name = resolve_model(args.model, device), args.model
    except (ValueError, FileNotFoundError) as error:
        print(f"jepa-mpc bench-planner: {error}", file=sys.stderr)
        return 2
    latency_rows = latency(model, actors, max(args.repeats, 1), device)
    efficiency_rows = efficiency(actors, max(args.problems, 1), device)
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
