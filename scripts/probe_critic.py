"""Does a world model's critic rank what the planner imagines by progress toward one goal image?

For ``--episodes`` seeded evaluation episodes per task (seeds from 10,000: never training
scenes), the scripted expert drives the arm toward the task's final goal image, and:

- ``spearman_critic`` / ``spearman_energy``: the rank correlation, along the expert's episode,
  of the critic's cost-to-go V(z_t, s_t, z_goal) (and of the latent L1 energy |z_t - z_goal|)
  with the steps left; 1 = falls steadily toward the goal, 0 = no trend.
- ``beaten_by_random_*``: every ``--every`` steps, the expert's next action and 64 random
  actions (the planner's translation box and gripper moves) are imagined one step ahead with
  the predictor and scored by the critic, the L1 energy and L1 + w x critic for each w of
  ``--weights``; the
  share of random actions scored better than the expert's (0 = the expert's is the best, 0.5 =
  no better than chance). What a 1-step planner on that cost would pick.

Prints one line per episode and a summary per task; with ``--out``, writes JSON.

    python scripts/probe_critic.py --model /tmp/i15/sim-small-critic --tasks push,pick_place \\
        --episodes 4 --weights 0.01,0.03
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import sim
import world_model
from robots.franka import rollout_states
from sim.experts import expert_action
from sim.scene import cameras_for_views
from sim.tasks import EVALUATION_SEEDS_START
from world_model.files import write_json

CANDIDATES = 64


@torch.no_grad()
def run_expert(env, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(frames [T+1, H, W, 3], states [T+1, 7], actions [T, 7], goal image) of one episode."""
    obs, _ = env.reset(seed=seed)
    goal = env.goal()["image"]
    frames, states, actions = [obs["image"]], [obs["state"]], []
    for _ in range(env.unwrapped.episode_length):
        action = expert_action(env.unwrapped)
        obs, *_ = env.step(action)
        actions.append(action)
        frames.append(obs["image"])
        states.append(obs["state"])
    return np.stack(frames), np.stack(states), np.stack(actions), goal


def spearman(a, b) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties get their mean rank)."""

    def ranks(values) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        order = values.argsort(kind="stable")
        ranked = np.empty(len(values))
        ranked[order] = np.arange(len(values), dtype=np.float64)
        for value in np.unique(values):  # ties: the mean of their ranks
            tied = values == value
            ranked[tied] = ranked[tied].mean()
        return ranked

    first, second = ranks(a), ranks(b)
    first, second = first - first.mean(), second - second.mean()
    return float((first * second).sum() / np.sqrt((first**2).sum() * (second**2).sum()))


def random_actions(rng: np.random.Generator, count: int) -> torch.Tensor:
    """[count, 7] translations uniform in +-5 cm, gripper -0.75, 0 or +0.75."""
    actions = np.zeros((count, 7), np.float32)
    actions[:, :3] = rng.uniform(-0.05, 0.05, (count, 3))
    actions[:, 6] = rng.choice([-0.75, 0.0, 0.75], count)
    return torch.from_numpy(actions)


@torch.no_grad()
def probe_episode(env, model, seed: int, every: int, weights: list[float], rng) -> dict:
    """The figures of one episode (see the module docstring)."""
    frames, states, actions, goal = run_expert(env, seed)
    latents = model.encode(frames)
    goal_latent = model.encode(goal)
    state = torch.from_numpy(states).float()
    values = model.cost_to_go(latents, state, goal_latent).numpy()
    energies = (latents - goal_latent).abs().mean(dim=(1, 2)).numpy()
    left = np.arange(len(values))[::-1]
    beaten: dict[str, list[float]] = {"critic": [], "energy": []}
    for step in range(0, len(actions), every):
        candidates = torch.cat(
            (random_actions(rng, CANDIDATES), torch.from_numpy(actions[step])[None])
        )
        sequences = candidates[:, None]  # [C + 1, 1, 7]
        start, start_state = latents[step : step + 1], state[step : step + 1]
        predicted = model.rollout(start, start_state, sequences)[:, -1]
        final = rollout_states(start_state.expand(len(candidates), -1), sequences)[:, -1]
        critic = model.cost_to_go(predicted, final, goal_latent).numpy()
        energy = (predicted - goal_latent).abs().mean(dim=(1, 2)).numpy()
        scores = {"critic": critic, "energy": energy}
        scores.update({f"energy+{w:g}critic": energy + w * critic for w in weights})
        for name, score in scores.items():
            beaten.setdefault(name, []).append(float((score[:-1] < score[-1]).mean()))
    return {
        "seed": seed,
        "critic_start": float(values[0]),
        "critic_end": float(values[-1]),
        "spearman_critic": spearman(values, left),
        "spearman_energy": spearman(energies, left),
        **{f"beaten_by_random_{name}": float(np.mean(v)) for name, v in beaten.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a world model with a critic")
    parser.add_argument("--tasks", default="push,pick_place")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--seed", type=int, default=EVALUATION_SEEDS_START)
    parser.add_argument("--every", type=int, default=3, help="steps between ranked states")
    parser.add_argument("--weights", default="0.01", help="critic weights of 'energy+w critic'")
    parser.add_argument("--image-size", type=int, default=128, dest="image_size")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    model = world_model.load(args.model)
    if model.critic is None:
        print(f"probe_critic: {args.model} has no critic (jepa-mpc train critic)", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    results: dict[str, list[dict[str, float]]] = {}
    for task in args.tasks.split(","):
        env = sim.make(
            task, image_size=args.image_size, cameras=cameras_for_views(model.config.views)
        )
        try:
            rows = []
            for seed in range(args.seed, args.seed + args.episodes):
                weights = [float(w) for w in args.weights.split(",")]
                rows.append(probe_episode(env, model, seed, args.every, weights, rng))
                print(task, {k: round(v, 3) for k, v in rows[-1].items()}, flush=True)
        finally:
            env.close()
        results[task] = rows
        means = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in rows[0] if k != "seed"}
        print(f"== {task} mean over {len(rows)}: {means}", flush=True)
    if args.out:
        write_json(args.out, {"args": vars(args) | {"out": str(args.out)}, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
