"""The amortised proposal: a small goal-conditioned policy head that maps (current latent, goal
latent, end-effector state) to an action sequence, the mean the ``amortised`` actor refines.
Saved as one safetensors file (``policy.safetensors``) beside the world model it was made for."""

from __future__ import annotations

import json
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
    """

    num_patches: int
    latent_dim: int
    horizon: int = 1
    hidden: int = 128
    limit: tuple[float, ...] = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)
    goal_readout: bool = False


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


def save_policy(policy: ProposalPolicy, path: str | Path, info: dict | None = None) -> Path:
    """Write ``policy`` (weights, sizes and ``info``, e.g. how it was made) to ``path``
    atomically (temp file, then rename); returns the path."""
    metadata = {
        "format": FORMAT,
        "config": json.dumps(asdict(policy.config)),
        "info": json.dumps(info or {}),
    }
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    return atomic_write(path, lambda temp: save_file(state, temp, metadata=metadata))


def load_policy(path_or_name: str | Path, device: torch.device | str = "cpu") -> ProposalPolicy:
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
    policy = ProposalPolicy(PolicyConfig(**config))
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise PolicyError(f"{path}: weights do not fit the recorded sizes ({error})") from None
    return policy.to(device).eval()


def policy_info(path_or_name: str | Path) -> dict:
    """The ``info`` a policy file was saved with (how it was made)."""
    with safe_open(str(policy_path(path_or_name)), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))


def check_fits(policy: ProposalPolicy, world_model, horizon: int) -> None:
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
