"""``jepa-mpc train policy``: fit the amortised proposal (``planner.policy``) of one world model
on trajectories (``jepa-mpc collect``) with hindsight goals: expert labels (the greedy in-bounds
step toward the goal frame's state) and the planner's own solutions (the full search, planned
from the frame toward the goal image, as ``Planner.plan`` does at run time).

Example::

    jepa-mpc train policy --model sim-small --data data/sim --planner icem_readout \\
        --out world_model/checkpoints/sim-small/policy.safetensors \\
        actor.samples=64 actor.iterations=6 actor.elites=6
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

from planner.actors.base import ActionSpace
from planner.config import PlannerConfig, load_planner_config
from planner.planner import Planner, has_readout
from planner.policy import PolicyConfig, ProposalPolicy, model_record, save_policy
from robots.franka import GRIPPER, integrate_pose, pose_delta
from world_model.console import CommandLineParser, device_option


@dataclass
class Frames:
    """A dataset, encoded. images: uint8 [F, H, W, 3]; latents: [F, N, D]; states: [F, 7];
    episode: [F] episode index of each frame; last: [F] index of its episode's last frame;
    readout: [F, 7] the state the model's readout head reads off each frame (as the planner
    reads a goal: gripper binarised when its cost says so), or None."""

    images: np.ndarray
    latents: torch.Tensor
    states: torch.Tensor
    episode: np.ndarray
    last: np.ndarray
    readout: torch.Tensor | None = None


def encode_dataset(model, root: str, batch: int = 64) -> Frames:
    """Every frame of the dataset at ``root`` through the model's encoder."""
    from world_model.data import TrajectoryReader

    reader = TrajectoryReader(root)
    images, states, episode, last = [], [], [], []
    for index in range(len(reader)):
        record = reader.episode(index)
        start = sum(len(part) for part in images)
        images.append(record.frames)
        states.append(record.states)
        episode.append(np.full(len(record.frames), index))
        last.append(np.full(len(record.frames), start + len(record.frames) - 1))
    all_images = np.concatenate(images)
    latents = torch.cat(
        [model.encode(all_images[i : i + batch]).cpu() for i in range(0, len(all_images), batch)]
    )
    return Frames(
        all_images,
        latents,
        torch.from_numpy(np.concatenate(states)).float(),
        np.concatenate(episode),
        np.concatenate(last),
    )


def sample_pairs(
    frames: Frames, count: int, rng: np.random.Generator, episodes: np.ndarray, stay: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` (current, goal) frame indices from ``episodes``: the goal a later frame of the
    same episode (uniformly), or with probability ``stay`` the current frame itself."""
    candidates = np.flatnonzero(np.isin(frames.episode, episodes))
    current = rng.choice(candidates, size=count)
    span = frames.last[current] - current
    ahead = np.ceil(rng.random(count) * span).astype(int)
    ahead[rng.random(count) < stay] = 0
    return current, current + ahead


def greedy_targets(
    space: ActionSpace,
    start: torch.Tensor,
    goal: torch.Tensor,
    horizon: int,
    gripper_threshold: float | None,
) -> torch.Tensor:
    """Expert labels [M, H, 7]: H in-bounds steps, each straight toward ``goal`` [M, 7] from
    where the previous left ``start`` [M, 7]. With ``gripper_threshold`` the goal's gripper is
    read as closed (1) at or above it, else open (0), as the planner's readout term reads it."""
    goal = goal.clone()
    if gripper_threshold is not None:
        goal[:, GRIPPER] = (goal[:, GRIPPER] >= gripper_threshold).float()
    steps, state = [], start
    for _ in range(horizon):
        action = space.finish(pose_delta(state, goal))
        steps.append(action)
        state = integrate_pose(state, action)
    return torch.stack(steps, dim=1)


def planner_targets(
    planner: Planner, frames: Frames, current: np.ndarray, goal: np.ndarray, log=print
) -> torch.Tensor:
    """The planner's own solutions [P, H, 7]: one fresh plan (no warm start) per pair, from the
    current frame's image and state toward the goal frame's image."""
    plans, started = [], time.perf_counter()
    for number, (now, then) in enumerate(zip(current, goal, strict=True)):
        planner.reset(seed=number)
        obs = {"image": frames.images[now], "state": frames.states[now].numpy()}
        plans.append(torch.from_numpy(planner.plan(obs, {"image": frames.images[then]}).actions))
        if (number + 1) % 50 == 0:
            log(
                f"[train policy] planned {number + 1}/{len(current)} "
                f"({time.perf_counter() - started:.0f} s)"
            )
    return torch.stack(plans)


def action_error(
    predicted: torch.Tensor, target: torch.Tensor, limit: torch.Tensor
) -> torch.Tensor:
    """Mean |predicted - target| in units of each searched dimension's bound ([M, H, 7] each)."""
    searched = limit > 0
    return ((predicted - target).abs()[..., searched] / limit[searched]).mean()


@dataclass
class Labels:
    """Training pairs: frame indices (current, goal) and the target action sequences."""

    current: np.ndarray
    goal: np.ndarray
    actions: torch.Tensor

    def batch(self, rng: np.random.Generator, size: int) -> Labels:
        """``size`` labels drawn with replacement."""
        pick = rng.integers(0, len(self.current), size)
        return Labels(self.current[pick], self.goal[pick], self.actions[pick])


def predict(policy: ProposalPolicy, frames: Frames, labels: Labels) -> torch.Tensor:
    """The policy's proposals [M, H, 7] for the labels' (current, goal) pairs."""
    now, then = torch.from_numpy(labels.current), torch.from_numpy(labels.goal)
    goal_state = frames.readout[then] if policy.config.goal_readout else None
    return policy(frames.latents[now], frames.latents[then], frames.states[now], goal_state)


def read_goals(model, frames: Frames, config: PlannerConfig) -> torch.Tensor:
    """[F, 7] the readout's state of every frame, the gripper binarised as ``Planner`` does
    for goals when the cost has a readout threshold."""
    states = torch.cat([model.read_state(part) for part in frames.latents.split(256)]).cpu()
    threshold = config.cost.readout_gripper_threshold
    if config.cost.uses_readout and threshold is not None:
        states[:, GRIPPER] = (states[:, GRIPPER] >= threshold).float()
    return states


def fit(
    policy: ProposalPolicy,
    frames: Frames,
    sets: list[Labels],
    steps: int,
    batch: int,
    seed: int,
    log=print,
) -> float:
    """Adam on the mean ``action_error`` of an equal share of every label set per step (cosine
    learning-rate decay); returns the last 100 steps' mean loss."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=2e-3, weight_decay=1e-2)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = []
    policy.train()
    for step in range(steps):
        loss = sum(
            action_error(predict(policy, frames, part), part.actions, policy.limit)
            for part in (labels.batch(rng, batch // len(sets)) for labels in sets)
        ) / len(sets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 500 == 0 or step + 1 == steps:
            log(f"[train policy] step {step + 1}/{steps} loss {np.mean(losses[-100:]):.4f}")
    policy.eval()
    return float(np.mean(losses[-100:]))


def held_out_errors(policy: ProposalPolicy, frames: Frames, sets: dict[str, Labels]) -> dict:
    """Per label set: the policy's ``action_error`` and that of always proposing 0."""
    out = {}
    with torch.no_grad():
        for name, labels in sets.items():
            proposed = predict(policy, frames, labels)
            zero = torch.zeros_like(labels.actions)
            out[name] = {
                "policy": float(action_error(proposed, labels.actions, policy.limit)),
                "zero": float(action_error(zero, labels.actions, policy.limit)),
                "pairs": len(labels.current),
            }
    return out


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = CommandLineParser("jepa-mpc train policy", description=__doc__)
    parser.add_argument("--model", required=True, help="world model: checkpoint path or name")
    parser.add_argument("--data", help="trajectory dataset (jepa-mpc collect)")
    parser.add_argument(
        "--dagger",
        help="comma-separated labelled datasets (jepa-mpc collect --planner ...): train a "
        "one-goal keypoint policy on their expert labels instead (planner.policy_dagger)",
    )
    parser.add_argument(
        "--cache", help="with --dagger: file caching the encoded frames (one part per dataset)"
    )
    parser.add_argument("--keypoints", type=int, default=8, help="with --dagger: per view")
    parser.add_argument("--out", required=True, help="policy file (.safetensors) to write")
    parser.add_argument("--planner", default="icem_readout", help="the search to imitate")
    parser.add_argument("--planner-labels", type=int, default=240, dest="planner_labels")
    parser.add_argument("--expert-pairs", type=int, default=20000, dest="expert_pairs")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--held-out", type=float, default=0.1, dest="held_out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-goal-readout",
        action="store_true",
        dest="no_goal_readout",
        help="do not feed the readout head's goal state to the policy",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("overrides", nargs="*", help="overrides of the imitated planner")
    args = parser.parse_args(argv)
    if (args.data is None) == (args.dagger is None):
        parser.error("give one of --data (proposal policy) or --dagger (keypoint policy)")
    if args.keypoints < 1:
        parser.error("--keypoints must be >= 1")
    if min(args.steps, args.batch, args.expert_pairs, args.hidden) < 1 or args.planner_labels < 0:
        parser.error("--steps, --batch, --expert-pairs, --hidden must be >= 1, labels >= 0")
    if not 0 <= args.held_out < 1:
        parser.error("--held-out must be in [0, 1)")
    return args


def label_sets(
    frames: Frames, config: PlannerConfig, planner: Planner | None, args, log=print
) -> tuple[dict[str, Labels], dict[str, Labels]]:
    """(training, held-out) label sets; held-out episodes are never trained on."""
    rng = np.random.default_rng(args.seed)
    episodes = rng.permutation(int(frames.episode.max()) + 1)
    held, train = np.split(episodes, [int(round(len(episodes) * args.held_out))])
    space = ActionSpace(config.bounds)
    threshold = config.cost.readout_gripper_threshold if config.cost.uses_readout else None

    def expert(chosen: np.ndarray, count: int) -> Labels:
        now, then = sample_pairs(frames, count, rng, chosen)
        targets = greedy_targets(
            space, frames.states[now], frames.states[then], config.actor.horizon, threshold
        )
        return Labels(now, then, targets)

    def planned(chosen: np.ndarray, count: int) -> Labels:
        now, then = sample_pairs(frames, count, rng, chosen)
        return Labels(now, then, planner_targets(planner, frames, now, then, log))

    training = {"expert": expert(train, args.expert_pairs)}
    held_out = {"expert": expert(held, 500)} if len(held) else {}
    if planner is not None and args.planner_labels:
        held_labels = int(round(args.planner_labels * args.held_out)) if len(held) else 0
        training["planner"] = planned(train, args.planner_labels - held_labels)
        if held_labels:
            held_out["planner"] = planned(held, held_labels)
    return training, held_out


def train_policy(args: argparse.Namespace, command: str, log=print) -> dict:
    """Encode the data, label it, fit and save the policy; returns the file's ``info``."""
    import world_model

    started = time.perf_counter()
    device = device_option(args.device)
    model = world_model.load(args.model, device=device)
    config = load_planner_config(args.planner, args.overrides)
    frames = encode_dataset(model, args.data)
    seconds = time.perf_counter() - started
    log(f"[train policy] encoded {len(frames.images)} frames ({seconds:.0f} s)")
    if has_readout(model) and not args.no_goal_readout:
        frames.readout = read_goals(model, frames, config)
    planner = Planner(config, model, device) if args.planner_labels else None
    training, held_out = label_sets(frames, config, planner, args, log)
    labelled = time.perf_counter()
    space = ActionSpace(config.bounds)
    policy = ProposalPolicy(
        PolicyConfig(
            model.num_patches,
            model.latent_dim,
            config.actor.horizon,
            args.hidden,
            tuple(float(v) for v in space.limit),
            goal_readout=frames.readout is not None,
        )
    ).to(device)
    frames.latents, frames.states = frames.latents.to(device), frames.states.to(device)
    if frames.readout is not None:
        frames.readout = frames.readout.to(device)
    loss = fit(policy, frames, list(training.values()), args.steps, args.batch, args.seed, log)
    info = {
        "command": command,
        **model_record(args.model),
        "data": args.data,
        "episodes": int(frames.episode.max()) + 1,
        "frames": len(frames.images),
        "planner": args.planner,
        "planner_overrides": list(args.overrides),
        "labels": {name: len(labels.current) for name, labels in training.items()},
        "steps": args.steps,
        "final_loss": loss,
        "held_out_error": held_out_errors(policy, frames, held_out),
        "seconds": {
            "encode_and_label": labelled - started,
            "fit": time.perf_counter() - labelled,
        },
        "torch_threads": torch.get_num_threads(),
    }
    save_policy(policy, args.out, info)
    return info


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc train policy``; 2 on a bad model, dataset or planner."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    command = shlex.join(["jepa-mpc", "train", "policy", *argv])
    try:
        if args.dagger:
            from planner.policy_dagger import train_dagger_policy

            info = train_dagger_policy(args, command)
            print(f"[train policy] wrote {args.out}: held-out {info['held_out']}")
            return 0
        info = train_policy(args, command)
    except (ValueError, FileNotFoundError) as error:  # config, dataset, checkpoint, policy
        print(f"jepa-mpc train policy: error: {error}", file=sys.stderr)
        return 2
    for name, errors in info["held_out_error"].items():
        print(
            f"[train policy] held-out {name} labels ({errors['pairs']} pairs): error "
            f"{errors['policy']:.3f} of the bound (proposing 0: {errors['zero']:.3f})"
        )
    print(f"[train policy] wrote {args.out}")
    return 0
