"""MPC planning on a latent world model: actors (CEM, iCEM, gradient descent, CEM+GD, MPPI),
the energy, and the ``Planner`` facade (``Planner.from_config(...).plan(obs, goal)``)."""

from planner.config import (
    ACTORS,
    ActionBounds,
    ActorConfig,
    CostConfig,
    PlannerConfig,
    load_planner_config,
)
from planner.cost import Cost
from planner.inputs import PlanInputError
from planner.planner import Plan, Planner
from planner.protocol import LatentWorldModel

__all__ = [
    "ACTORS",
    "ActionBounds",
    "ActorConfig",
    "Cost",
    "CostConfig",
    "LatentWorldModel",
    "Plan",
    "PlanInputError",
    "Planner",
    "PlannerConfig",
    "load_planner_config",
]
