"""Retrain sim-small v2 end to end with one command: collect, train, policy, probe, evaluate.

    python scripts/sim_small_v2.py --work /tmp/v2                 # everything (hours on 2 cores)
    python scripts/sim_small_v2.py --work /tmp/v2 --stages collect,train --steps 800

v2 sees two camera views side by side, the exterior camera and a wrist camera (``--cameras``),
and trains encoder and predictor end to end from sim-small v1 (``--config``,
``configs/train/joint_sim_small_2view.yaml``); ``policy`` fits the ``fast`` preset's proposal
policy to it; ``bench`` evaluates it with ``fast`` on the evaluation seeds.

Every stage resumes after a kill: ``collect`` tops the dataset up to ``--episodes`` (continuing
the training seed range where the folder stops; whole chunks only), ``train`` resumes from the
run's last checkpoint (``jepa-mpc train joint``), ``policy``, ``probe`` and ``bench`` rewrite
their outputs. Each stage shows a progress bar; the loss plot is ``WORK/run/loss.png``. The
recipe, its figures and why each choice: ``docs/sim_small.md`` and the model card.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jepa_mpc.recipe import episodes_in, run
from sim.tasks import TRAINING_SEEDS_START

REPO = Path(__file__).resolve().parents[1]
STAGES = ("collect", "train", "policy", "probe", "bench")
# A quarter each of reach, grasp, pick_place and push episodes.
TASK_CYCLE = "reach,grasp,pick_place,push,grasp,pick_place,reach,push"
# The full search the policy imitates and fast falls back to (its sizes as in fast.yaml).
SEARCH = ("actor.samples=64", "actor.iterations=6", "actor.elites=6")
PLANNER = "fast"  # the default preset of sim-small (its proposal policy: the policy stage)


def collect(cli: list[str], data: Path, episodes: int, workers: int, cameras: str) -> None:
    """Top the dataset up to ``episodes``, continuing the training seeds where it stops."""
    have = episodes_in(data)
    if have >= episodes:
        print(f"collect: {data} has {have} episodes (>= {episodes}), skipped")
        return
    run(
        [
            *cli,
            "collect",
            "--task",
            TASK_CYCLE,
            "--episodes",
            str(episodes - have),
            "--seed",
            str(TRAINING_SEEDS_START + have),
            "--out",
            str(data),
            "--image-size",
            "128",
            "--workers",
            str(workers),
            "--cameras",
            cameras,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the flags and run the chosen stages in order."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", required=True, help="folder for data, run, probe and bench")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated subset")
    parser.add_argument("--episodes", type=int, default=640, help="training episodes")
    parser.add_argument("--workers", type=int, default=2, help="collection processes")
    parser.add_argument("--cameras", default="exterior,wrist", help="views of each frame")
    parser.add_argument("--config", default="joint_sim_small_2view", help="training config")
    parser.add_argument("--steps", type=int, default=1300, help="joint training steps")
    parser.add_argument("--eval-episodes", type=int, default=50, help="per task and method")
    parser.add_argument("--tasks", default="reach,grasp,pick_place,push", help="tasks to bench")
    args = parser.parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; known: {', '.join(STAGES)}")
    cli = [sys.executable, "-m", "jepa_mpc"]  # the CLI of the interpreter running this
    work = Path(args.work)
    data, run_dir = work / "data", work / "run"
    model = run_dir / "model"
    if "collect" in stages:
        collect(cli, data, args.episodes, args.workers, args.cameras)
    if "train" in stages:
        run(
            [
                *cli,
                "train",
                "joint",
                "--config",
                args.config,
                "--data",
                str(data),
                "--out",
                str(run_dir),
                f"steps={args.steps}",
            ]
        )
    if "policy" in stages:  # the fast preset's proposal, beside the model (policy.safetensors)
        run(
            [
                *cli,
                "train",
                "policy",
                "--model",
                str(model),
                "--data",
                str(data),
                "--out",
                str(model / "policy.safetensors"),
                "--planner-labels",
                "200",
                *SEARCH,
            ]
        )
    if "probe" in stages:
        probe = REPO / "scripts" / "probe_gripper.py"
        out = work / "probe.json"
        run(
            [
                sys.executable,
                str(probe),
                "--model",
                str(model),
                "--top-tokens",
                "4",
                "--physics",
                "--no-verify",
                "--out",
                str(out),
            ]
        )
    if "bench" in stages:  # v2 beside v1 (the bundled sim-small), each with its own policy
        run(
            [
                *cli,
                "bench",
                "--tasks",
                args.tasks,
                "--planners",
                PLANNER,
                "--models",
                f"{model},sim-small",
                "--baselines",
                "",
                "--episodes",
                str(args.eval_episodes),
                "--device",
                "cpu",
                "--out",
                str(work / "bench"),
            ]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
