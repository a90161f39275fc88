"""``jepa-mpc bench-merge``: one report from benchmark shards that ran the same configuration
on consecutive seed ranges (on several machines, or seeds added to a finished run).

Example (50 episodes as two shards, then one table)::

    jepa-mpc bench --tasks pick_place --episodes 25 --out runs/pp_a ...
    jepa-mpc bench --tasks pick_place --episodes 25 --seed 25 --out runs/pp_b ...
    jepa-mpc bench-merge runs/pp_a runs/pp_b --out runs/pp

The shards must agree on everything but ``seed`` and ``episodes`` (tasks, methods, planner
overrides, image size, steps, subgoal schedules, device...), and their seed ranges must tile
one range without gaps or overlaps; otherwise nothing is written and the error names the
difference. The merged ``results.json`` keeps each shard's command under ``shards``.
"""

from __future__ import annotations

import itertools
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from jepa_mpc import bench_report as report
from world_model.console import CommandLineParser

# Config keys that may differ between shards (they define the seed range each one covered).
SHARD_KEYS = ("seed", "episodes")
# Top-level keys of results.json that must agree between shards.
SHARED_KEYS = ("device", "torch", "execution", "subgoal_schedules")


class MergeError(ValueError):
    """Shards that cannot be merged into one report (the message says why)."""


def load_shard(folder: Path) -> dict[str, Any]:
    """``folder/results.json`` of one ``jepa-mpc bench`` run.

    Raises:
        MergeError: the file is missing, is not a benchmark result, or is one that was
            interrupted (its configurations lack episodes).
    """
    path = Path(folder) / "results.json"
    if not path.is_file():
        raise MergeError(f"{path} not found (is {folder} a jepa-mpc bench --out folder?)")
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise MergeError(f"{path} is not valid JSON: {error}") from error
    missing = [key for key in ("config", "rows", "episodes") if key not in results]
    if missing:
        raise MergeError(f"{path} lacks {', '.join(missing)}: not a jepa-mpc bench result")
    if results.get("interrupted"):
        raise MergeError(
            f"{path} is from a run stopped by {results['interrupted']['signal']} (only "
            f"{len(results['episodes'])} episodes finished): rerun that shard before merging"
        )
    return results


def _signature(results: dict[str, Any]) -> dict[str, Any]:
    """What must be equal between shards: the config but its seed range, and SHARED_KEYS."""
    config = {f"config.{k}": v for k, v in results["config"].items() if k not in SHARD_KEYS}
    return {**config, **{key: results.get(key) for key in SHARED_KEYS}}


def _check_compatible(shards: list[tuple[Path, dict[str, Any]]]) -> None:
    (first_path, first), rest = shards[0], shards[1:]
    reference = _signature(first)
    for path, shard in rest:
        signature = _signature(shard)
        for key in sorted(set(reference) | set(signature)):
            if reference.get(key) != signature.get(key):
                raise MergeError(
                    f"{path} ran a different configuration: {key} = {signature.get(key)!r}, "
                    f"{first_path} has {reference.get(key)!r}"
                )


def _seed_range(shards: list[tuple[Path, dict[str, Any]]]) -> tuple[int, int]:
    """(first seed, episode count) of the shards' seed ranges laid end to end."""
    spans = sorted(
        (s["config"]["seed"], s["config"]["seed"] + s["config"]["episodes"], p) for p, s in shards
    )
    for (_, end, path), (start, _, next_path) in itertools.pairwise(spans):
        if start != end:
            kind = "overlap" if start < end else "leave a gap"
            raise MergeError(
                f"seed ranges of {path} and {next_path} {kind} (one ends before seed {end}, "
                f"the other starts at {start}); shards must tile one range"
            )
    return spans[0][0], spans[-1][1] - spans[0][0]


def merge(folders: list[Path], command: str | None = None) -> dict[str, Any]:
    """The results of ``folders``' shards as if one ``jepa-mpc bench`` run had made them.

    Episodes are grouped per (task, method) in the order of the first shard's rows, sorted by
    seed; each row is recomputed from its episodes (success rate, Wilson interval, distances,
    planning-time percentiles over all actions).

    Raises:
        MergeError: fewer than two folders, unreadable results, different configurations or
            seed ranges that do not tile one range.
    """
    if len(folders) < 2:
        raise MergeError("give at least two shard folders to merge")
    shards = [(Path(folder), load_shard(Path(folder))) for folder in folders]
    _check_compatible(shards)
    seed, episodes = _seed_range(shards)
    first = shards[0][1]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {
        (row["task"], row["method"]): [] for row in first["rows"]
    }
    for path, shard in shards:
        for episode in shard["episodes"]:
            key = (episode["task"], episode["method"])
            if key not in groups:
                raise MergeError(f"{path} has episodes of {key}, absent from {shards[0][0]}")
            groups[key].append(episode)
    merged_episodes = [e for key in groups for e in sorted(groups[key], key=lambda e: e["seed"])]
    return {
        "command": command,
        "shards": [shard.get("command") for _, shard in shards],
        "config": {**first["config"], "seed": seed, "episodes": episodes},
        **{key: first.get(key) for key in SHARED_KEYS},
        "wall_s": sum(float(shard.get("wall_s", 0.0)) for _, shard in shards),
        "rows": [report.summarise(records) for records in groups.values()],
        "episodes": merged_episodes,
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc bench-merge``; returns 2 (nothing written) on bad shards."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = CommandLineParser("jepa-mpc bench-merge", description=__doc__)
    parser.add_argument("shards", nargs="+", help="jepa-mpc bench --out folders")
    parser.add_argument("--out", required=True, help="output folder of the merged report")
    args = parser.parse_args(argv)
    out = Path(args.out)
    try:
        if out.exists() and not out.is_dir():
            raise MergeError(f"--out {out} exists and is not a folder")
        results = merge(
            [Path(s) for s in args.shards], shlex.join(["jepa-mpc", "bench-merge", *argv])
        )
    except MergeError as error:
        print(f"jepa-mpc bench-merge: {error}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    report.write_outputs(out, results)
    return 0
