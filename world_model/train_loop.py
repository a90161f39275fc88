"""Training plumbing shared by both stages: torchrun/DDP set-up, the AdamW warm-up / constant /
decay schedule, atomic resumable checkpoints, CSV (+ TensorBoard) loss logs and the loss plot."""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from world_model.devices import resolve_device
from world_model.files import atomic_write, pyplot, save_figure, write_text

CHECKPOINT_RE = re.compile(r"step-(\d+)\.pt$")
# What ``atomic_save`` leaves behind when the process dies mid-write: ``.step-XXXXXXXX.pt.*.tmp``.
PARTIAL_CHECKPOINT_RE = re.compile(r"^\.step-\d+\.pt\..*\.tmp$")
# What a ``MetricsLog`` rewrite leaves behind when the process dies mid-write.
PARTIAL_METRICS_RE = re.compile(r"^\.metrics\.\w+\.tmp$")


@dataclass
class Dist:
    """This process's place in the job: rank, world size and device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str = "auto") -> Dist:
    """Read torchrun's RANK / WORLD_SIZE / LOCAL_RANK; join the process group when
    WORLD_SIZE > 1 (NCCL on CUDA, gloo on CPU). ``device`` "auto" = cuda:LOCAL_RANK if CUDA
    is available, else cpu; "cuda" = cuda:LOCAL_RANK.

    Raises:
        DeviceError: a device this machine does not have.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    target = resolve_device(device)
    if target.type == "cuda" and target.index is None:  # "cuda": this process's GPU
        target = torch.device("cuda", local_rank)
    if target.type == "cuda":
        torch.cuda.set_device(target)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if target.type == "cuda" else "gloo")
    return Dist(rank, world_size, local_rank, target)


def mean_across_ranks(values: dict[str, float], info: Dist) -> dict[str, float]:
    """Average scalar metrics over all ranks (identity for one process)."""
    if info.world_size == 1:
        return values
    tensor = torch.tensor(list(values.values()), dtype=torch.float64, device=info.device)
    dist.all_reduce(tensor)
    return dict(zip(values, (tensor / info.world_size).tolist(), strict=True))


def lr_at(step: int, optim, total_steps: int) -> float:
    """Learning rate at ``step``: linear warm-up start_lr -> lr over warmup_steps, constant,
    then linear decay to final_lr over the last decay_steps of ``total_steps``."""
    if step < optim.warmup_steps:
        return optim.start_lr + (optim.lr - optim.start_lr) * step / optim.warmup_steps
    decay_start = total_steps - optim.decay_steps
    if optim.decay_steps > 0 and step >= decay_start:
        fraction = min(1.0, (step - decay_start) / optim.decay_steps)
        return optim.lr + (optim.final_lr - optim.lr) * fraction
    return optim.lr


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """Move ``target``'s parameters toward ``online``'s: t <- momentum t + (1 - momentum) o
    (the V-JEPA target encoder, the critic's temporal-difference target)."""
    for target_param, online_param in zip(target.parameters(), online.parameters(), strict=True):
        target_param.lerp_(online_param.detach(), 1.0 - momentum)


def make_optimizer(
    module: nn.Module, optim, total_steps: int, lr_scales: dict[str, float] | None = None
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (no weight decay on biases, norms and 1-D parameters) and its schedule.

    ``lr_scales`` maps a parameter-name prefix (e.g. ``"encoder."``) to a factor on the
    learning rate of the parameters under it (the schedule's shape is shared)."""
    lr_scales = lr_scales or {}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in module.named_parameters():
        if param.requires_grad:
            scale = next((f for p, f in lr_scales.items() if name.startswith(p)), 1.0)
            decays = not (param.ndim <= 1 or param.shape[0] == 1)
            groups.setdefault((scale, decays), []).append(param)
    optimizer = torch.optim.AdamW(
        [
            {
                "params": params,
                "lr": optim.lr * scale,
                "weight_decay": optim.weight_decay if decays else 0.0,
            }
            for (scale, decays), params in sorted(
                groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])
            )
        ],
        lr=optim.lr,
        betas=tuple(optim.betas),
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_at(step, optim, total_steps) / optim.lr
    )
    return optimizer, schedule


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file ``.<name>.XXXXXXXX.tmp`` beside ``path``, fsynced, then
    renamed onto it (``world_model.files.atomic_write``)."""
    atomic_write(path, lambda temp: torch.save(obj, temp), temp_suffix=".tmp", durable=True)


class Checkpointer:
    """``out/checkpoints/step-XXXXXXXX.pt`` files, the newest ``keep`` kept.

    A process killed at any moment leaves only complete checkpoints under their final names
    (``atomic_save``) plus, at worst, one temp file, which :meth:`load_latest` removes. A final
    file that is still unreadable (disk corruption, a copy cut short) is skipped with a warning
    in favour of the next older one.
    """

    def __init__(self, out_dir: Path, keep: int = 2) -> None:
        self.folder = Path(out_dir) / "checkpoints"
        self.keep = max(1, keep)

    def steps(self) -> list[int]:
        """Steps of the checkpoints on disk, ascending."""
        if not self.folder.is_dir():
            return []
        found = (CHECKPOINT_RE.search(p.name) for p in self.folder.iterdir())
        return sorted(int(m.group(1)) for m in found if m)

    def path(self, step: int) -> Path:
        return self.folder / f"step-{step:08d}.pt"

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write the checkpoint of ``step`` atomically, then drop the oldest beyond ``keep``."""
        path = self.path(step)
        atomic_save(state, path)
        for old in self.steps()[: -self.keep]:
            self.path(old).unlink(missing_ok=True)
        return path

    def remove_partial(self) -> list[Path]:
        """Delete the temp files of saves that were interrupted (process killed mid-write);
        returns what was removed. Call only while no save is in progress (before training)."""
        if not self.folder.is_dir():
            return []
        partial = [p for p in self.folder.iterdir() if PARTIAL_CHECKPOINT_RE.match(p.name)]
        for path in partial:
            path.unlink(missing_ok=True)  # another rank may have removed it already
        if partial:
            warnings.warn(
                f"removed {len(partial)} partial checkpoint file(s) of an interrupted save: "
                + ", ".join(p.name for p in partial),
                stacklevel=2,
            )
        return partial

    def load_latest(self, device: torch.device) -> dict[str, Any] | None:
        """The newest readable checkpoint (an unreadable one is skipped with a warning), after
        removing the temp files of interrupted saves; None when there is none."""
        self.remove_partial()
        for step in reversed(self.steps()):
            try:
                return torch.load(self.path(step), map_location=device, weights_only=True)
            except Exception as error:  # a torn or corrupt file: fall back to an older one
                warnings.warn(
                    f"skipping unreadable checkpoint {self.path(step)}: {error}", stacklevel=2
                )
        return None


def rng_state() -> dict[str, Any]:
    """Global torch RNG states (CPU and, where present, CUDA)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def remove_partial_metrics(folder: Path) -> list[Path]:
    """Delete the ``.metrics.*.tmp`` files of ``MetricsLog`` rewrites that were killed
    mid-write (only names matching ``PARTIAL_METRICS_RE``); returns what was removed."""
    if not folder.is_dir():
        return []
    partial = [p for p in folder.iterdir() if PARTIAL_METRICS_RE.match(p.name) and p.is_file()]
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


class MetricsLog:
    """Rows of ``step, <metrics>, lr, seconds`` in ``out/metrics.csv`` (+ TensorBoard events
    in ``out/tensorboard`` when tensorboard is installed). On resume, rows after the resumed
    step are dropped so the file reads as one run; that rewrite is atomic, and the temp files
    of a rewrite killed mid-write are removed when the next ``MetricsLog`` opens the folder."""

    def __init__(self, out_dir: Path, names: tuple[str, ...], resume_step: int) -> None:
        self.path = Path(out_dir) / "metrics.csv"
        self.columns = ["step", *names, "lr", "seconds"]
        remove_partial_metrics(self.path.parent)
        rows = []
        if resume_step > 0 and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= resume_step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, self.columns)
        writer.writeheader()
        writer.writerows(rows)
        write_text(self.path, buffer.getvalue(), temp_prefix=".metrics.", temp_suffix=".tmp")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(Path(out_dir) / "tensorboard"))
        except ImportError:  # tensorboard not installed: CSV only
            pass

    def write(self, step: int, values: dict[str, float]) -> None:
        """Append one row (and flush it)."""
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, self.columns).writerow({"step": step, **values})
        if self.tensorboard is not None:
            for name, value in values.items():
                self.tensorboard.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def plot_losses(csv_path: Path, png_path: Path, names: tuple[str, ...]) -> Path:
    """Plot the loss columns of ``csv_path`` against step (log scale) into ``png_path``."""
    with open(csv_path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    figure, axes = pyplot().subplots(figsize=(7, 4))
    steps = [int(r["step"]) for r in rows]
    for name in names:
        axes.plot(steps, [float(r[name]) for r in rows], label=name)
    axes.set_xlabel("step")
    axes.set_ylabel("loss / metric")
    if rows and all(float(r[n]) > 0 for r in rows for n in names):
        axes.set_yscale("log")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return save_figure(figure, png_path, dpi=100, temp_prefix=".loss.")
