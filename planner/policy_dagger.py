"""``jepa-mpc train policy --dagger DIRS``: fit a one-goal-image ``KeypointPolicy`` on labelled
trajectories (``jepa-mpc collect --planner ... --expert-share p``: every frame carries the
relabelling expert's action and the episode's goal image).

The frames are encoded once by the frozen world model (``world_model.dagger_data``, cached per
dataset in ``--cache``); the policy learns the expert's translation (smooth L1 in units of the
expert's 5 cm step) and its gripper intent (close or open, cross-entropy). Every 10th episode is
held out; the log reports its median translation error (cm), median cosine between the proposed
and the expert's moves, and the intent accuracy.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from planner.policy import KeypointPolicy, PolicyConfig, model_record, save_policy
from robots.franka import GRIPPER, POS
from world_model.dagger_data import LabelledCache, load_or_build_labelled

STEP_UNIT = 0.05  # the expert's largest step (m): the translation loss's unit
INTENT_WEIGHT = 0.2  # weight of the gripper intent's cross-entropy beside the translation loss
HELD_OUT_EVERY = 10  # every 10th episode is held out


def dagger_labels(cache: LabelledCache) -> tuple[torch.Tensor, torch.Tensor]:
    """(Expert translations [F, 3] in metres, gripper intents [F] 1 close / 0 open)."""
    moves = cache.targets[:, POS] - cache.states[:, POS]
    return moves, (cache.targets[:, GRIPPER] > 0.5).float()


def propose_rows(
    policy: KeypointPolicy, cache: LabelledCache, rows: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The policy's (translations [B, 3], intent logits [B]) for ``rows`` [B] of ``cache``."""
    latents = cache.latents[rows].to(device, torch.float32)
    goals = cache.goals[cache.goal_of[rows]].to(device, torch.float32)
    return policy.raw(latents, goals, cache.states[rows].to(device))


def policy_loss(
    translation: torch.Tensor, logit: torch.Tensor, moves: torch.Tensor, intents: torch.Tensor
) -> torch.Tensor:
    """Smooth L1 of the ``translation`` [B, 3] against the expert's ``moves`` (in expert steps)
    plus ``INTENT_WEIGHT`` x the binary cross-entropy of ``logit`` [B] against ``intents``."""
    move = nn.functional.smooth_l1_loss(translation / STEP_UNIT, moves / STEP_UNIT, beta=0.2)
    intent = nn.functional.binary_cross_entropy_with_logits(logit, intents)
    return move + INTENT_WEIGHT * intent


@torch.no_grad()
def held_out_figures(
    policy: KeypointPolicy, cache: LabelledCache, rows: torch.Tensor, device: torch.device
) -> dict[str, float]:
    """Median translation error (cm), median cosine to the expert's move, intent accuracy."""
    policy.eval()
    moves, intents = dagger_labels(cache)
    errors, cosines, correct = [], [], []
    for chunk in rows.split(256):
        translation, logit = propose_rows(policy, cache, chunk, device)
        expert = moves[chunk].to(device)
        errors.append((translation - expert).norm(dim=1) * 100.0)
        cosines.append(nn.functional.cosine_similarity(translation, expert, dim=1))
        correct.append(((logit > 0).float() == intents[chunk].to(device)).float())
    policy.train()
    return {
        "move_error_cm": float(torch.cat(errors).median()),
        "move_cosine": float(torch.cat(cosines).median()),
        "intent_accuracy": float(torch.cat(correct).mean()),
    }


def split_rows(cache: LabelledCache) -> tuple[torch.Tensor, torch.Tensor]:
    """(Training rows, held-out rows): every ``HELD_OUT_EVERY``-th episode is held out."""
    held = (cache.goal_of % HELD_OUT_EVERY) == HELD_OUT_EVERY - 1
    return torch.nonzero(~held)[:, 0], torch.nonzero(held)[:, 0]


def fit_keypoints(
    policy: KeypointPolicy,
    cache: LabelledCache,
    steps: int,
    batch: int,
    seed: int,
    device: torch.device,
    log=print,
) -> dict:
    """AdamW (lr 1e-3, 5 % linear warm-up, cosine decay, grad clip 1) on random training rows;
    returns the held-out figures at the end."""
    torch.manual_seed(seed)
    train, held = split_rows(cache)
    if len(train) == 0:
        raise ValueError("the labelled data has no training episodes")
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-3, weight_decay=1e-2)
    warmup = max(1, steps // 20)

    def rate(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, rate)
    generator = torch.Generator().manual_seed(seed)
    moves, intents = (labels.to(device) for labels in dagger_labels(cache))
    losses: list[float] = []
    policy.train()
    for step in range(steps):
        rows = train[torch.randint(len(train), (batch,), generator=generator)]
        translation, logit = propose_rows(policy, cache, rows, device)
        loss = policy_loss(translation, logit, moves[rows.to(device)], intents[rows.to(device)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        if (step + 1) % 250 == 0 or step + 1 == steps:
            figures = held_out_figures(policy, cache, held, device) if len(held) else {}
            shown = " ".join(f"{name} {value:.3f}" for name, value in figures.items())
            log(f"[train policy] step {step + 1}/{steps} loss {np.mean(losses[-100:]):.4f} {shown}")
    policy.eval()
    figures = held_out_figures(policy, cache, held, device) if len(held) else {}
    return {"final_loss": float(np.mean(losses[-100:])), "held_out": figures}


def train_dagger_policy(args, command: str, log=print) -> dict:
    """Encode (or load from ``args.cache``) the labelled data, fit and save a keypoint policy;
    returns the file's ``info``."""
    from world_model.console import device_option
    from world_model.resolve import resolve_model

    started = time.perf_counter()
    device = device_option(args.device)
    model = resolve_model(args.model, device=device)
    roots = [root for root in args.dagger.split(",") if root]
    cache_file = Path(args.cache) if args.cache else None
    cache = load_or_build_labelled(model, roots, 64, cache_file, verbose=True)
    encoded = time.perf_counter()
    log(f"[train policy] {len(cache.latents)} labelled frames ({encoded - started:.0f} s)")
    limit = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)
    policy = KeypointPolicy(
        PolicyConfig(
            model.num_patches,
            model.latent_dim,
            1,
            args.hidden,
            limit,
            kind="keypoints",
            keypoints=args.keypoints,
            views=model.config.views,
        )
    ).to(device)
    result = fit_keypoints(policy, cache, args.steps, args.batch, args.seed, device, log)
    info = {
        "command": command,
        **model_record(args.model),
        "dagger_data": roots,
        "episodes": len(cache.goals),
        "frames": len(cache.latents),
        "steps": args.steps,
        **result,
        "seconds": {"encode": encoded - started, "fit": time.perf_counter() - encoded},
        "torch_threads": torch.get_num_threads(),
    }
    save_policy(policy, args.out, info)
    return info
