"""Does a world model see and predict the gripper? The diagnostic behind sim-small's grasp gap.

For ``--scenes`` seeded grasp scenes (hand open around the cube at its start), it measures:

- encoder: the L1 energy between the open and the closed-on-the-cube images, and between the
  open image and the same scene with the hand 1 cm further along x (the scale a planner sees);
- predictor: from the open scene, one rollout step with the gripper action that closes the hand
  on the cube (``sim.tasks.GRASP_CLOSEDNESS``) and with no action. ``captured`` is the share of
  the open->closed energy the prediction removes: ``1 - E(pred, closed) / E(open, closed)``
  (1 = predicts the closed image exactly, 0 = predicts no change, < 0 = moves away from it);
  ``captured_move`` is the same share for a 1 cm move along x (the hand-motion reference).

A planner can only choose to close the hand at the right time if ``captured`` is clearly above 0.
``--physics`` measures the same two figures on real close transitions instead of rendered
scenes: the scripted expert runs ``--scenes`` grasp episodes on evaluation seeds (from 10,000)
until the step where it closes the hand; that step's camera frames before and after, and the
action that took the state from one to the other (as training derives it), give
``physics_captured_close`` (the rollout with that action) and ``physics_captured_hold`` (no
action). Rendered scenes pose the hand by kinematics alone; the physics step is the one a
planner meets (session 8: both say the same for every model tried, docs/sim_small.md).
``--top-tokens K`` splits the close/hold figures between the K tokens that change most from
open to closed (the fingers) and the rest: ``fingers_*`` (captured there) and ``rest_*``, and
``fingers_share`` (how much of the open->closed energy those K tokens hold).
Prints a table and, with ``--out``, writes JSON.

    python scripts/probe_gripper.py --model sim-small --scenes 8 --out probe_gripper.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

import sim
import world_model
from robots.franka import pose_delta
from sim.experts import expert_action
from sim.scene import cameras_for_views
from sim.tasks import EVALUATION_SEEDS_START, GRASP_CLOSEDNESS, Scene
from world_model.files import write_json

NUDGE = np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 1 cm along x, same gripper


def energy(a: torch.Tensor, b: torch.Tensor) -> float:
    """The planner's energy: mean absolute difference of two latents [N, D]."""
    return float((a - b).abs().mean())


def split_figures(z_open, z_closed, close, hold, top: int) -> dict[str, float]:
    """The closure captured by the ``close`` and ``hold`` predictions [N, D], on the ``top``
    tokens that differ most between ``z_open`` and ``z_closed`` and on the rest (NaN where
    those tokens do not differ at all)."""
    change = (z_open - z_closed).abs().mean(-1)  # [N]
    fingers = torch.zeros(len(change), dtype=torch.bool)
    fingers[change.topk(top).indices] = True
    figures = {"fingers_share": float(change[fingers].sum() / change.sum())}
    for name, tokens in (("fingers", fingers), ("rest", ~fingers)):
        base = energy(z_open[tokens], z_closed[tokens]) or float("nan")
        figures[f"{name}_close"] = 1.0 - energy(close[tokens], z_closed[tokens]) / base
        figures[f"{name}_hold"] = 1.0 - energy(hold[tokens], z_closed[tokens]) / base
    return figures


@torch.no_grad()
def probe_close_step(env, model, seed: int, max_steps: int = 60) -> dict[str, float]:
    """The physics figures of one expert grasp episode (see the module doc).

    Raises:
        RuntimeError: the expert did not close the hand within ``max_steps``.
    """
    obs, _ = env.reset(seed=seed)
    for _ in range(max_steps):
        action = expert_action(env)
        after, *_ = env.step(action)
        if after["state"][6] - obs["state"][6] > 0.5 * GRASP_CLOSEDNESS:
            break
        obs = after
    else:
        raise RuntimeError(f"seed {seed}: the expert did not close the hand in {max_steps} steps")
    images = np.ascontiguousarray(np.stack((obs["image"], after["image"])))
    z_before, z_after = model.encode(torch.from_numpy(images))
    start = torch.as_tensor(obs["state"], dtype=torch.float64)
    taken = pose_delta(start, torch.as_tensor(after["state"], dtype=torch.float64)).float()
    actions = torch.stack((taken, torch.zeros(7)))[:, None]  # [2, 1, 7]: close, hold
    state = start.float()[None].expand(2, -1)
    predicted = model.rollout(z_before[None].expand(2, -1, -1), state, actions)[:, -1]
    closure = energy(z_before, z_after)
    return {
        "physics_captured_close": 1.0 - energy(predicted[0], z_after) / closure,
        "physics_captured_hold": 1.0 - energy(predicted[1], z_after) / closure,
    }


@torch.no_grad()
def probe_scene(env, model, seed: int, top_tokens: int = 0) -> dict[str, float]:
    """The encoder and predictor figures of one seeded grasp scene (see the module doc)."""

    def encode(scene: Scene) -> torch.Tensor:
        image = np.ascontiguousarray(env.render_scene(scene)["image"])
        return model.encode(torch.from_numpy(image)[None])[0]

    env.reset(seed=seed)
    task = env.task
    open_scene = task.hand_at_cube(task.cube_start, 0.0)
    z_open = encode(open_scene)
    z_closed = encode(task.hand_at_cube(task.cube_start))
    z_nudged = encode(Scene(ee=open_scene.ee + NUDGE, cube=open_scene.cube))
    state = torch.tensor(open_scene.ee, dtype=torch.float32)[None]
    actions = torch.zeros(3, 1, 7)  # close, hold, move 1 cm
    actions[0, 0, 6] = GRASP_CLOSEDNESS
    actions[2, 0] = torch.from_numpy(NUDGE)
    predicted = model.rollout(z_open[None].expand(3, -1, -1), state.expand(3, -1), actions)
    open_closed, moved = energy(z_open, z_closed), energy(z_open, z_nudged)
    figures = {
        "encoder_open_closed": open_closed,
        "encoder_1cm": moved,
        "captured_close": 1.0 - energy(predicted[0, -1], z_closed) / open_closed,
        "captured_hold": 1.0 - energy(predicted[1, -1], z_closed) / open_closed,
        "captured_move": 1.0 - energy(predicted[2, -1], z_nudged) / moved,
    }
    if top_tokens:
        close, hold = predicted[0, -1], predicted[1, -1]
        figures.update(split_figures(z_open, z_closed, close, hold, top_tokens))
    return figures


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 2 on a bad request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sim-small", help=world_model.MODEL_SPEC_HELP)
    parser.add_argument("--scenes", type=int, default=8, help="seeded grasp scenes")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's")
    parser.add_argument(
        "--top-tokens", type=int, default=0, help="also split figures: the K finger tokens / rest"
    )
    parser.add_argument(
        "--physics", action="store_true", help="also measure on real close steps (expert)"
    )
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        print("probe_gripper: --scenes must be >= 1", file=sys.stderr)
        return 2
    if args.top_tokens < 0:
        print("probe_gripper: --top-tokens must be >= 0", file=sys.stderr)
        return 2
    model = world_model.resolve_model(args.model, "cpu", verify=not args.no_verify)
    size = args.image_size or model.config.img_size
    cameras = cameras_for_views(model.config.views)
    env = sim.make("grasp", image_size=size, cameras=cameras)
    try:
        rows = [probe_scene(env, model, seed, args.top_tokens) for seed in range(args.scenes)]
        if args.physics:
            seeds = range(EVALUATION_SEEDS_START, EVALUATION_SEEDS_START + args.scenes)
            for row, seed in zip(rows, seeds, strict=True):
                row.update(probe_close_step(env, model, seed))
    finally:
        env.close()
    summary = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    ratio = summary["encoder_open_closed"] / summary["encoder_1cm"]
    print(f"model {args.model}, {args.scenes} grasp scenes, {size} px")
    print("| figure | mean |\n|---|---|")
    print(f"| encoder energy open vs closed on the cube | {summary['encoder_open_closed']:.4f} |")
    print(f"| encoder energy of a 1 cm move | {summary['encoder_1cm']:.4f} |")
    print(f"| gripper / 1 cm | {ratio:.2f} |")
    print(f"| predictor: closure captured (close action) | {summary['captured_close']:+.3f} |")
    print(f"| predictor: closure captured (no action) | {summary['captured_hold']:+.3f} |")
    print(f"| predictor: 1 cm move captured (move action) | {summary['captured_move']:+.3f} |")
    if args.physics:
        for action in ("close", "hold"):
            value = summary[f"physics_captured_{action}"]
            print(f"| physics: closure captured ({action} action) | {value:+.3f} |")
    if args.top_tokens:
        k = args.top_tokens
        print(f"| share of the closure in the {k} finger tokens | {summary['fingers_share']:.2f} |")
        for part in ("fingers", "rest"):
            for action in ("close", "hold"):
                value = summary[f"{part}_{action}"]
                print(f"| {part}: closure captured ({action}) | {value:+.3f} |")
    if args.out:
        report = {"model": args.model, "image_size": size, "rows": rows, **summary}
        write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
