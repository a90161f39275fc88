"""Fault injection for training: SIGKILL a toy ``jepa-mpc train predictor`` run at a random
moment after its first checkpoint, restart the same command, and check that it resumed from the
last complete checkpoint, lost at most one checkpoint interval, finished, left no temp files and
wrote a loss log with every step exactly once (matching an uninterrupted run). Prints a table and
writes JSON.

    python scripts/fault_train_kill.py --repeats 3 --out fault_train_kill.json
"""

from __future__ import annotations

import argparse
import csv
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from world_model.files import write_json

REPO = Path(__file__).resolve().parents[1]
RESUME_LINE = re.compile(r"\[train predictor\] steps (\d+)\.\.(\d+)")
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.pt$")


class FaultRunError(RuntimeError):
    """The training subprocess misbehaved before the fault could be injected."""


def collect_toy_data(root: Path) -> Path:
    """Two recorded MuJoCo ``reach`` episodes of 6 steps at 64 px (as the pipeline test)."""
    from jepa_mpc.collect import collect

    collect(root, ["reach"], 2, workers=1, progress=False, image_size=64, steps=6)
    return root


def train_command(data: Path, out: Path, steps: int, every: int) -> list[str]:
    """The toy training command (tiny model, a log row every step)."""
    return [
        sys.executable, "-m", "jepa_mpc", "train", "predictor", "--config", "predictor_tiny",
        "--data", str(data), "--out", str(out), f"steps={steps}", f"checkpoint_every={every}",
        "log_every=1", "keep_checkpoints=2", "device=cpu",
    ]  # fmt: skip


def logged_steps(out: Path) -> list[int]:
    """The ``step`` column of ``out/metrics.csv`` (empty when absent)."""
    try:
        with open(out / "metrics.csv", newline="", encoding="utf-8") as handle:
            return [int(row["step"]) for row in csv.DictReader(handle) if row.get("step")]
    except (FileNotFoundError, ValueError):  # not written yet, or a row being appended
        return []


def logged_losses(out: Path) -> dict[int, float]:
    with open(out / "metrics.csv", newline="", encoding="utf-8") as handle:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(handle)}


def checkpoint_files(out: Path) -> tuple[list[int], list[str]]:
    """(steps of the final-named checkpoints, names of anything else) in ``out/checkpoints``."""
    folder = out / "checkpoints"
    if not folder.is_dir():
        return [], []
    steps, others = [], []
    for path in folder.iterdir():
        match = CHECKPOINT_NAME.match(path.name)
        if match:
            steps.append(int(match.group(1)))
        else:
            others.append(path.name)
    return sorted(steps), sorted(others)


def readable_steps(out: Path, steps: list[int]) -> list[int]:
    """The checkpoints among ``steps`` that load (what a correct resume may pick from)."""
    import torch

    good = []
    for step in steps:
        try:
            torch.load(out / "checkpoints" / f"step-{step:08d}.pt", weights_only=True)
            good.append(step)
        except Exception:  # noqa: BLE001 - any unreadable file is simply not a candidate
            pass
    return good


def temp_files(out: Path) -> list[str]:
    """Every temp or half-written file left anywhere in the run folder."""
    found = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")]
    return sorted(str(p.relative_to(out)) for p in found)


def run_until_killed(
    command: list[str],
    out: Path,
    kill_step: int,
    rng: np.random.Generator,
    timeout_s: float,
    during_save: bool = False,
) -> dict:
    """Start ``command``, wait until step ``kill_step`` is logged and a checkpoint exists, then
    SIGKILL it after a random fraction of one step or, with ``during_save``, as soon as a
    checkpoint temp file appears (mid-write). Returns what was on disk at the kill."""
    log = open(out.parent / f"{out.name}-killed.log", "w", encoding="utf-8")
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout_s
    try:
        while max(logged_steps(out), default=0) < kill_step or not checkpoint_files(out)[0]:
            if process.poll() is not None:
                raise FaultRunError(f"training exited ({process.returncode}) before the kill")
            if time.monotonic() > deadline:
                raise FaultRunError(f"step {kill_step} not reached within {timeout_s:.0f} s")
            time.sleep(0.01)
        if during_save:
            _wait_for_partial_save(process, out, deadline)
        else:
            time.sleep(float(rng.uniform(0.0, _last_step_seconds(out))))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
    steps, others = checkpoint_files(out)
    return {
        "returncode": process.returncode,
        "progress_step": max(logged_steps(out), default=0),
        "checkpoints": steps,
        "readable_checkpoints": readable_steps(out, steps),
        "temp_files": [name for name in others if name.endswith(".tmp")],
    }


def _wait_for_partial_save(process: subprocess.Popen, out: Path, deadline: float) -> None:
    """Poll (about every 0.2 ms) until a checkpoint temp file exists: a save in progress."""
    while not any(name.endswith(".tmp") for name in checkpoint_files(out)[1]):
        if process.poll() is not None or time.monotonic() > deadline:
            raise FaultRunError("no checkpoint save caught in progress before the run ended")
        time.sleep(0.0002)


def _last_step_seconds(out: Path) -> float:
    """Wall time of the last logged step (the random kill delay is drawn within it)."""
    with open(out / "metrics.csv", newline="", encoding="utf-8") as handle:
        seconds = [float(row["seconds"]) for row in csv.DictReader(handle)]
    return max(seconds[-1] - seconds[-2], 0.01) if len(seconds) > 1 else 0.1


def restart(command: list[str], out: Path, timeout_s: float) -> dict:
    """Run ``command`` again to completion; returns its exit code, resume step and output."""
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=timeout_s, check=False
    )
    match = RESUME_LINE.search(result.stdout)
    return {
        "returncode": result.returncode,
        "resumed_from": int(match.group(1)) if match else None,
        "output_tail": (result.stdout + result.stderr)[-1500:],
    }


def check_trial(
    killed: dict, resumed: dict, out: Path, steps: int, every: int, reference: dict | None
) -> dict[str, bool]:
    """The pass/fail checks of one kill-and-resume trial."""
    logged = logged_steps(out)
    expected_resume = max(killed["readable_checkpoints"], default=0)
    checkpoints, others = checkpoint_files(out)
    checks = {
        "killed_by_sigkill": killed["returncode"] == -signal.SIGKILL,
        "checkpoint_before_kill": bool(killed["checkpoints"]),
        "resumed_from_last_complete": resumed["resumed_from"] == expected_resume,
        "lost_at_most_one_interval": resumed["resumed_from"] is not None
        and 0 <= killed["progress_step"] - resumed["resumed_from"] <= every,
        "finished": resumed["returncode"] == 0
        and (out / "model" / "model.safetensors").is_file()
        and max(logged, default=0) == steps,
        "no_temp_files": not temp_files(out) and not others and len(checkpoints) <= 2,
        "loss_log_continuous": logged == list(range(1, steps + 1)),
    }
    if reference is not None:
        losses = logged_losses(out)
        checks["losses_match_uninterrupted"] = set(losses) == set(reference) and all(
            np.isclose(losses[s], reference[s], rtol=1e-5, atol=1e-6) for s in reference
        )
    return checks


def run_trial(
    data: Path,
    out: Path,
    steps: int,
    every: int,
    rng: np.random.Generator,
    reference: dict | None,
    timeout_s: float,
    during_save: bool = False,
) -> dict:
    """One kill-and-resume trial in the fresh run folder ``out``."""
    command = train_command(data, out, steps, every)
    last = steps - every - 1 if during_save else steps - 1  # leave a save to catch
    kill_step = int(rng.integers(every, max(last, every + 1)))  # >= 1 checkpoint, before the end
    started = time.perf_counter()
    killed = run_until_killed(command, out, kill_step, rng, timeout_s, during_save)
    resumed = restart(command, out, timeout_s)
    checks = check_trial(killed, resumed, out, steps, every, reference)
    lost = None
    if resumed["resumed_from"] is not None:
        lost = killed["progress_step"] - resumed["resumed_from"]
    return {
        "moment": "during checkpoint save" if during_save else "random",
        "kill_step_target": kill_step,
        "killed": killed,
        "resumed_from": resumed["resumed_from"],
        "lost_steps": lost,
        "restart_returncode": resumed["returncode"],
        "restart_output_tail": None if all(checks.values()) else resumed["output_tail"],
        "checks": checks,
        "passed": all(checks.values()),
        "wall_s": time.perf_counter() - started,
    }


def reference_losses(data: Path, out: Path, steps: int, every: int, timeout_s: float) -> dict:
    """Losses of an uninterrupted run of the same command."""
    subprocess.run(
        train_command(data, out, steps, every),
        cwd=REPO, capture_output=True, timeout=timeout_s, check=True,
    )  # fmt: skip
    return logged_losses(out)


def print_table(trials: list[dict], every: int) -> None:
    print(f"{'trial':>5} {'moment':>7} {'killed@':>8} {'ckpts at kill':>14} {'resumed':>8} "
          f"{'lost':>5} {'tmp at kill':>11} {'pass':>5}  failed checks")  # fmt: skip
    for index, trial in enumerate(trials):
        killed = trial["killed"]
        failed = [name for name, ok in trial["checks"].items() if not ok]
        moment = "save" if trial["moment"].startswith("during") else "random"
        print(
            f"{index:>5} {moment:>7} {killed['progress_step']:>8} {str(killed['checkpoints']):>14} "
            f"{str(trial['resumed_from']):>8} {str(trial['lost_steps']):>5} "
            f"{len(killed['temp_files']):>11} {str(trial['passed']):>5}  {', '.join(failed)}"
        )
    print(f"checkpoint interval {every} steps; lost steps must be <= {every}")


def run(args: argparse.Namespace, work: Path) -> dict:
    """Collect the toy data, run the reference and ``args.repeats`` trials under ``work``."""
    rng = np.random.default_rng(args.seed)
    data = collect_toy_data(work / "data")
    reference = None
    if not args.no_reference:
        reference = reference_losses(data, work / "reference", args.steps, args.every, args.timeout)
    trials = []
    for index in range(args.repeats):
        during_save = args.moment == "save" or (args.moment == "mixed" and index % 2 == 1)
        out = work / f"trial-{index}"
        trial = run_trial(
            data, out, args.steps, args.every, rng, reference, args.timeout, during_save
        )
        trials.append(trial)
        print(f"trial {index}: passed={trial['passed']} ({trial['wall_s']:.1f} s)", flush=True)
    return {
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "work")},
        "command": " ".join(train_command(Path("DATA"), Path("OUT"), args.steps, args.every)),
        "trials": trials,
        "passed": all(t["passed"] for t in trials),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/fault_train_kill.py", description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="kill-and-resume trials")
    parser.add_argument("--steps", type=int, default=30, help="training steps per run")
    parser.add_argument("--every", type=int, default=5, help="checkpoint interval (steps)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    parser.add_argument(
        "--moment",
        choices=("random", "save", "mixed"),
        default="mixed",
        help="kill at a random moment, while a checkpoint is being written, or alternate",
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per training run")
    parser.add_argument("--no-reference", action="store_true", help="skip the loss comparison")
    parser.add_argument("--work", type=Path, default=None, help="keep run folders here")
    parser.add_argument("--out", type=Path, default=Path("fault_train_kill.json"))
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.every < 1 or args.steps < args.every + 2:
        parser.error("need --repeats >= 1, --every >= 1 and --steps >= --every + 2")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the trials, print the table, write JSON; exit 1 if any check failed."""
    args = parse_args(argv)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        result = run(args, args.work)
    else:
        with tempfile.TemporaryDirectory(prefix="fault_train_kill.") as work:
            result = run(args, Path(work))
    print_table(result["trials"], args.every)
    write_json(args.out, result)
    print(f"{'PASS' if result['passed'] else 'FAIL'}; wrote {args.out}")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
