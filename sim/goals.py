"""Which (sub)goal an episode aims at, step by step: the goal observations of an episode and the
schedule that switches between them by step count (never on success). Shared by the benchmark
and the ROS sim node, so that both publish the same goals at the same steps."""

from __future__ import annotations

import numpy as np

from sim.tasks import TASKS

# Subgoal schedules: each task's step shares of its subgoal stages (sim.tasks), scaled to the
# episode length. A task without shares for its subgoals splits the steps evenly.
SUBGOAL_SCHEDULES: dict[str, tuple[int, ...]] = {
    name: task.subgoal_shares for name, task in TASKS.items() if task.subgoal_shares
}


def goal_schedule(task: str, goals: int, steps: int) -> list[int]:
    """Index of the (sub)goal the planner aims at, for each control step ``[steps]``.

    Stage boundaries sit at the cumulative fractions of the task's ``SUBGOAL_SCHEDULES`` entry
    when it has ``goals`` stages (pick_place, 50 steps: 12, 6, 3, 3, 14, 3 and 9 steps), else of
    equal shares; one goal is aimed at throughout. The schedule depends on the step count only,
    never on the scene (no early switching on success).
    """
    weights = SUBGOAL_SCHEDULES.get(task, ())
    if len(weights) != goals:
        weights = (1,) * goals
    bounds = np.round(np.cumsum(weights)[:-1] / sum(weights) * steps).astype(int)
    return [int(np.searchsorted(bounds, step, side="right")) for step in range(steps)]


def episode_goals(env, use_subgoals: bool) -> list[dict]:
    """The goal observations of the current episode: its subgoals (when asked for and the task
    has some; the last is the goal), else the goal alone."""
    return (env.subgoals() if use_subgoals else []) or [env.goal()]
