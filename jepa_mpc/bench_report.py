"""Statistics and outputs of ``jepa-mpc bench``: Wilson intervals, per-configuration summaries,
the Markdown table, PNG plots, episode videos, all written atomically (``world_model.files``)."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from world_model.files import atomic_write, pyplot, save_figure, write_json, write_text

Z_95 = 1.959963984540054  # two-sided 95 % normal quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion.

    Args:
        successes: number of successes (0..trials).
        trials: number of trials; 0 gives the uninformative interval (0, 1).
        z: normal quantile (1.96 for 95 %).

    Returns:
        (low, high), both in [0, 1].
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes}/{trials}")
    if trials == 0:
        return 0.0, 1.0
    rate = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


def summarise(episodes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration's row from its episode records (see ``bench_episodes.run_episode``).

    Returns:
        task, method, model, planner, episodes, successes, success_rate, success_ci95 [2],
        distance_mean, distance_median, steps, plan_s_median, plan_s_p90 (None for baselines),
        evaluations_per_action (None for baselines).
    """
    first = episodes[0]
    successes = sum(bool(e["success"]) for e in episodes)
    distances = np.array([e["distance"] for e in episodes], dtype=np.float64)
    times = np.concatenate([np.asarray(e["plan_s"], np.float64) for e in episodes])
    evaluations = np.concatenate([np.asarray(e["evaluations"], np.float64) for e in episodes])
    return {
        "task": first["task"],
        "method": first["method"],
        "model": first["model"],
        "planner": first["planner"],
        "episodes": len(episodes),
        "successes": successes,
        "success_rate": successes / len(episodes),
        "success_ci95": list(wilson_interval(successes, len(episodes))),
        "distance_mean": float(distances.mean()),
        "distance_median": float(np.median(distances)),
        "steps": int(first["steps"]),
        "plan_s_median": float(np.median(times)) if times.size else None,
        "plan_s_p90": float(np.percentile(times, 90)) if times.size else None,
        "evaluations_per_action": float(evaluations.mean()) if evaluations.size else None,
    }


def _number(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


TABLE_HEADER = (
    "| task | method | success | 95 % CI | final dist mean / median (m) | steps "
    "| plan s/action median / p90 | evals/action |"
)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The summary rows as a Markdown table (one line per configuration)."""
    lines = [TABLE_HEADER, "|" + "---|" * 8]
    for row in rows:
        low, high = row["success_ci95"]
        lines.append(
            f"| {row['task']} | {row['method']} | {row['successes']}/{row['episodes']} "
            f"({row['success_rate']:.0%}) | [{low:.2f}, {high:.2f}] "
            f"| {row['distance_mean']:.4f} / {row['distance_median']:.4f} | {row['steps']} "
            f"| {_number(row['plan_s_median'], '.4f')} / {_number(row['plan_s_p90'], '.4f')} "
            f"| {_number(row['evaluations_per_action'], '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def plot_success(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Grouped bars: success rate per task (group) and method (bar), Wilson 95 % error bars."""
    tasks = list(dict.fromkeys(row["task"] for row in rows))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    width = 0.8 / len(methods)
    figure, axes = pyplot().subplots(
        figsize=(max(6.0, 1.6 * len(tasks) * len(methods) ** 0.5), 4.0)
    )
    for index, method in enumerate(methods):
        found = {row["task"]: row for row in rows if row["method"] == method}
        xs = [t + (index - (len(methods) - 1) / 2) * width for t, task in enumerate(tasks)]
        rates = [found[task]["success_rate"] if task in found else np.nan for task in tasks]
        errors = np.array(
            [
                [rate - found[task]["success_ci95"][0], found[task]["success_ci95"][1] - rate]
                if task in found
                else [0.0, 0.0]
                for task, rate in zip(tasks, rates, strict=True)
            ]
        ).T
        errors = np.maximum(errors, 0.0)  # rounding can leave -1e-17 at a bound
        axes.bar(xs, rates, width, yerr=errors, capsize=3, label=method)
    axes.set_xticks(range(len(tasks)), tasks)
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("success rate (95 % Wilson CI)")
    axes.legend(fontsize=8)
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def plot_planning_time(path: Path, times: dict[str, np.ndarray]) -> None:
    """Box plot of per-action planning time (seconds, log scale) for each planner config."""
    labels = [label for label, values in times.items() if len(values)]
    figure, axes = pyplot().subplots(figsize=(max(6.0, 1.2 * len(labels)), 4.0))
    if labels:
        axes.boxplot([times[label] for label in labels], whis=(10, 90), showfliers=False)
        axes.set_xticks(range(1, len(labels) + 1), labels, rotation=30, ha="right", fontsize=8)
        axes.set_yscale("log")
    else:
        axes.text(0.5, 0.5, "no planner configurations", ha="center", va="center")
    axes.set_ylabel("planning s per action (p10..p90)")
    figure.tight_layout()
    save_figure(figure, path, dpi=120)


def video_suffix() -> str:
    """``.mp4`` when imageio's ffmpeg plugin is installed, else ``.gif``."""
    return ".mp4" if importlib.util.find_spec("imageio_ffmpeg") else ".gif"


def write_video(path: Path, frames: Sequence[np.ndarray], goals: Sequence[np.ndarray]) -> None:
    """Episode video: each camera frame ``uint8 [H, W, 3]`` with its goal image to its right.

    Args:
        path: output file; the format follows its suffix (``.mp4`` or ``.gif``), 4 fps.
        frames: camera images, one per step (the reset frame first).
        goals: the goal (or subgoal) image the planner had at each frame, same length.
    """
    import imageio.v2 as imageio

    joined = [np.concatenate((f, g), axis=1) for f, g in zip(frames, goals, strict=True)]
    if path.suffix == ".mp4":
        atomic_write(path, lambda temp: imageio.mimsave(temp, joined, fps=4, macro_block_size=1))
    else:
        atomic_write(path, lambda temp: imageio.mimsave(temp, joined, duration=250, loop=0))


def write_outputs(out: Path, results: dict[str, Any]) -> None:
    """results.json, results.md, success.png, planning_time.png; prints the table."""
    table = markdown_table(results["rows"])
    config = results["config"]
    header = (
        f"# jepa-mpc bench\n\n{config['episodes']} episodes per configuration, seeds "
        f"{config['seed']}..{config['seed'] + config['episodes'] - 1}, "
        f"backend {config['backend']}, image {config['image_size']} px, "
        f"device {results['device']}, "
        f"{results['wall_s']:.0f} s in all.\n\n"
    )
    if results.get("command"):
        header += f"Command: `{results['command']}`\n\n"
    if results.get("interrupted"):
        header += (
            f"**Interrupted ({results['interrupted']['signal']})**: the rows hold the "
            f"{len(results['episodes'])} episodes that finished.\n\n"
        )
    if results.get("shards"):  # a jepa-mpc bench-merge report
        header += "Merged from:\n\n" + "".join(f"* `{c}`\n" for c in results["shards"]) + "\n"
    times: dict[str, list[float]] = {}
    for episode in results["episodes"]:
        if episode["plan_s"]:
            times.setdefault(f"{episode['task']}\n{episode['method']}", []).extend(
                episode["plan_s"]
            )
    write_json(out / "results.json", results)
    write_text(out / "results.md", header + table)
    plot_success(out / "success.png", results["rows"])
    plot_planning_time(out / "planning_time.png", {k: np.array(v) for k, v in times.items()})
    print("\n" + table, end="")
    print(f"wrote {out / 'results.json'}, results.md, success.png, planning_time.png")
