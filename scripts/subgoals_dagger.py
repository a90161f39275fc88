"""Train the hierarchical mode's subgoal generator with DAgger rounds, one command.

    python scripts/subgoals_dagger.py --work /tmp/dagger --init /tmp/s11/sub3/model \\
        --data /tmp/s9/data --rounds 4

Round r: ``jepa-mpc collect --planner subgoal_policy`` drives ``--episodes`` pick_place, push
and grasp episodes toward their final goal image with round r-1's model (``--init`` for the
first; the scripted expert acts on ``--expert-share`` of the steps), every frame labelled by the
relabelling expert (``sim.experts.LEARNER``); then ``jepa-mpc train subgoals`` continues round
r-1's generator on the demonstrations (``--data``) plus the DAgger data of rounds 1..r
(``subgoals.dagger_data``). Only the generator trains; the encoder, predictor and readout are
``--init``'s. ``bench`` runs the last round's model with ``subgoal_policy`` from one goal image
on the evaluation seeds.

Every stage resumes after a kill: a round's collection is redone unless its folder holds all
its episodes, its training resumes from its last checkpoint, the bench rewrites its outputs.
Figures and why each setting: ``docs/sim_small.md``, "Session 12".
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from jepa_mpc.recipe import episodes_in, run
from sim.tasks import TRAINING_SEEDS_START

TASKS = "pick_place,push,grasp"
DAGGER_SEEDS = TRAINING_SEEDS_START + 1_200_000  # above every demonstration recipe's seeds
PLANNER = "subgoal_policy"
TRAIN = (  # continue the generator: a short, low learning-rate pass per round
    "steps=400",
    "batch_size=32",
    "optim.lr=2.0e-4",
    "optim.warmup_steps=20",
    "optim.decay_steps=350",
    "subgoals.dagger_weight=2.0",
)


def reuse_cache(previous: Path, out: Path) -> None:
    """Give round ``out`` the previous round's latent caches (the encoder is the same, so
    they are valid; the stage checks their fingerprints, encodes only the new round's DAgger
    data and rebuilds anything that does not match)."""
    out.mkdir(parents=True, exist_ok=True)
    for name in ("subgoal_latents.pt", "subgoal_dagger_latents.pt"):
        if (previous / name).is_file() and not (out / name).exists():
            shutil.copyfile(previous / name, out / name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the rounds' data and runs")
    parser.add_argument("--init", required=True, help="model with a trained subgoal generator")
    parser.add_argument("--data", required=True, help="the demonstrations it was trained on")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--episodes", type=int, default=120, help="DAgger episodes per round")
    parser.add_argument("--expert-share", type=float, default=0.3, dest="expert_share")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", default="rounds,bench", help="rounds, bench")
    parser.add_argument("--bench-episodes", type=int, default=50, dest="bench_episodes")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.episodes < 1:
        parser.error("--rounds and --episodes must be >= 1")
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    if stages - {"rounds", "bench"}:
        parser.error(f"unknown stages {sorted(stages - {'rounds', 'bench'})}")
    cli = [sys.executable, "-m", "jepa_mpc.cli"]
    work = Path(args.work)
    model, gathered = args.init, []
    for number in range(1, args.rounds + 1):
        data, out = work / f"dagger{number}", work / f"round{number}"
        gathered.append(str(data))
        if "rounds" in stages and not (out / "model").is_dir():
            if episodes_in(data) < args.episodes:
                shutil.rmtree(data, ignore_errors=True)  # a partial round restarts
                run(
                    [*cli, "collect", "--task", TASKS, "--episodes", str(args.episodes)]
                    + ["--out", str(data), "--cameras", "exterior,wrist", "--image-size", "128"]
                    + ["--workers", str(args.workers), "--planner", PLANNER, "--model", model]
                    + ["--seed", str(DAGGER_SEEDS + 1000 * number)]
                    + ["--expert-share", str(args.expert_share), "cpu_threads=1"]
                )
            reuse_cache(work / f"round{number - 1}", out)
            run(
                [*cli, "train", "subgoals", "--config", "subgoals_sim_small_v2", "--init", model]
                + ["--data", args.data, "--out", str(out), *TRAIN]
                + [f"subgoals.dagger_data=[{','.join(gathered)}]"]
            )
        model = str(out / "model")
    if "bench" in stages:
        run(
            [*cli, "bench", "--tasks", "pick_place,push,reach", "--planners", PLANNER]
            + ["--models", model, "--baselines", "", "--subgoals", ""]
            + ["--episodes", str(args.bench_episodes), "--device", "cpu", "--no-verify"]
            + ["--out", str(work / "bench")]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
