"""``scripts/gpu_bench.sh``: seconds per action of the planner presets on a V-JEPA 2-AC-sized
world model (``vitg-ac``, random weights, 256 px), in fp32 and bf16, eager and compiled
(``torch.compile``; on CUDA with CUDA graphs, mode "reduce-overhead"). Prints a table, writes
JSON and puts the table into docs/benchmark.md between the ``gpu_bench`` markers.

Cases run in priority order (bf16 eager, bf16 compiled, fp32 eager, fp32 compiled) under a
wall-clock budget: a case that would end past it is recorded as skipped, so one H100/H200 run
stays under 8 minutes. A case that fails (compiler error, out of memory) is recorded with its
error and the others still run. Runs end to end on a CPU with ``--device cpu --model tiny``.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from planner.actors.base import ActionSpace
from planner.config import load_planner_config
from planner.planner import Planner
from planner.policy import PolicyConfig, ProposalPolicy, save_policy
from world_model.console import CommandLineParser, device_option
from world_model.devices import DeviceError
from world_model.files import write_json, write_text

# label -> (planner preset, overrides); "fast_path" is fast with its fallback switched off: with
# random weights the probes win at random, so this row is the cost of the path a trained
# policy takes (the fast row is the mixture, its fallbacks counted).
PRESETS = {
    "cem_paper": ("cem_paper", []),
    "cem_release": ("cem_release", []),
    "icem": ("icem", []),
    "fast": ("fast", []),
    "fast_path": ("fast", ["actor.probes=0"]),
}
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
MODES = ("eager", "compiled")
PROG = "scripts/gpu_bench.sh"
BEGIN, END = "<!-- gpu_bench:begin -->", "<!-- gpu_bench:end -->"


@dataclass(frozen=True)
class Case:
    """One timed configuration."""

    preset: str
    dtype: str
    mode: str


def cases(presets: list[str], dtypes: list[str], modes: list[str]) -> list[Case]:
    """Every (preset, dtype, mode), in priority order: bf16 before fp32, eager before
    compiled within a dtype, presets as given."""
    order = sorted(dtypes, key=lambda name: list(DTYPES).index(name))
    return [Case(p, d, m) for d in order for m in modes for p in presets]


def build_model(preset: str, device: torch.device, seed: int = 0):
    """``world_model.build(preset)`` with a (random) readout head, so that every planner preset,
    ``fast``'s readout term included, runs on it unchanged."""
    from world_model import build
    from world_model.config import load_model_config

    config = load_model_config(preset, ["readout.enabled=true"])
    return build(config, device=device, seed=seed)


def random_policy(model, folder: Path, seed: int = 0) -> Path:
    """A randomly initialised proposal policy for ``fast`` on ``model`` (timing only), saved in
    ``folder``; returns its path."""
    config = load_planner_config("fast")
    limit = tuple(float(v) for v in ActionSpace(config.bounds).limit)
    torch.manual_seed(seed)
    policy = ProposalPolicy(
        PolicyConfig(model.num_patches, model.latent_dim, config.actor.horizon, limit=limit)
    )
    return save_policy(policy, folder / "policy.safetensors", {"random": True})


def set_mode(model, mode: str, device: torch.device, compiled: dict) -> None:
    """Eager, or the predictor step compiled (once per model; CUDA graphs on CUDA)."""
    if mode == "eager":
        model.compiled_step = None
        return
    if "step" not in compiled:
        model.compile_rollout(mode="reduce-overhead" if device.type == "cuda" else None)
        compiled["step"] = model.compiled_step
    model.compiled_step = compiled["step"]


def time_case(
    planner: Planner, obs: dict, goal: dict, repeats: int, case_s: float
) -> dict[str, float | int]:
    """One warm-up plan (compilation included), then up to ``repeats`` timed plans from a reset
    planner (at least one; no more once ``case_s`` seconds have gone)."""
    began = time.perf_counter()
    planner.plan(obs, goal)
    first = time.perf_counter() - began
    times = []
    while len(times) < repeats and (not times or time.perf_counter() - began < case_s):
        planner.reset()
        plan = planner.plan(obs, goal)
        times.append(plan.timings["total"])
    fell_back = getattr(planner.actor, "fell_back", None)
    return {
        "median_s": float(np.median(times)),
        "min_s": float(np.min(times)),
        "first_plan_s": first,
        "plans": len(times),
        "evaluations": plan.evaluations,
        "energy": plan.energy,
        "fallbacks": -1 if fell_back is None else int(fell_back),
        "case_s": time.perf_counter() - began,
    }


def estimate_s(rows: list[dict], case: Case) -> float:
    """Expected seconds of ``case``: those of the same preset and dtype run eagerly, if any."""
    for row in rows:
        if (row["preset"], row["dtype"], row["mode"]) == (case.preset, case.dtype, "eager"):
            return float(row.get("case_s", 0.0))
    return 0.0


def run_cases(model, device, todo: list[Case], args, policy_path: Path, log=print) -> list[dict]:
    """Time every case under the budget; one row per case (``status`` ok, skipped or error)."""
    size = model.config.img_size
    rng = np.random.default_rng(0)
    state = np.array([0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], np.float32)
    obs = {"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "state": state}
    goal = {"image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8)}
    began, compiled, rows = time.perf_counter(), {}, []
    for case in todo:
        row: dict = {"preset": case.preset, "dtype": case.dtype, "mode": case.mode}
        if time.perf_counter() - began + estimate_s(rows, case) > args.budget_s:
            rows.append({**row, "status": "skipped (budget)"})
            log(f"[gpu_bench] {case}: skipped, over the {args.budget_s:.0f} s budget")
            continue
        preset, preset_overrides = PRESETS[case.preset]
        # precision=model: the case's dtype (set on the model below) is what runs.
        overrides = [*preset_overrides, *args.overrides, "precision=model"]
        if preset == "fast":
            overrides.append(f"actor.policy={policy_path}")
        try:
            model.autocast_dtype = DTYPES[case.dtype]
            set_mode(model, case.mode, device, compiled)
            planner = Planner.from_config(preset, model, device, overrides)
            row.update(time_case(planner, obs, goal, args.repeats, args.case_s), status="ok")
        except Exception as error:  # noqa: BLE001 - one failed case must not lose the others
            row["status"] = f"error: {type(error).__name__}: {str(error).splitlines()[0][:160]}"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rows.append(row)
        log(f"[gpu_bench] {case}: {row.get('median_s', '-')} s/action ({row['status']})")
    model.compiled_step = None
    return rows


def markdown(result: dict) -> str:
    """The table (and how it was made) as Markdown."""
    lines = [
        f"`{result['command']}`",
        "",
        f"Device: {result['device_name']}; torch {result['torch']}; model `{result['model']}` "
        f"({result['params_m']:.0f} M parameters, random weights, {result['image_size']} px); "
        f"fp32 = TF32 off; compiled = torch.compile"
        f"{' + CUDA graphs (reduce-overhead)' if result['device'] == 'cuda' else ''}; "
        f"{result['threads']} CPU thread(s); wall {result['wall_s']:.0f} s.",
        "",
        "| preset | dtype | mode | s/action median | min | first plan s | evaluations "
        "| fallbacks | status |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        if row["status"] != "ok":
            lines.append(
                f"| {row['preset']} | {row['dtype']} | {row['mode']} | – | – | – | – | – "
                f"| {row['status']} |"
            )
            continue
        fallbacks = "–" if row["fallbacks"] < 0 else f"{row['fallbacks']}/{row['plans'] + 1}"
        lines.append(
            f"| {row['preset']} | {row['dtype']} | {row['mode']} | {row['median_s']:.4g} "
            f"| {row['min_s']:.4g} | {row['first_plan_s']:.4g} | {row['evaluations']} "
            f"| {fallbacks} | ok |"
        )
    return "\n".join(lines)


def update_doc(path: Path, table: str) -> None:
    """Replace the text between the ``gpu_bench`` markers of ``path`` with ``table`` (appended
    under a heading when the markers are absent); written atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{table}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = f"{text.rstrip()}\n\n## GPU figures (`scripts/gpu_bench.sh`)\n\n{block}\n"
    write_text(path, text)


def names(text: str, known: tuple[str, ...], flag: str) -> list[str]:
    """Comma-separated names, each one of ``known`` (else one clear error line)."""
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in known]
    if unknown or not chosen:
        raise SystemExit(
            f"scripts/gpu_bench.sh: error: {flag} takes {', '.join(known)}; got {text!r}"
        )
    return chosen


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = CommandLineParser(PROG, description=__doc__)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:1, cpu, ...")
    parser.add_argument("--model", default="vitg-ac", help="model preset (configs/model)")
    parser.add_argument("--presets", default=",".join(PRESETS))
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--repeats", type=int, default=3, help="timed plans per case (max)")
    parser.add_argument("--case-s", type=float, default=20.0, dest="case_s")
    parser.add_argument("--budget-s", type=float, default=400.0, dest="budget_s")
    parser.add_argument("--json", default="runs/gpu_bench.json")
    parser.add_argument("--doc", default="docs/benchmark.md", help="'' to leave docs alone")
    parser.add_argument(
        "overrides", nargs="*", help="planner overrides for every preset (CI-sized runs)"
    )
    args = parser.parse_args(argv)
    args.presets = names(args.presets, tuple(PRESETS), "--presets")
    args.dtypes = names(args.dtypes, tuple(DTYPES), "--dtypes")
    args.modes = names(args.modes, MODES, "--modes")
    if args.repeats < 1 or args.budget_s <= 0:
        parser.error("--repeats must be >= 1 and --budget-s > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        device = device_option(args.device)
    except DeviceError as error:  # e.g. "no CUDA device (...): use --device cpu"
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32
    began = time.perf_counter()
    model = build_model(args.model, device)
    with tempfile.TemporaryDirectory() as folder:
        policy_path = random_policy(model, Path(folder))
        rows = run_cases(
            model, device, cases(args.presets, args.dtypes, args.modes), args, policy_path
        )
    result = {
        "command": shlex.join(["scripts/gpu_bench.sh", *argv]),
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "model": args.model,
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "image_size": model.config.img_size,
        "threads": torch.get_num_threads(),
        "wall_s": time.perf_counter() - began,
        "rows": rows,
    }
    table = markdown(result)
    print(table)
    write_json(args.json, result)
    if args.doc:
        update_doc(Path(args.doc), table)
    print(f"\nwrote {args.json}" + (f" and {args.doc}" if args.doc else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
