"""``jepa-mpc train predictor|encoder|readout|joint|critic|subgoals --config NAME [--data DIR]
[--out DIR] [k=v ...]``: train the action-conditioned predictor on a frozen encoder, the encoder
with the V-JEPA objective, the state readout head on a frozen model, encoder and predictor end
to end with an anti-collapse regulariser, the critic (goal-conditioned cost-to-go) or the
subgoal generator (latent k steps ahead toward a goal) on a frozen model, on a trajectory
dataset; single process or ``torchrun`` DDP, resumable."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from robots.config import ConfigError, load_config
from world_model.checkpoint import load as load_model
from world_model.checkpoint import save as save_model
from world_model.console import CommandLineParser, device_option
from world_model.data import DatasetError, DatasetNotFoundError, TrajectoryDataset
from world_model.data.lerobot import LeRobotReader, is_lerobot_dataset
from world_model.devices import DeviceError
from world_model.errors import CheckpointError, CheckpointNotFoundError, ImageResizeWarning
from world_model.files import write_json
from world_model.model import WorldModel, build, with_views
from world_model.regularizers import REGULARIZERS, RegularizerSection
from world_model.train_critic import CriticObjective, CriticSection
from world_model.train_encoder import EncoderObjective
from world_model.train_joint import JointObjective, JointSection
from world_model.train_loop import (
    Checkpointer,
    Dist,
    MetricsLog,
    make_optimizer,
    mean_across_ranks,
    plot_losses,
    rng_state,
    set_rng_state,
    setup_distributed,
)
from world_model.train_predictor import PredictorObjective
from world_model.train_readout import ReadoutObjective
from world_model.train_subgoals import SubgoalObjective, SubgoalSection

LATENT_STAGES = ("critic", "subgoals")  # heads trained on a cache of the frozen model's latents
STAGES = ("predictor", "encoder", "readout", "joint", "critic", "subgoals")


@dataclass
class DataSection:
    """Which clips to train on (see ``TrajectoryDataset``). ``camera`` and ``state_columns``
    apply to LeRobot folders only (see ``LeRobotReader``)."""

    root: str = ""
    camera: str | None = None
    state_columns: list[int | str | None] | None = None
    clip_len: int = 8
    frame_stride: int = 1
    tasks: list[str] | None = None
    action_source: str = "states"
    chunks_in_memory: int = 4
    num_workers: int = 0
    gripper_oversample: int = 1


@dataclass
class OptimSection:
    """AdamW and its warm-up / constant / linear-decay schedule (paper's values)."""

    lr: float = 4.25e-4
    start_lr: float = 7.5e-5
    final_lr: float = 0.0
    warmup_steps: int = 100
    decay_steps: int = 100
    weight_decay: float = 0.04
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 1.0


@dataclass
class PredictorSection:
    """Predictor losses: teacher forcing + rollout over ``rollout_steps`` frames; with
    ``change_weight`` > 0 each target token's L1 is weighted by how much it changed
    (``train_predictor.change_weights``; 0 = the paper's plain mean)."""

    rollout_steps: int = 2
    teacher_forcing_weight: float = 1.0
    rollout_weight: float = 1.0
    change_weight: float = 0.0


@dataclass
class EncoderSection:
    """V-JEPA: mask families (``MaskSpec`` fields), mask predictor size, EMA momentum range."""

    masks: list[dict] = field(
        default_factory=lambda: [
            {"num_blocks": 8, "scale": 0.15, "aspect_ratio": [0.75, 1.5]},
            {"num_blocks": 2, "scale": 0.7, "aspect_ratio": [0.75, 1.5]},
        ]
    )
    predictor_dim: int = 192
    predictor_depth: int = 4
    predictor_heads: int = 3
    ema: tuple[float, float] = (0.998, 1.0)
    regularizer: RegularizerSection = field(default_factory=RegularizerSection)


@dataclass
class TrainConfig:
    """A training run. ``model`` is a preset/YAML for a fresh model; ``init`` (if set) a
    checkpoint to start from (official .pt, converted folder or bundled name). ``batch_size``
    is per process. ``halt_after`` stops early as if interrupted (time-sliced jobs, tests)."""

    model: str = "small"
    init: str | None = None
    # Camera views of the trained model when it starts from ``init``: a single-view checkpoint
    # is widened (same encoder and predictor weights; world_model.model.with_views).
    views: int | None = None
    out: str = "runs/train"
    device: str = "auto"
    precision: str = "auto"
    seed: int = 0
    batch_size: int = 8
    steps: int = 1000
    halt_after: int | None = None
    log_every: int = 10
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    predictor: PredictorSection = field(default_factory=PredictorSection)
    encoder: EncoderSection = field(default_factory=EncoderSection)
    joint: JointSection = field(default_factory=JointSection)
    critic: CriticSection = field(default_factory=CriticSection)
    subgoals: SubgoalSection = field(default_factory=SubgoalSection)


def load_train_config(name_or_path: str, overrides: list[str] | None = None) -> TrainConfig:
    """``configs/train/<name>.yaml`` (or a YAML path) with ``key=value`` overrides."""
    config = load_config(TrainConfig, name_or_path, "train", overrides)
    if config.precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"precision must be auto, bf16 or fp32, got {config.precision!r}")
    if not config.data.root:
        raise ConfigError("no dataset: set data.root in the config or pass --data DIR")
    if config.steps < 1 or config.batch_size < 1:
        raise ConfigError(f"steps and batch_size must be >= 1: {config.steps}, {config.batch_size}")
    for name, section in (
        ("encoder.regularizer", config.encoder.regularizer),
        ("joint.regularizer", config.joint.regularizer),
    ):
        if section.kind not in REGULARIZERS:
            raise ConfigError(f"{name}.kind must be one of {REGULARIZERS}, got {section.kind!r}")
    return config


def initial_model(config: TrainConfig, device: torch.device) -> WorldModel:
    """The model to start from: ``init`` loaded (widened to ``views`` camera views when set
    and the checkpoint takes fewer), else ``model`` built with ``seed``."""
    if config.init:
        model = load_model(config.init, device=device)
        if config.views is not None and config.views != model.config.views:
            model = with_views(model, config.views)
        return model
    return build(config.model, device=device, seed=config.seed)


def dataset_source(data: DataSection, img_size: int):
    """``data.root`` for a native dataset; for a LeRobot folder (``meta/info.json``) an opened
    ``LeRobotReader`` with frames at the model's image size (its ``action`` column as the
    "stored" actions)."""
    if not is_lerobot_dataset(data.root):
        if data.camera is not None or data.state_columns is not None:
            raise ConfigError("data.camera and data.state_columns apply to LeRobot datasets only")
        return data.root
    return LeRobotReader(
        data.root,
        camera=data.camera,
        state_columns=data.state_columns,
        image_size=img_size,
        use_dataset_actions=data.action_source == "stored",
    )


def note_frame_size(reader, img_size: int, views: int = 1) -> None:
    """Say once (``ImageResizeWarning``) when a native dataset's frames are not the model's
    input size: every frame is then resized on every step, and upsampled frames only blur.

    Raises:
        ConfigError: the dataset's camera views (``info.cameras`` of jepa-mpc collect, or the
            frames' shape) are not the ``views`` the model takes.
    """
    meta = getattr(reader, "meta", None)
    size = meta.get("image_size") if isinstance(meta, dict) else None
    info = meta.get("info") if isinstance(meta, dict) else None
    cameras = info.get("cameras", ["exterior"]) if isinstance(info, dict) else ["exterior"]
    recorded = len(cameras) if isinstance(cameras, list) else 1
    if recorded != views or (size and views > 1 and size[1] != views * size[0]):
        shape = f"{size[0]}x{size[1]}" if size else "unknown size"
        raise ConfigError(
            f"the dataset's frames ({shape}, cameras {cameras}) are not the {views} camera "
            f"view(s) side by side the model takes: record with jepa-mpc collect --cameras "
            f"{','.join(['exterior', 'wrist'][:views])}"
        )
    if not size or tuple(size) == (img_size, img_size * views):
        return
    height, width = size[0], size[1] // views
    change = "upsampled" if min(height, width) < img_size else "downsampled"
    warnings.warn(
        f"the dataset's frames are {height}x{width} and the model takes {img_size}x{img_size}: "
        f"every frame is {change} ({img_size / min(height, width):.2g}x) on every step; "
        f"record at the model's size (jepa-mpc collect --image-size {img_size})",
        ImageResizeWarning,
        stacklevel=2,
    )


def autocast_for(config: TrainConfig, device: torch.device):
    """A factory of autocast contexts: bf16 on CUDA ("auto"/"bf16"), none in fp32."""
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def make_objective(stage: str, model: WorldModel, config: TrainConfig, info: Dist):
    """The stage's objective (it freezes what the stage does not train)."""
    bf16 = autocast_for(config, info.device) is not contextlib.nullcontext
    model.autocast_dtype = torch.bfloat16 if bf16 else torch.float32
    if stage in ("predictor", "joint"):
        if config.data.clip_len < config.predictor.rollout_steps + 1:
            raise ConfigError(
                f"data.clip_len {config.data.clip_len} must exceed predictor.rollout_steps "
                f"{config.predictor.rollout_steps}"
            )
        if config.predictor.change_weight < 0:
            raise ConfigError(
                f"predictor.change_weight must be >= 0, got {config.predictor.change_weight}"
            )
        if stage == "joint":
            return JointObjective(model, config.joint, config.predictor, config.seed)
        return PredictorObjective(model, config.predictor)
    if stage == "readout":
        return ReadoutObjective(model)
    if stage == "critic":
        source = dataset_source(config.data, model.config.img_size)
        return CriticObjective(
            model, config.critic, source, Path(config.out), info.is_main, config.data.tasks
        )
    if stage == "subgoals":
        source = dataset_source(config.data, model.config.img_size)
        return SubgoalObjective(
            model, config.subgoals, source, Path(config.out), info.is_main, config.data.tasks
        )
    clip_len, tubelet = config.data.clip_len, model.config.tubelet_size
    if config.encoder.regularizer.kind != "none" and config.batch_size < 2:
        raise ConfigError("encoder.regularizer needs batch_size >= 2 (it compares clips)")
    if clip_len != 1 and clip_len % tubelet:
        raise ConfigError(f"data.clip_len {clip_len} must be 1 or a multiple of {tubelet}")
    return EncoderObjective(model, config.encoder, config.seed, info.rank, config.steps)


def train(stage: str, config: TrainConfig) -> Path:
    """Run (or resume) a training job; returns ``out/model`` (the saved world model)."""
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")
    info = setup_distributed(config.device)
    out = Path(config.out)
    model = initial_model(config, info.device)
    objective = make_objective(stage, model, config, info)
    module = objective.module
    if info.world_size > 1:
        ids = [info.device.index] if info.device.type == "cuda" else None
        module = DistributedDataParallel(module, device_ids=ids)
    lr_scales = getattr(objective, "lr_scales", None)
    optimizer, schedule = make_optimizer(objective.module, config.optim, config.steps, lr_scales)
    checkpoints = Checkpointer(out, config.keep_checkpoints)
    start = 0
    state = checkpoints.load_latest(info.device)
    if state is not None:
        objective.module.load_state_dict(state["module"])
        objective.load_extra_state(state["extra"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        set_rng_state(state["rng"])
        start = int(state["step"])
    dataset = make_dataset(stage, config, model, objective, info, start)
    if info.is_main and stage not in LATENT_STAGES:
        note_frame_size(dataset.reader, model.config.img_size, model.config.views)
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=config.data.num_workers,
        pin_memory=info.device.type == "cuda",
    )
    log = None
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "train_config.json", asdict(config), indent=1)
        log = MetricsLog(out, objective.metric_names, start)
        print(
            f"[train {stage}] steps {start}..{config.steps} on {info.device} "
            f"x{info.world_size}, {len(dataset.clips)} clips, out {out}",
            flush=True,
        )
    run_steps(stage, config, info, objective, module, optimizer, schedule, loader, log, start)
    if info.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return out / "model"


def make_dataset(stage, config: TrainConfig, model: WorldModel, objective, info: Dist, start):
    """The stage's stream of batches from item ``start``: clips of frames, or for the critic
    and the subgoal generator indices into their latent cache."""
    if stage == "critic":
        return objective.stream(config.batch_size, config.seed, info.rank, start, config.data.tasks)
    if stage == "subgoals":
        return objective.stream(config.batch_size, config.seed, info.rank, start)
    return TrajectoryDataset(
        dataset_source(config.data, model.config.img_size),
        clip_len=config.data.clip_len,
        frame_stride=config.data.frame_stride,
        batch_size=config.batch_size,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        tasks=config.data.tasks,
        action_source=config.data.action_source,
        chunks_in_memory=config.data.chunks_in_memory,
        gripper_oversample=config.data.gripper_oversample,
        repeat=True,
        start_item=start,
    )


def run_steps(stage, config, info, objective, module, optimizer, schedule, loader, log, start):
    """The optimisation loop from ``start`` to ``steps`` (or ``halt_after``)."""
    autocast = autocast_for(config, info.device)
    checkpoints = Checkpointer(Path(config.out), config.keep_checkpoints)
    stop = config.steps if config.halt_after is None else min(config.steps, config.halt_after)
    began, batches = time.perf_counter(), iter(loader)
    bar = tqdm(
        total=stop, initial=start, desc=f"train {stage}", unit="step", disable=not info.is_main
    )
    for step in range(start, stop):
        objective.begin_step(step)
        batch = next(batches)
        terms = objective.losses(module, batch, autocast)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(objective.module.parameters(), config.optim.grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
        objective.end_step(step + 1)
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == stop or done == start + 1:
            values = mean_across_ranks({k: float(v.detach()) for k, v in terms.items()}, info)
            if log is not None:
                log.write(done, {**values, "lr": lr, "seconds": time.perf_counter() - began})
                bar.set_postfix(loss=f"{values['loss']:.4f}", refresh=False)
                bar.write(
                    f"[train {stage}] step {done}/{config.steps} "
                    + " ".join(f"{k} {v:.4f}" for k, v in values.items())
                )
        if info.is_main and (done % config.checkpoint_every == 0 or done == stop):
            state = {
                "step": done,
                "module": objective.module.state_dict(),
                "extra": objective.extra_state(),
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "rng": rng_state(),
            }
            checkpoints.save(state, done)
            if log is not None:  # the loss plot follows the run, checkpoint by checkpoint
                out = Path(config.out)
                plot_losses(out / "metrics.csv", out / "loss.png", objective.metric_names)
    bar.close()
    if info.is_main and stop == config.steps:
        out = Path(config.out)
        save_model(objective.final_model(), out / "model", overwrite=True)
        plot_losses(out / "metrics.csv", out / "loss.png", objective.metric_names)
    if log is not None:
        log.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``jepa-mpc train``; 0 on success, 2 on a bad config, dataset, model or
    device."""
    parser = CommandLineParser("jepa-mpc train", description=__doc__)
    parser.add_argument("stage", choices=STAGES, help="what to train")
    parser.add_argument("--config", required=True, help="configs/train/<name>.yaml or a path")
    parser.add_argument("--data", help="dataset folder (overrides data.root)")
    parser.add_argument("--out", help="run folder (overrides out); resumed if it has checkpoints")
    parser.add_argument("--init", help="checkpoint to start from (overrides init)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1 or auto (overrides device)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. steps=100"
    )
    args = parser.parse_intermixed_args(argv)
    overrides = list(args.overrides)
    for key, value in (
        ("data.root", args.data),
        ("out", args.out),
        ("init", args.init),
        ("device", args.device),
    ):
        if value is not None:
            overrides.append(f"{key}={json.dumps(value)}")
    try:
        config = load_train_config(args.config, overrides)
        if config.device != "auto":
            device_option(config.device)  # one line now, not a traceback from torch later
        model_dir = train(args.stage, config)
    except (
        ConfigError,
        DatasetError,
        DatasetNotFoundError,
        CheckpointError,
        CheckpointNotFoundError,
        DeviceError,
        FileNotFoundError,
    ) as error:
        print(f"jepa-mpc train: error: {error}", file=sys.stderr)
        return 2
    finished = config.halt_after is None or config.halt_after >= config.steps
    if finished and os.environ.get("RANK", "0") == "0":
        print(f"[train {args.stage}] wrote {model_dir}")
    return 0
