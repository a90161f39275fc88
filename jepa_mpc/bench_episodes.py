"""Episode running for ``jepa-mpc bench`` (``jepa_mpc.bench``): the policies (random,
scripted expert, MPC planner), one episode at a time (``run_episode``) and a planner's episodes
in batched lock-step lanes (``run_batched``), their world-model rollouts merged into one call by
``planner.batching.RolloutBatcher``. The (sub)goal schedule is the simulator's
(``sim.goals``), shared with the ROS sim node.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm import tqdm

from jepa_mpc import bench_report as report
from jepa_mpc.bench_config import BenchConfig, Method
from planner import Planner
from planner.batching import RolloutBatcher
from planner.protocol import LatentWorldModel, model_device, model_views
from sim.experts import expert_action
from sim.goals import episode_goals, goal_schedule
from sim.scene import first_views
from world_model.state_model import StateWorldModel

# What a policy decides for one step: (action [7], planning seconds or None, evaluations or None).
Decision = tuple[np.ndarray, float | None, int | None]
# Called after every control step (in the thread that steps the envs): progress bars.
StepHook = Callable[[], None]


class Policy(Protocol):
    def reset(self, seed: int) -> None: ...

    def act(self, env, obs: dict, goal: dict) -> tuple[np.ndarray, float | None, int | None]:
        """(action [7], planning seconds or None, predictor evaluations or None)."""
        ...


class RandomPolicy:
    """Uniform actions within the env's per-step limits, seeded per episode."""

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def act(self, env, obs, goal):
        space = env.action_space
        return self.rng.uniform(space.low, space.high).astype(np.float32), None, None


class ExpertPolicy:
    """The scripted expert (privileged simulator state): the upper bound."""

    def reset(self, seed: int) -> None:
        pass

    def act(self, env, obs, goal):
        return expert_action(env), None, None


class PlannerPolicy:
    """MPC through ``Planner.plan``: sees the camera image and end-effector state, and the goal
    image (plus the goal state only when the model is the ground-truth-state model)."""

    def __init__(self, planner: Planner, goal_state: bool, views: int = 1) -> None:
        self.planner = planner
        self.goal_state = goal_state
        self.views = views  # camera views the model takes: the env may render more

    def reset(self, seed: int) -> None:
        self.planner.reset(seed)

    def act(self, env, obs, goal):
        target = {"image": first_views(goal["image"], self.views)}
        if self.goal_state:
            target["state"] = goal["state"]
        image = first_views(obs["image"], self.views)
        plan = self.planner.plan({"image": image, "state": obs["state"]}, target)
        return plan.action, plan.timings["total"], plan.evaluations


class EpisodeRun:
    """One episode in progress, stepped from outside: ``decide`` asks the policy (thread-safe
    for a planner: it reads only the stored observation and goal), ``advance`` steps the env
    (main thread only: the renderer belongs to the thread that made the env).

    Attributes:
        obs: the latest observation. step_index: control steps taken so far.
    """

    def __init__(
        self,
        env,
        policy: Policy,
        seed: int,
        use_subgoals: bool = False,
        keep_frames: bool = False,
        on_step: StepHook | None = None,
    ) -> None:
        """Reset ``env`` and ``policy`` with ``seed`` (see ``run_episode`` for the rest)."""
        self.started = time.perf_counter()
        self.env, self.policy, self.seed, self.keep_frames = env, policy, seed, keep_frames
        self.on_step = on_step
        self.obs, _ = env.reset(seed=seed)
        self.start_state = self.obs["state"].tolist()
        self.goals = episode_goals(env, use_subgoals)
        self.stages = goal_schedule(env.task.name, len(self.goals), env.episode_length)
        policy.reset(seed)
        self.frames, self.goal_frames = [self.obs["image"]], [self.goals[self.stages[0]]["image"]]
        self.plan_s: list[float] = []
        self.evaluations: list[int | None] = []
        self.info: dict[str, Any] = {}
        self.step_index = 0

    @property
    def done(self) -> bool:
        """All control steps taken."""
        return self.step_index >= len(self.stages)

    @property
    def goal(self) -> dict:
        """The (sub)goal observation aimed at in the current step."""
        return self.goals[self.stages[self.step_index]]

    def decide(self) -> Decision:
        """The policy's decision for the current step (the env is only read, not stepped)."""
        return self.policy.act(self.env, self.obs, self.goal)

    def advance(self, decision: Decision) -> None:
        """Step the env with ``decision``'s action and record the step."""
        action, seconds, evals = decision
        goal = self.goal
        self.obs, _, _, _, self.info = self.env.step(action)
        if seconds is not None:
            self.plan_s.append(seconds)
            self.evaluations.append(evals)
        if self.keep_frames:
            self.frames.append(self.obs["image"])
            self.goal_frames.append(goal["image"])
        self.step_index += 1
        if self.on_step is not None:
            self.on_step()

    def record(self) -> dict[str, Any]:
        """The finished episode's record (see ``run_episode``)."""
        record = {
            "seed": self.seed,
            "success": bool(self.info["success"]),
            "distance": float(self.info["distance"]),
            "steps": len(self.stages),
            "plan_s": self.plan_s,
            "evaluations": self.evaluations,
            "start_state": self.start_state,
            "goal_state": self.goals[-1]["state"].tolist(),
            "wall_s": time.perf_counter() - self.started,
        }
        if self.keep_frames:
            record.update(frames=self.frames, goal_frames=self.goal_frames)
        return record


def run_episode(
    env,
    policy: Policy,
    seed: int,
    use_subgoals: bool = False,
    keep_frames: bool = False,
    on_step: StepHook | None = None,
) -> dict[str, Any]:
    """One episode of exactly ``env.episode_length`` steps; success from the last step's info;
    ``on_step`` is called after each step.

    Returns:
        seed, success, distance, steps, plan_s [steps] and evaluations [steps] (empty for
        baselines), start_state [7], goal_state [7], wall_s; with ``keep_frames`` also
        "frames" and "goal_frames" (uint8 [H, W, 3] each, reset frame first).
    """
    episode = EpisodeRun(env, policy, seed, use_subgoals, keep_frames, on_step)
    while not episode.done:
        episode.advance(episode.decide())
    return episode.record()


def decide_in_lanes(
    episodes: list[EpisodeRun], batcher: RolloutBatcher, pool: ThreadPoolExecutor
) -> dict[int, Decision]:
    """Every unfinished lane's decision, planned concurrently (lane i in a pool thread, its
    rollouts merged with the others' by ``batcher``); raises the first lane's error, if any,
    once all lanes have returned."""
    lanes = [index for index, episode in enumerate(episodes) if not episode.done]
    for index in lanes:  # all lanes active before any starts: none flushes alone
        batcher.enter(index)

    def decide(index: int) -> Decision:
        try:
            return episodes[index].decide()
        finally:
            batcher.leave(index)

    futures = {index: pool.submit(decide, index) for index in lanes}
    wait(futures.values())
    return {index: future.result() for index, future in futures.items()}


def run_lanes(
    envs: list,
    policies: list[Policy],
    seeds: list[int],
    batcher: RolloutBatcher,
    pool: ThreadPoolExecutor,
    use_subgoals: bool = False,
    keep_frames: bool = False,
    on_step: StepHook | None = None,
) -> list[dict[str, Any]]:
    """Episodes ``seeds`` in lock-step lanes (lane i: ``envs[i]``, ``policies[i]``): per control
    step, plan every lane concurrently, then step every env here, in the calling thread
    (``on_step`` once per lane and step).

    Returns:
        one ``run_episode`` record per seed, in order (``wall_s`` spans the lanes' shared run).
    """
    episodes = [
        EpisodeRun(env, policy, seed, use_subgoals, keep_frames, on_step)
        for env, policy, seed in zip(envs, policies, seeds, strict=False)  # last group: fewer
    ]
    while not all(episode.done for episode in episodes):
        for index, decision in decide_in_lanes(episodes, batcher, pool).items():
            episodes[index].advance(decision)
    return [episode.record() for episode in episodes]


def make_policy(
    method: Method, device: torch.device, world_model: LatentWorldModel | None = None
) -> Policy:
    """The policy that runs ``method`` (a fresh planner per configuration), on ``world_model``
    when given (a batcher's lane model) instead of ``method.world_model``."""
    if method.planner_config is None:
        return RandomPolicy() if method.label == "random" else ExpertPolicy()
    model = method.world_model if world_model is None else world_model
    planner = Planner(method.planner_config, model, device)
    goal_state = isinstance(method.world_model, StateWorldModel)
    return PlannerPolicy(planner, goal_state, model_views(method.world_model))


def finish_record(
    record: dict[str, Any],
    index: int,
    task: str,
    method: Method,
    config: BenchConfig,
    out: Path,
    records: list[dict[str, Any]],
) -> None:
    """Label episode ``index``'s record, write its video (``config.videos``), append it to
    ``records``, then print its line (a user who stops the run at that line keeps it)."""
    seed = record["seed"]
    record.update(task=task, method=method.label, model=method.model, planner=method.planner)
    if config.videos:
        name = f"{task}__{method.label.replace('/', '_')}__seed{seed}{report.video_suffix()}"
        report.write_video(out / "videos" / name, record.pop("frames"), record.pop("goal_frames"))
        record["video"] = f"videos/{name}"
    records.append(record)
    timing = f" plan {np.median(record['plan_s']):.4f} s/action" if record["plan_s"] else ""
    tqdm.write(  # above the progress bar
        f"[{task} {method.label}] episode {index + 1}/{config.episodes} seed {seed}: "
        f"success={int(record['success'])} distance={record['distance']:.4f} m{timing}",
        file=sys.stdout,
    )


def run_batched(
    envs: list,
    task: str,
    method: Method,
    config: BenchConfig,
    device: torch.device,
    out: Path,
    records: list[dict[str, Any]],
    on_step: StepHook | None = None,
) -> None:
    """A planner method's episodes in groups of ``len(envs)`` lock-step lanes sharing one
    ``RolloutBatcher`` (one planner per lane, each reset with its episode's seed); each group's
    records are appended to ``records`` as it finishes."""
    lanes = len(envs)
    world_model = method.world_model
    if isinstance(world_model, torch.nn.Module):
        world_model = world_model.to(device).eval()
    batcher = RolloutBatcher(world_model, lanes)
    # The model's own device ("cuda:0" for "cuda"): what Planner compares a lane model with.
    lane_device = model_device(world_model)
    policies = [make_policy(method, lane_device, batcher.lane(i)) for i in range(lanes)]
    use_subgoals = task in config.subgoals
    seeds = [config.seed + index for index in range(config.episodes)]
    with ThreadPoolExecutor(lanes, thread_name_prefix="bench-lane") as pool:
        for first in range(0, len(seeds), lanes):
            group = seeds[first : first + lanes]
            results = run_lanes(
                envs, policies, group, batcher, pool, use_subgoals, config.videos, on_step
            )
            for offset, record in enumerate(results):
                finish_record(record, first + offset, task, method, config, out, records)


def run_configuration(
    envs: list,
    task: str,
    method: Method,
    config: BenchConfig,
    device: torch.device,
    out: Path,
    records: list[dict[str, Any]],
    on_step: StepHook | None = None,
) -> None:
    """All seeded episodes of one (task, method), each record appended to ``records`` when its
    episode ends (an interrupted run keeps the finished ones); a line per episode, ``on_step``
    after every control step.

    A planner method with more than one env runs batched (``run_batched``, one lane per env);
    baselines, and everything with one env, run one episode after another on ``envs[0]``.
    """
    if method.planner_config is not None and len(envs) > 1:
        run_batched(envs, task, method, config, device, out, records, on_step)
        return
    policy = make_policy(method, device)
    use_subgoals = task in config.subgoals
    for index in range(config.episodes):
        seed = config.seed + index
        record = run_episode(envs[0], policy, seed, use_subgoals, config.videos, on_step)
        finish_record(record, index, task, method, config, out, records)
