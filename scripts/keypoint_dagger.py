"""Train a one-goal keypoint policy (the one ``--planner`` names) by DAgger rounds, one command.

    python scripts/keypoint_dagger.py --work /tmp/kp --model sim-small-v2 \\
        --dagger /tmp/s12/dag1,/tmp/s12/dag2,/tmp/s12/dag3,/tmp/s12/dag4 --rounds 2

Round 0 fits ``jepa-mpc train policy --dagger`` on the labelled data given (``--dagger``: e.g.
the subgoal generator's DAgger rounds, ``scripts/subgoals_dagger.py``) and writes the policy
beside a copy of ``--model`` (``roundN/model/policy_NAME.safetensors``, NAME from the preset's
``actor.policy: model:NAME``: keypoints for ``keypoint_policy``, reach for ``reach_policy``,
pick_place for ``pick_place_policy``). Round r >= 1 collects ``--episodes`` episodes of
``--tasks`` with ``jepa-mpc collect --planner PRESET`` driven by round r-1's policy (the
scripted expert acting on ``--expert-share`` of the steps, every frame labelled by
``sim.experts.LEARNER``), then fits a fresh policy on all the labelled data so far. The world
model's weights never change. ``bench`` runs the last round's policy from one goal image on the
evaluation seeds.

Every stage resumes after a kill: a round whose policy file exists is skipped, a partial
collection is redone, the encoded frames are cached per dataset (``work/dagger_latents.pt``).
Figures and why each setting: ``docs/sim_small.md``, "Session 13" (push) and "Session 14"
(reach, pick_place).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from jepa_mpc.recipe import episodes_in, run
from planner.policy import named_policy_file
from sim.tasks import TRAINING_SEEDS_START

DAGGER_SEEDS = TRAINING_SEEDS_START + 1_300_000  # above the subgoal rounds' seeds
PLANNER = "keypoint_policy"
MODEL_FILES = ("config.json", "model.safetensors", "policy.safetensors", "SHA256SUMS")


def preset_policy(planner: str) -> str:
    """NAME of the planner preset's ``actor.policy: model:NAME`` (the policy this recipe trains).

    Raises:
        ValueError: the preset is unknown or does not run a policy named beside the model.
    """
    from planner.config import MODEL_POLICY, load_planner_config

    try:
        policy = load_planner_config(planner).actor.policy or ""
    except (ValueError, OSError) as error:  # unknown preset, bad YAML: one line naming it
        raise ValueError(f"--planner {planner}: {error}") from error
    kind, _, name = policy.partition(":")
    if kind != MODEL_POLICY or not name:
        raise ValueError(
            f"--planner {planner} runs actor.policy {policy or 'none'!r}; this recipe trains a "
            "preset whose actor.policy is model:NAME (keypoint_policy, reach_policy, "
            "pick_place_policy)"
        )
    return name


def model_copy(model: str, out: Path, policy: str) -> Path:
    """``out`` holding the world model's files (the policy ``policy`` is written beside them),
    its SHA256SUMS listing only the files copied (a shipped policy's hash would fail the
    check of the round's own policy, or name a file the copy lacks)."""
    from world_model.checkpoint import find_checkpoint

    source = find_checkpoint(model)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (source / name).is_file() and not (out / name).exists():
            shutil.copyfile(source / name, out / name)
    record = out / "SHA256SUMS"
    if record.is_file():  # keep the copied files' hashes: drop shipped policies' (and ours)
        lines = record.read_text().splitlines()
        kept = [line for line in lines if line.split()[-1] in MODEL_FILES and policy not in line]
        record.write_text("".join(f"{line}\n" for line in kept))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", required=True, help="folder for the rounds' data and policies")
    parser.add_argument("--model", default="sim-small-v2", help="the (frozen) world model")
    parser.add_argument("--dagger", required=True, help="comma-separated labelled datasets")
    parser.add_argument("--rounds", type=int, default=2, help="collecting rounds after round 0")
    parser.add_argument("--tasks", default="push")
    parser.add_argument(
        "--planner",
        default=PLANNER,
        help="the preset whose policy is trained (actor.policy: model:NAME, written as "
        "policy_NAME.safetensors): keypoint_policy (push), reach_policy, pick_place_policy",
    )
    parser.add_argument("--episodes", type=int, default=150, help="DAgger episodes per round")
    parser.add_argument("--expert-share", type=float, default=0.3, dest="expert_share")
    parser.add_argument("--steps", type=int, default=3000, help="policy training steps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stages", default="rounds,bench", help="rounds, bench")
    parser.add_argument("--bench-episodes", type=int, default=50, dest="bench_episodes")
    args = parser.parse_args(argv)
    if args.rounds < 0 or args.episodes < 1 or args.steps < 1:
        parser.error("--rounds must be >= 0, --episodes and --steps >= 1")
    try:
        policy = named_policy_file(preset_policy(args.planner))
    except ValueError as error:
        parser.error(str(error))
    stages = {s.strip() for s in args.stages.split(",") if s.strip()}
    if stages - {"rounds", "bench"}:
        parser.error(f"unknown stages {sorted(stages - {'rounds', 'bench'})}")
    cli = [sys.executable, "-m", "jepa_mpc.cli"]
    work = Path(args.work)
    gathered = [root for root in args.dagger.split(",") if root]
    folder = work / "round0" / "model"
    for number in range(args.rounds + 1):
        folder = work / f"round{number}" / "model"
        if number and "rounds" in stages and not (folder / policy).is_file():
            data = work / f"dagger{number}"
            if episodes_in(data) < args.episodes:
                shutil.rmtree(data, ignore_errors=True)  # a partial round restarts
                previous = work / f"round{number - 1}" / "model"
                run(
                    [*cli, "collect", "--task", args.tasks, "--episodes", str(args.episodes)]
                    + ["--out", str(data), "--cameras", "exterior,wrist", "--image-size", "128"]
                    + ["--workers", str(args.workers), "--planner", args.planner]
                    + ["--model", str(previous), "--seed", str(DAGGER_SEEDS + 1000 * number)]
                    + ["--expert-share", str(args.expert_share), "cpu_threads=1"]
                )
        if number:
            gathered.append(str(work / f"dagger{number}"))
        if "rounds" in stages and not (folder / policy).is_file():
            model_copy(args.model, folder, policy)
            run(
                [*cli, "train", "policy", "--model", args.model, "--dagger", ",".join(gathered)]
                + ["--cache", str(work / "dagger_latents.pt"), "--out", str(folder / policy)]
                + ["--steps", str(args.steps)]
            )
    if "bench" in stages:
        run(
            [*cli, "bench", "--tasks", args.tasks, "--planners", args.planner]
            + ["--models", str(folder), "--baselines", "", "--subgoals", ""]
            + ["--episodes", str(args.bench_episodes), "--device", "cpu", "--no-verify"]
            + ["--out", str(work / "bench")]
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
