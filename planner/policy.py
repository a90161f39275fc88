"""The amortised proposal: a small goal-conditioned policy head that maps (current latent, goal
latent, end-effector state) to an action sequence, the mean the ``amortised`` actor refines.
Saved as one safetensors file (``policy.safetensors``) beside the world model it was made for."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from robots.config import ConfigError
from robots.franka import ACTION_DIM, GRIPPER, POS, ROT
from world_model.checksums import check_hashes, folder_records
from world_model.files import atomic_write

POLICY_FILE = "policy.safetensors"


def named_policy_file(name: str) -> str:
    """The file of a second policy shipped beside a model (``actor.policy: model:NAME``)."""
    return f"policy_{name}.safetensors"


FORMAT = "jepa-mpc/policy/v1"
WORKSPACE_CENTRE = (0.525, 0.0, 0.305)  # metres: positions are fed relative to it, in dm
STATE_FEATURES = 10  # position (3), sin and cos of the Euler angles (6), gripper (1)
GOAL_FEATURES = 4  # goal position minus current position (3, dm), goal gripper minus current


class PolicyError(ConfigError):
    """A policy file that is missing, unreadable, or made for another world model."""


@dataclass
class PolicyConfig:
    """Sizes of a ``ProposalPolicy``; stored in the file's metadata.

    Attributes:
        num_patches, latent_dim: the latent shape [N, D] of the world model it was made for.
        horizon: actions proposed (H). hidden: width of both MLPs.
        limit: [7] per-dimension action bound; outputs are tanh-squashed into it.
        goal_readout: also read the goal state that the world model's readout head reads off
            the goal latent (its position and gripper, relative to the current state): a
            head trained on far more frames than the policy sees, so the policy mostly learns
            a correction to "go there".
        kind: ``pooled`` (``ProposalPolicy``: the amortised search's proposal) or
            ``keypoints`` (``KeypointPolicy``: a one-goal-image policy trained on DAgger labels).
        keypoints: soft-argmax keypoints per view and frame (``keypoints`` kind).
        views: camera views side by side in the latent (``keypoints`` kind: each view's
            tokens are a square grid).
    """

    num_patches: int
    latent_dim: int
    horizon: int = 1
    hidden: int = 128
    limit: tuple[float, ...] = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)
    goal_readout: bool = False
    kind: str = "pooled"
    keypoints: int = 8
    views: int = 1


def state_features(state: torch.Tensor) -> torch.Tensor:
    """[B, 7] end-effector states -> [B, 10] features that do not wrap at ±pi: position
    relative to the workspace centre in decimetres, sin and cos of each angle, gripper."""
    centre = state.new_tensor(WORKSPACE_CENTRE)
    angles = state[:, ROT]
    position = (state[:, POS] - centre) * 10.0
    return torch.cat((position, angles.sin(), angles.cos(), state[:, GRIPPER:]), dim=-1)


def goal_features(state: torch.Tensor, goal_state: torch.Tensor) -> torch.Tensor:
    """[B, 7] current and read goal states -> [B, 4]: position difference (dm), gripper's."""
    difference = goal_state.to(state) - state
    return torch.cat((difference[:, POS] * 10.0, difference[:, GRIPPER:]), dim=-1)


class ProposalPolicy(nn.Module):
    """Goal-conditioned policy over latents.

    A per-token MLP reads each (current, goal) token pair; mean and max pooling over the N
    tokens summarise the pair of frames; a second MLP adds the state and outputs H actions,
    squashed into ``limit`` (dimensions with limit 0 are always 0).
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        width, hidden = config.latent_dim, config.hidden
        self.token_mlp = nn.Sequential(
            nn.Linear(2 * width, hidden), nn.GELU(), nn.Linear(hidden, hidden)
        )
        extra = GOAL_FEATURES if config.goal_readout else 0
        self.head = nn.Sequential(
            nn.Linear(2 * hidden + STATE_FEATURES + extra, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, config.horizon * ACTION_DIM),
        )
        self.register_buffer("limit", torch.tensor(config.limit, dtype=torch.float32))

    def forward(
        self,
        latent: torch.Tensor,
        goal_latent: torch.Tensor,
        state: torch.Tensor,
        goal_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Proposed actions.

        Args:
            latent: [B, N, D] current latents. goal_latent: [B, N, D] (or [1, N, D]).
            state: [B, 7] current end-effector states.
            goal_state: [B, 7] (or [1, 7]) the goal state read off ``goal_latent`` by the
                world model's readout; needed when ``config.goal_readout``.

        Returns:
            [B, H, 7] actions inside ``limit``.
        """
        goal_latent = goal_latent.expand_as(latent)
        tokens = self.token_mlp(torch.cat((latent, goal_latent), dim=-1))  # [B, N, hidden]
        features = [tokens.mean(dim=1), tokens.amax(dim=1), state_features(state)]
        if self.config.goal_readout:
            if goal_state is None:
                raise PolicyError("this proposal policy reads the goal's readout state: pass it")
            features.append(goal_features(state, goal_state.expand_as(state)))
        raw = self.head(torch.cat(features, dim=-1))
        actions = raw.unflatten(-1, (self.config.horizon, ACTION_DIM))
        return torch.tanh(actions) * self.limit


class KeypointPolicy(nn.Module):
    """Goal-conditioned policy over latents that locates things by spatial soft-argmax.

    A per-token MLP (with a learned position embedding) reads every token of the current
    frame and of the goal frame. For each view, ``keypoints`` softmax maps over that view's
    token grid give expected grid coordinates (where the hand, the cube, the target are, at
    sub-token precision) and attention-pooled token features; separate maps for the current
    and the goal frame. An MLP reads them with the state and the frames' mean features and
    outputs one action: the translation squashed into the limit, the gripper as an intent
    logit (``raw``) that ``forward`` turns into a full open or close command. Trained on
    DAgger labels toward one goal image (``jepa-mpc train policy --dagger``); the ``policy``
    actor executes it as it is (issue #15, docs/sim_small.md "Session 13").
    """

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        side = math.isqrt(config.num_patches // max(config.views, 1))
        if config.horizon != 1 or config.views * side * side != config.num_patches:
            raise PolicyError(
                f"a keypoint policy proposes 1 action from square per-view token grids; got "
                f"horizon {config.horizon}, {config.num_patches} tokens in {config.views} view(s)"
            )
        width, hidden, count = config.latent_dim, config.hidden, config.keypoints
        self.position = nn.Parameter(torch.zeros(config.num_patches, width))
        self.tokens = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU()
        )
        self.maps = nn.Linear(hidden, 2 * count)  # current frame's maps, then the goal's
        self.values = nn.Linear(hidden, 8)
        ticks = torch.linspace(-1.0, 1.0, side)
        rows, cols = torch.meshgrid(ticks, ticks, indexing="ij")
        self.register_buffer("grid", torch.stack((cols.flatten(), rows.flatten()), -1))
        features = 2 * config.views * count * (2 + 8) + STATE_FEATURES + 2 * hidden
        self.head = nn.Sequential(
            nn.Linear(features, 2 * hidden),
            nn.GELU(),
            nn.Linear(2 * hidden, 2 * hidden),
            nn.GELU(),
            nn.Linear(2 * hidden, 4),
        )
        self.register_buffer("limit", torch.tensor(config.limit, dtype=torch.float32))

    def locate(self, latent: torch.Tensor, which: int) -> torch.Tensor:
        """[B, F] keypoint coordinates and pooled values of one frame ``latent`` [B, N, D],
        with the current frame's maps (``which`` 0) or the goal's (1), and its mean feature."""
        count, views = self.config.keypoints, self.config.views
        tokens = self.tokens(latent + self.position)  # [B, N, hidden]
        logits = self.maps(tokens)[..., which * count : (which + 1) * count]
        weights = logits.unflatten(1, (views, -1)).softmax(dim=2)  # [B, V, n, K]
        coords = torch.einsum("bvnk,nc->bvkc", weights, self.grid)
        values = self.values(tokens).unflatten(1, (views, -1))
        pooled = torch.einsum("bvnk,bvnc->bvkc", weights, values)
        return torch.cat((coords.flatten(1), pooled.flatten(1), tokens.mean(dim=1)), dim=-1)

    def raw(
        self, latent: torch.Tensor, goal_latent: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(Translation [B, 3] inside the limit, gripper intent logit [B]: > 0 closes)."""
        goal = goal_latent.expand_as(latent)
        features = torch.cat(
            (self.locate(latent, 0), self.locate(goal, 1), state_features(state)), dim=-1
        )
        out = self.head(features)
        return torch.tanh(out[:, :3]) * self.limit[POS], out[:, 3]

    def forward(
        self,
        latent: torch.Tensor,
        goal_latent: torch.Tensor,
        state: torch.Tensor,
        goal_state: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """[B, 1, 7]: the translation, no rotation, the gripper intent commanded fully
        (``goal_state`` is not read)."""
        translation, intent = self.raw(latent, goal_latent, state)
        actions = translation.new_zeros(latent.shape[0], 1, ACTION_DIM)
        actions[:, 0, POS] = translation
        actions[:, 0, GRIPPER] = torch.where(intent > 0, 1.0, -1.0) * self.limit[GRIPPER]
        return actions


def build_policy(config: PolicyConfig) -> ProposalPolicy | KeypointPolicy:
    """A fresh policy of ``config.kind``."""
    if config.kind == "pooled":
        return ProposalPolicy(config)
    if config.kind == "keypoints":
        return KeypointPolicy(config)
    raise PolicyError(f"unknown policy kind {config.kind!r} (pooled, keypoints)")


def policy_path(path_or_name: str | Path) -> Path:
    """A policy file: a ``.safetensors`` path, a folder holding ``policy.safetensors``, or a
    bundled world-model name (``sim-small`` -> its checkpoint folder's policy file)."""
    from world_model.checkpoint import CHECKPOINT_DIR

    path = Path(path_or_name)
    if path.is_dir():
        path = path / POLICY_FILE
    elif not path.exists() and path.name == str(path_or_name) and not path.suffix:
        path = CHECKPOINT_DIR / str(path_or_name) / POLICY_FILE
    if not path.is_file():
        raise PolicyError(
            f"no proposal policy at {str(path_or_name)!r} ({path}); train one with "
            "`jepa-mpc train policy`, or set actor.policy=none to propose from the warm start"
        )
    return path


def save_policy(
    policy: ProposalPolicy | KeypointPolicy, path: str | Path, info: dict | None = None
) -> Path:
    """Write ``policy`` (weights, sizes and ``info``, e.g. how it was made) to ``path``
    atomically (temp file, then rename); returns the path."""
    metadata = {
        "format": FORMAT,
        "config": json.dumps(asdict(policy.config)),
        "info": json.dumps(info or {}),
    }
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    return atomic_write(path, lambda temp: save_file(state, temp, metadata=metadata))


def load_policy(
    path_or_name: str | Path, device: torch.device | str = "cpu"
) -> ProposalPolicy | KeypointPolicy:
    """Read a policy file (see ``policy_path``), in eval mode on ``device``.

    A file that its folder's checksum records (``MODEL_CARD.md``, ``SHA256SUMS``) list is
    checked against them first.

    Raises:
        PolicyError: missing file, not a policy file, or weights that do not fit its sizes.
        ChecksumError: the file differs from its folder's record.
    """
    path = policy_path(path_or_name)
    for record, hashes in folder_records(path.parent):  # a policy shipped beside its model
        if path.name in hashes:
            check_hashes(path.parent, record, {path.name: hashes[path.name]})
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(path)
    except (SafetensorError, OSError, ValueError) as error:
        raise PolicyError(f"{path}: unreadable policy file ({str(error)[:200]})") from None
    if metadata.get("format") != FORMAT:
        raise PolicyError(f"{path}: not a proposal policy (format {metadata.get('format')!r})")
    config = json.loads(metadata["config"])
    config["limit"] = tuple(config["limit"])
    policy = build_policy(PolicyConfig(**config))
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PolicyError(f"{path}: weights do not fit the recorded sizes ({error})") from None
    return policy.to(device).eval()


def model_record(spec: str) -> dict:
    """What identifies the world model: its spec and the sha256 of its weights file."""
    from world_model.checkpoint import WEIGHTS_FILE, find_checkpoint
    from world_model.checksums import sha256_file
    from world_model.resolve import RANDOM_PREFIX

    if spec.startswith(RANDOM_PREFIX):  # an untrained model: nothing on disk
        return {"model": spec, "model_sha256": None}
    path = find_checkpoint(spec)
    weights = path / WEIGHTS_FILE if path.is_dir() else path
    return {"model": spec, "model_sha256": sha256_file(weights) if weights.is_file() else None}


def policy_info(path_or_name: str | Path) -> dict:
    """The ``info`` a policy file was saved with (how it was made)."""
    with safe_open(str(policy_path(path_or_name)), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))


def check_fits(policy: ProposalPolicy | KeypointPolicy, world_model, horizon: int) -> None:
    """Raise ``PolicyError`` unless ``policy`` reads ``world_model``'s [N, D] latents (and its
    readout, if the policy uses it) and proposes at least ``horizon`` actions."""
    config = policy.config
    num_patches, latent_dim = world_model.num_patches, world_model.latent_dim
    has_readout = callable(getattr(world_model, "read_state", None)) and (
        getattr(world_model, "readout", True) is not None
    )
    if config.goal_readout and not has_readout:
        raise PolicyError(
            "the proposal policy reads the goal through the world model's readout head, and "
            f"{type(world_model).__name__} has none (or set actor.policy=none)"
        )
    if (config.num_patches, config.latent_dim) != (num_patches, latent_dim):
        raise PolicyError(
            f"the proposal policy reads [{config.num_patches}, {config.latent_dim}] latents, "
            f"this world model's are [{num_patches}, {latent_dim}]: train a policy for it "
            "(`jepa-mpc train policy`) or set actor.policy=none"
        )
    if config.horizon < horizon:
        raise PolicyError(
            f"the proposal policy proposes {config.horizon} action(s), the planner's horizon "
            f"is {horizon}"
        )
