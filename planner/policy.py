"""The amortised proposal: a small goal-conditioned policy head that maps (current latent, goal
latent, end-effector state) to an action sequence, the mean the ``amortised`` actor refines.
Saved as one safetensors file (``policy.safetensors``) beside the world model it was made for."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from robots.config import ConfigError
from robots.franka import ACTION_DIM, GRIPPER, POS, ROT

POLICY_FILE = "policy.safetensors"
FORMAT = "jepa-mpc/policy/v1"
WORKSPACE_CENTRE = (0.525, 0.0, 0.305)  # metres: positions are fed relative to it, in dm
STATE_FEATURES = 10  # position (3), sin and cos of the Euler angles (6), gripper (1)


class PolicyError(ConfigError):
    """A policy file that is missing, unreadable, or made for another world model."""


@dataclass
class PolicyConfig:
    """Sizes of a ``ProposalPolicy``; stored in the file's metadata.

    Attributes:
        num_patches, latent_dim: the latent shape [N, D] of the world model it was made for.
        horizon: actions proposed (H). hidden: width of both MLPs.
        limit: [7] per-dimension action bound; outputs are tanh-squashed into it.
    """

    num_patches: int
    latent_dim: int
    horizon: int = 1
    hidden: int = 128
    limit: tuple[float, ...] = (0.075, 0.075, 0.075, 0.0, 0.0, 0.0, 0.75)


def state_features(state: torch.Tensor) -> torch.Tensor:
    """[B, 7] end-effector states -> [B, 10] features that do not wrap at ±pi: position
    relative to the workspace centre in decimetres, sin and cos of each angle, gripper."""
    centre = state.new_tensor(WORKSPACE_CENTRE)
    angles = state[:, ROT]
    position = (state[:, POS] - centre) * 10.0
    return torch.cat((position, angles.sin(), angles.cos(), state[:, GRIPPER:]), dim=-1)


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
        self.head = nn.Sequential(
            nn.Linear(2 * hidden + STATE_FEATURES, hidden),
            nn.GELU(),
            nn.Linear(hidden, hidden),
            nn.GELU(),
            nn.Linear(hidden, config.horizon * ACTION_DIM),
        )
        self.register_buffer("limit", torch.tensor(config.limit, dtype=torch.float32))

    def forward(
        self, latent: torch.Tensor, goal_latent: torch.Tensor, state: torch.Tensor
    ) -> torch.Tensor:
        """Proposed actions.

        Args:
            latent: [B, N, D] current latents. goal_latent: [B, N, D] (or [1, N, D]).
            state: [B, 7] current end-effector states.

        Returns:
            [B, H, 7] actions inside ``limit``.
        """
        goal_latent = goal_latent.expand_as(latent)
        tokens = self.token_mlp(torch.cat((latent, goal_latent), dim=-1))  # [B, N, hidden]
        pooled = torch.cat((tokens.mean(dim=1), tokens.amax(dim=1)), dim=-1)
        raw = self.head(torch.cat((pooled, state_features(state)), dim=-1))
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    metadata = {
        "format": FORMAT,
        "config": json.dumps(asdict(policy.config)),
        "info": json.dumps(info or {}),
    }
    state = {key: value.detach().cpu().contiguous() for key, value in policy.state_dict().items()}
    save_file(state, tmp, metadata=metadata)
    tmp.replace(path)
    return path


def load_policy(path_or_name: str | Path, device: torch.device | str = "cpu") -> ProposalPolicy:
    """Read a policy file (see ``policy_path``), in eval mode on ``device``.

    Raises:
        PolicyError: missing file, not a policy file, or weights that do not fit its sizes.
    """
    path = policy_path(path_or_name)
    try:
        from safetensors import safe_open

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
    from safetensors import safe_open

    with safe_open(str(policy_path(path_or_name)), framework="pt") as handle:
        return json.loads((handle.metadata() or {}).get("info", "{}"))


def check_fits(policy: ProposalPolicy, num_patches: int, latent_dim: int, horizon: int) -> None:
    """Raise ``PolicyError`` unless ``policy`` reads [num_patches, latent_dim] latents and
    proposes at least ``horizon`` actions."""
    config = policy.config
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
