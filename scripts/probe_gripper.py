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
from sim.tasks import GRASP_CLOSEDNESS, Scene
from world_model.files import write_json

NUDGE = np.array([0.01, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])  # 1 cm along x, same gripper


def energy(a: torch.Tensor, b: torch.Tensor) -> float:
    """The planner's energy: mean absolute difference of two latents [N, D]."""
    return float((a - b).abs().mean())


@torch.no_grad()
def probe_scene(env, model, seed: int) -> dict[str, float]:
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
    return {
        "encoder_open_closed": open_closed,
        "encoder_1cm": moved,
        "captured_close": 1.0 - energy(predicted[0, -1], z_closed) / open_closed,
        "captured_hold": 1.0 - energy(predicted[1, -1], z_closed) / open_closed,
        "captured_move": 1.0 - energy(predicted[2, -1], z_nudged) / moved,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 2 on a bad request."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="sim-small", help=world_model.MODEL_SPEC_HELP)
    parser.add_argument("--scenes", type=int, default=8, help="seeded grasp scenes")
    parser.add_argument("--image-size", type=int, default=None, help="default: the model's")
    parser.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    parser.add_argument("--out", help="JSON file to write")
    args = parser.parse_args(argv)
    if args.scenes < 1:
        print("probe_gripper: --scenes must be >= 1", file=sys.stderr)
        return 2
    model = world_model.resolve_model(args.model, "cpu", verify=not args.no_verify)
    size = args.image_size or model.config.img_size
    env = sim.make("grasp", image_size=size)
    try:
        rows = [probe_scene(env, model, seed) for seed in range(args.scenes)]
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
    if args.out:
        report = {"model": args.model, "image_size": size, "rows": rows, **summary}
        write_json(Path(args.out), report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
