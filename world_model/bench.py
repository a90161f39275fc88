"""``jepa-mpc bench-model``: time one predictor rollout of S samples x H steps (the planner's
inner call), count its FLOPs analytically and compare with a matmul peak measured here.

The defaults fit the device: ``vitg-ac`` (the official V-JEPA 2-AC size) with 400 samples on a
GPU, ``small`` (sim-small's size) with 64 on a CPU, where a ViT-g rollout of 400 samples takes
many minutes. A progress bar with an ETA counts the timed calls.

Examples::

    jepa-mpc bench-model                          # the device's preset
    jepa-mpc bench-model --preset vitg-ac --device cuda --json rollout.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch
from tqdm import tqdm

from robots.config import ConfigError
from world_model.config import WorldModelConfig, mlp_hidden_dim
from world_model.console import CommandLineParser, device_option, progress_bar
from world_model.files import write_json
from world_model.layers import init_weights
from world_model.model import WorldModel, resolve_config
from world_model.predictor import COND_TOKENS

DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
GPU_PRESET, CPU_PRESET = "vitg-ac", "small"
GPU_SAMPLES, CPU_SAMPLES = 400, 64


def rollout_flops(config: WorldModelConfig, samples: int, horizon: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of a KV-cached rollout: every Linear of the predictor
    plus attention scores and weighted sums (step t attends to (t + 1) frames)."""
    pred = config.predictor
    n_patch, width, dim = config.num_patches, pred.predictor_embed_dim, config.encoder.embed_dim
    tokens = n_patch + COND_TOKENS
    hidden = mlp_hidden_dim(width, pred.mlp_ratio)
    per_layer_linear = 2 * tokens * width * (4 * width + 2 * hidden)  # qkv, proj, fc1, fc2
    io = 2 * n_patch * dim * width * 2 + 2 * 2 * pred.action_embed_dim * width  # embed, proj
    total = 0
    for step in range(horizon):
        context = (step + 1) * tokens
        attention = 2 * 2 * tokens * context * width  # q k^T and attn @ v
        total += pred.depth * (per_layer_linear + attention) + io
    return samples * total


def rollout_model(config: WorldModelConfig, device: torch.device, seed: int = 0) -> WorldModel:
    """A WorldModel whose predictor is real (random init) on ``device`` and whose encoder is
    left on the meta device: a rollout never touches it, and ViT-g would cost 4 GB."""
    torch.manual_seed(seed)
    with torch.device("meta"):
        model = WorldModel(config)
    model.predictor.to_empty(device=device)
    init_weights(model.predictor, model.predictor.predictor_blocks)
    model.predictor.reset_rope(device)
    return model.eval()


def time_call(
    fn: Callable[[], object],
    device: torch.device,
    warmup: int,
    repeats: int,
    bar: tqdm | None = None,
):
    """Median and all wall times (s) of ``fn`` after ``warmup`` calls; ``bar`` ticks per call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
        if bar is not None:
            bar.update(1)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        if bar is not None:
            bar.update(1)
    return statistics.median(times), times


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int) -> float:
    """Achieved TFLOP/s of a square ``size`` matmul in ``dtype`` (this machine's peak)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    median, _ = time_call(lambda: a @ b, device, warmup=2, repeats=7)
    return 2 * size**3 / median / 1e12


def run(args: argparse.Namespace) -> dict:
    """Build, time and measure; returns the result record.

    Raises:
        DeviceError, ConfigError, FileNotFoundError: the device or the preset is not there.
    """
    device = device_option(args.device)
    dtype_name = (
        args.dtype if args.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    )
    if args.preset is None:
        args.preset = GPU_PRESET if device.type == "cuda" else CPU_PRESET
    if args.samples is None:
        args.samples = GPU_SAMPLES if device.type == "cuda" else CPU_SAMPLES
    config = resolve_config(args.preset)
    print(
        f"[bench-model] {args.preset}: {args.samples} samples x {args.horizon} steps on "
        f"{device} ({dtype_name})",
        flush=True,
    )
    model = rollout_model(config, device)
    model.autocast_dtype = DTYPES[dtype_name]
    gen = torch.Generator(device=device).manual_seed(0)
    z0 = torch.randn(1, model.num_patches, model.latent_dim, device=device, generator=gen)
    s0 = torch.full((1, model.state_dim), 0.3, device=device)
    actions = 0.05 * torch.randn(
        args.samples, args.horizon, model.state_dim, device=device, generator=gen
    )

    @torch.no_grad()
    def rollout() -> torch.Tensor:
        return model.rollout(z0, s0, actions)

    with progress_bar(args.warmup + args.repeats, "rollouts", "call") as bar:
        median, times = time_call(rollout, device, args.warmup, args.repeats, bar)
    flops = rollout_flops(config, args.samples, args.horizon)
    size = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    peak = matmul_peak(device, DTYPES[dtype_name], size)
    achieved = flops / median / 1e12
    return {
        "preset": str(args.preset),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "dtype": dtype_name,
        "samples": args.samples,
        "horizon": args.horizon,
        "predictor_params_m": sum(p.numel() for p in model.predictor.parameters()) / 1e6,
        "rollout_ms_median": median * 1e3,
        "rollout_ms_all": [t * 1e3 for t in times],
        "gflop": flops / 1e9,
        "achieved_tflops": achieved,
        "matmul_size": size,
        "matmul_peak_tflops": peak,
        "fraction_of_peak": achieved / peak,
    }


def compare(args: argparse.Namespace) -> list[dict]:
    """The rollout (and one 1-frame encode) timed for every (threads, dtype) pair, the pairs
    interleaved round by round so that they share whatever else the machine is doing; one
    row per (threads, dtype) with median and p90 milliseconds. Encoder and predictor are
    real (random init) here: the encode is part of a plan's time."""
    from world_model.model import build

    device = torch.device("cpu")
    args.preset = CPU_PRESET if args.preset is None else args.preset
    args.samples = CPU_SAMPLES if args.samples is None else args.samples
    model = build(resolve_config(args.preset), device=device, seed=0)
    size = model.config.img_size
    image = torch.randint(0, 256, (size, size, 3), dtype=torch.uint8)
    z0 = model.encode(image)
    s0 = torch.full((1, model.state_dim), 0.3)
    actions = 0.05 * torch.randn(args.samples, args.horizon, model.state_dim)
    pairs = [(t, d) for t in args.compare_threads for d in args.compare_dtypes]
    times: dict[tuple[int, str, str], list[float]] = {}
    with torch.no_grad():
        for round_index in range(args.rounds + 1):  # round 0 warms up
            for threads, dtype in pairs:
                torch.set_num_threads(threads)
                model.autocast_dtype = DTYPES[dtype]
                for name, call in (
                    ("rollout", lambda: model.rollout(z0, s0, actions)),
                    ("encode", lambda: model.encode(image)),
                ):
                    began = time.perf_counter()
                    call()
                    if round_index:
                        times.setdefault((threads, dtype, name), []).append(
                            time.perf_counter() - began
                        )
    return [
        {
            "preset": str(args.preset),
            "samples": args.samples,
            "horizon": args.horizon,
            "threads": threads,
            "dtype": dtype,
            "op": name,
            "median_ms": 1e3 * statistics.median(values),
            "p90_ms": 1e3 * sorted(values)[int(0.9 * (len(values) - 1))],
        }
        for (threads, dtype, name), values in times.items()
    ]


def print_comparison(rows: list[dict]) -> None:
    """The comparison as a Markdown table, with each row's time relative to the first's."""
    first = {row["op"]: row["median_ms"] for row in rows[:2]}
    print("| threads | dtype | op | median ms | p90 ms | vs first |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        ratio = row["median_ms"] / first[row["op"]]
        print(
            f"| {row['threads']} | {row['dtype']} | {row['op']} | {row['median_ms']:.1f} "
            f"| {row['p90_ms']:.1f} | {ratio:.2f}x |"
        )


def print_table(result: dict) -> None:
    """The result as aligned ``name  value`` lines."""
    width = max(map(len, result))
    for key, value in result.items():
        if isinstance(value, float):
            value = f"{value:.4g}"
        elif isinstance(value, list):
            value = ", ".join(f"{v:.4g}" for v in value)
        print(f"{key:<{width}}  {value}")


def _ints(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected integers >= 1, got {text!r}")
    return values


def _dtypes(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or any(value not in DTYPES for value in values):
        raise argparse.ArgumentTypeError(f"expected some of {', '.join(DTYPES)}, got {text!r}")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line, checked (one line and exit 2 on a bad value)."""
    parser = CommandLineParser("jepa-mpc bench-model", description=__doc__)
    parser.add_argument(
        "--preset",
        default=None,
        help=f"model preset or config path (default: {GPU_PRESET} on a GPU, {CPU_PRESET} on a CPU)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=None,
        help=f"rollouts in the batch, S (default: {GPU_SAMPLES} on a GPU, {CPU_SAMPLES} on a CPU)",
    )
    parser.add_argument("--horizon", type=int, default=2, help="steps per rollout (H)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument(
        "--dtype", default="auto", choices=["auto", *DTYPES], help="auto: bf16 on CUDA, else fp32"
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls first")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls")
    parser.add_argument(
        "--matmul-size", type=int, default=0, help="peak-matmul side; 0: 8192 CUDA, 2048 CPU"
    )
    parser.add_argument("--json", default=None, help="also write the result to this file")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="CPU: time every --compare-threads x --compare-dtypes pair side by side",
    )
    parser.add_argument("--compare-threads", default="1,2", type=_ints, dest="compare_threads")
    parser.add_argument(
        "--compare-dtypes", default="fp32,bf16", type=_dtypes, dest="compare_dtypes"
    )
    parser.add_argument("--rounds", type=int, default=8, help="--compare: interleaved rounds")
    args = parser.parse_args(argv)
    if (args.samples or 1) < 1 or args.horizon < 1 or args.repeats < 1 or args.warmup < 0:
        parser.error("--samples, --horizon and --repeats must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print a table, optionally write JSON (atomically); 2 on a bad preset
    or device."""
    args = parse_args(argv)
    try:
        if args.compare:
            rows = compare(args)
        else:
            result = run(args)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"jepa-mpc bench-model: error: {error}", file=sys.stderr)
        return 2
    if args.compare:
        print_comparison(rows)
        if args.json:
            write_json(args.json, rows, indent=1)
        return 0
    print_table(result)
    if args.json:
        write_json(args.json, result, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
