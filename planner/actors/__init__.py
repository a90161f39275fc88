"""MPC actors: each searches the [H, 7] action sequence of lowest energy for one ``Problem``."""

from __future__ import annotations

from typing import Protocol

import torch

from planner.actors.amortised import Amortised, ProposalOnly
from planner.actors.base import ActionSpace, ActorResult, Problem
from planner.actors.cem import CEM
from planner.actors.cem_gd import CEMThenGradient
from planner.actors.gd import GradientDescent
from planner.actors.icem import ICEM
from planner.actors.mppi import MPPI
from planner.config import ActorConfig
from planner.protocol import LatentWorldModel


class Actor(Protocol):
    """What the ``Planner`` calls; each actor keeps its own warm-start state."""

    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult: ...

    def reset(self) -> None: ...


ACTOR_CLASSES = {
    "cem": CEM,
    "icem": ICEM,
    "gd": GradientDescent,
    "cem+gd": CEMThenGradient,
    "mppi": MPPI,
    "amortised": Amortised,
    "policy": ProposalOnly,
}


def make_actor(
    config: ActorConfig, space: ActionSpace, world_model: LatentWorldModel | None = None
) -> Actor:
    """The actor named by ``config.name`` (see ``planner.config.ACTORS``); ``world_model``
    lets an actor that carries learned parts (``amortised``) check that they fit it."""
    if config.name in ("amortised", "policy"):
        return ACTOR_CLASSES[config.name](config, space, world_model)
    return ACTOR_CLASSES[config.name](config, space)


__all__ = ["ACTOR_CLASSES", "ActionSpace", "Actor", "ActorResult", "Problem", "make_actor"]
