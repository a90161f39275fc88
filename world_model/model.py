"""``WorldModel``: encoder + action-conditioned predictor behind the two calls a planner makes,
``encode(images)`` and ``rollout(z0, s0, actions)``; ``build`` makes a randomly initialised one."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from robots.config import ConfigError
from robots.franka import rollout_states
from world_model.config import WorldModelConfig, load_model_config
from world_model.critic import Critic, init_critic
from world_model.devices import resolve_device
from world_model.encoder import VideoEncoder, layer_norm_latents, preprocess_images
from world_model.errors import InputShapeError, NoCriticError, NoReadoutError, NoSubgoalsError
from world_model.layers import init_weights
from world_model.predictor import ACPredictor
from world_model.readout import StateReadout, init_readout
from world_model.subgoals import SubgoalGenerator, init_subgoals


class WorldModel(nn.Module):
    """V-JEPA 2-AC style world model.

    Attributes:
        config: the sizes. num_patches: tokens per frame (N). latent_dim: encoder width (D).
        autocast_dtype: dtype of the hot path; None means bf16 on CUDA, float32 on CPU.
        compiled_step: the predictor's per-frame step through ``torch.compile`` (set by
            ``compile_rollout``), or None (eager).
    """

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        self.num_patches = config.num_patches
        self.latent_dim = config.encoder.embed_dim
        self.state_dim = config.predictor.action_embed_dim
        self.encoder = VideoEncoder(config)
        self.predictor = ACPredictor(config)
        self.readout = StateReadout(config) if config.readout.enabled else None
        self.critic = Critic(config) if config.critic.enabled else None
        self.subgoals = SubgoalGenerator(config) if config.subgoals.enabled else None
        self.autocast_dtype: torch.dtype | None = None
        self.compiled_step = None
        self.source: Path | None = None  # the checkpoint it was loaded from (world_model.load)
        self._graph_mode = False

    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.predictor.predictor_proj.weight.device

    def _autocast(self) -> contextlib.AbstractContextManager:
        device = self.device
        dtype = self.autocast_dtype
        if dtype is None:
            dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)

    @torch.no_grad()
    def encode(
        self, images: np.ndarray | torch.Tensor, states: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Camera images -> layer-normed latents.

        Args:
            images: uint8 RGB [B, H, W, 3] or [H, W, 3] (numpy or torch), any size: they are
                centre-cropped to a square and resized to ``config.img_size`` (a model with
                ``config.views`` > 1 takes its views side by side, W = views x H, and does
                this per view).
            states: accepted and ignored (shared protocol with the ground-truth-state model).

        Returns:
            [B, N, D] float32 on the model's device (computed without autograd: the encoder
            is frozen for planning and predictor training).
        """
        pixels = preprocess_images(images, self.config.img_size, self.device, self.config.views)
        with self._autocast():
            raw = self.encoder.encode_frames(pixels)
        return layer_norm_latents(raw.float())

    def add_readout(self) -> StateReadout:
        """Give the model a freshly initialised state readout (``config.readout.enabled``
        becomes true, so ``save`` records it); returns the head."""
        self.config.readout.enabled = True
        with torch.device(self.device):
            self.readout = StateReadout(self.config)
        init_readout(self.readout)
        return self.readout

    def add_critic(self, hidden: int = 256, use_state: bool = True, max_steps: int = 64) -> Critic:
        """Give the model a freshly initialised critic of these sizes (``config.critic``
        records them, so ``save`` keeps it); returns the head."""
        self.config.critic.enabled = True
        self.config.critic.hidden = hidden
        self.config.critic.use_state = use_state
        self.config.critic.max_steps = max_steps
        with torch.device(self.device):
            self.critic = Critic(self.config)
        init_critic(self.critic)
        return self.critic

    def cost_to_go(
        self, latents: torch.Tensor, states: torch.Tensor, goal_latents: torch.Tensor
    ) -> torch.Tensor:
        """The critic's steps-to-goal ``[B]`` (>= 0; differentiable, for gradient planners).

        Args:
            latents: [B, N, D] layer-normed latents of the scored frames (encoded or predicted).
            states: [B, 7] their end-effector states.
            goal_latents: [B, N, D] or [1, N, D] the goals' latents.

        Raises:
            NoCriticError: the model has no critic (``config.critic.enabled`` is false).
            InputShapeError: a shape does not fit.
        """
        if self.critic is None:
            raise NoCriticError(
                "this world model has no critic (config.critic.enabled is false); train one "
                "with `jepa-mpc train critic`"
            )
        self._check_goal_inputs(latents, states, goal_latents)
        device = self.device
        return self.critic(
            latents.to(device, torch.float32),
            states.to(device, torch.float32),
            goal_latents.to(device, torch.float32),
        )

    def _check_goal_inputs(
        self, latents: torch.Tensor, states: torch.Tensor, goal_latents: torch.Tensor
    ) -> None:
        """Raise ``InputShapeError`` unless latents are [B, N, D], states [B, 7] and goal
        latents [B or 1, N, D] (the goal-conditioned heads' inputs)."""
        n, d = self.num_patches, self.latent_dim
        batch = latents.shape[0] if latents.ndim == 3 else -1
        if latents.ndim != 3 or tuple(latents.shape[1:]) != (n, d):
            raise InputShapeError(f"latents must be [B, {n}, {d}], got {tuple(latents.shape)}")
        if goal_latents.ndim != 3 or tuple(goal_latents.shape[1:]) != (n, d):
            raise InputShapeError(
                f"goal latents must be [B, {n}, {d}] or [1, {n}, {d}], got "
                f"{tuple(goal_latents.shape)}"
            )
        if goal_latents.shape[0] not in (1, batch) or tuple(states.shape) != (batch, 7):
            raise InputShapeError(
                f"for {batch} latents: states must be [{batch}, 7] (got {tuple(states.shape)}) "
                f"and goal latents [1 or {batch}, ...] (got {goal_latents.shape[0]})"
            )

    def add_subgoals(
        self, hidden: int = 256, depth: int = 4, heads: int = 4, max_ahead: int = 6
    ) -> SubgoalGenerator:
        """Give the model a freshly initialised subgoal generator of these sizes
        (``config.subgoals`` records them, so ``save`` keeps it); returns the head."""
        section = self.config.subgoals
        section.enabled, section.hidden, section.depth = True, hidden, depth
        section.heads, section.max_ahead = heads, max_ahead
        with torch.device(self.device):
            self.subgoals = SubgoalGenerator(self.config)
        init_subgoals(self.subgoals)
        return self.subgoals

    @torch.no_grad()
    def propose_subgoal(
        self, latents: torch.Tensor, states: torch.Tensor, goal_latents: torch.Tensor, ahead: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The latent [B, N, D] the data would show ``ahead`` control steps after ``latents``
        [B, N, D] (in ``states`` [B, 7]) on its way to ``goal_latents`` [B or 1, N, D], and
        the end-effector state [B, 7] it would show (x, y, z and gripper proposed).

        Raises:
            NoSubgoalsError: the model has no subgoal generator.
            InputShapeError: a shape does not fit, or ``ahead`` is outside 1..max_ahead.
        """
        if self.subgoals is None:
            raise NoSubgoalsError(
                "this world model has no subgoal generator (config.subgoals.enabled is false); "
                "train one with `jepa-mpc train subgoals`"
            )
        self._check_goal_inputs(latents, states, goal_latents)
        if not 1 <= ahead <= self.config.subgoals.max_ahead:
            raise InputShapeError(
                f"subgoals are trained 1..{self.config.subgoals.max_ahead} steps ahead, "
                f"asked for {ahead}"
            )
        device = self.device
        return self.subgoals(
            latents.to(device, torch.float32),
            states.to(device, torch.float32),
            goal_latents.to(device, torch.float32),
            int(ahead),
        )

    @torch.no_grad()
    def read_state(self, latents: torch.Tensor) -> torch.Tensor:
        """End-effector states [B, 7] that latents [B, N, D] show (the readout head).

        Raises:
            NoReadoutError: the model has no readout (``config.readout.enabled`` is false).
            InputShapeError: ``latents`` is not [B, N, D].
        """
        if self.readout is None:
            raise NoReadoutError(
                "this world model has no state readout (config.readout.enabled is false); "
                "train one with `jepa-mpc train readout`"
            )
        n, d = self.num_patches, self.latent_dim
        if latents.ndim != 3 or tuple(latents.shape[1:]) != (n, d):
            raise InputShapeError(f"latents must be [B, {n}, {d}], got {tuple(latents.shape)}")
        return self.readout(latents.to(self.device, torch.float32))

    def compile_rollout(self, mode: str | None = None, backend: str = "inductor") -> None:
        """Run the predictor's per-frame step through ``torch.compile`` from now on (fixed
        shapes: each rollout batch is padded up to ``rollout_bucket``, so a handful of graphs
        serve every population size). ``mode="reduce-overhead"`` also captures CUDA graphs.
        Whether it pays is measured, not assumed: ``scripts/gpu_bench.sh``, docs/benchmark.md.
        """
        # Population sizes vary (iCEM decays); after the first recompile dynamo makes the batch
        # dimension dynamic, but step 0 and later steps (with a KV cache) are separate graphs.
        limit = torch._dynamo.config.recompile_limit
        torch._dynamo.config.recompile_limit = max(limit, 32)
        self.compiled_step = torch.compile(self.predictor.step, mode=mode, backend=backend)
        self._graph_mode = mode == "reduce-overhead"

    def _check_rollout_inputs(self, z0, s0, actions) -> int:
        """Validate shapes; returns the batch size (inputs with batch 1 broadcast)."""
        n, d, k = self.num_patches, self.latent_dim, self.state_dim
        if actions.ndim != 3 or actions.shape[-1] != k or actions.shape[1] < 1:
            raise InputShapeError(f"actions must be [B, H>=1, {k}], got {tuple(actions.shape)}")
        if z0.ndim != 3 or tuple(z0.shape[1:]) != (n, d):
            raise InputShapeError(f"z0 must be [B, {n}, {d}], got {tuple(z0.shape)}")
        if s0.ndim != 2 or s0.shape[-1] != k:
            raise InputShapeError(f"s0 must be [B, {k}], got {tuple(s0.shape)}")
        if actions.shape[1] > self.config.max_frames:
            raise InputShapeError(
                f"horizon {actions.shape[1]} exceeds the predictor's {self.config.max_frames} "
                f"frames (num_frames / tubelet_size)"
            )
        batch = max(z0.shape[0], s0.shape[0], actions.shape[0])
        for name, size in (("z0", z0.shape[0]), ("s0", s0.shape[0]), ("actions", len(actions))):
            if size not in (1, batch):
                raise InputShapeError(f"{name} batch {size} does not match batch {batch}")
        return batch

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Imagine the latents of frames 1..H under ``actions`` (autoregressive, KV cache).

        Each prediction is layer-normed and fed back as the next frame's input, and the next
        state is integrated from the action (``robots.franka.rollout_states``), as the release's
        planner does. No host synchronisation inside the loop; differentiable w.r.t. actions.

        Args:
            z0: [B, N, D] layer-normed latents of the current frame.
            s0: [B, 7] current end-effector state.
            actions: [B, H, 7] delta actions. Any of the three may have batch 1 (broadcast).

        Returns:
            [B, H, N, D] float32 layer-normed predicted latents of frames 1..H.
        """
        batch = self._check_rollout_inputs(z0, s0, actions)
        step_fn, padded = self.predictor.step, batch
        if self.compiled_step is not None:
            step_fn, padded = self.compiled_step, rollout_bucket(batch)
            if self._graph_mode:
                torch.compiler.cudagraph_mark_step_begin()
        latent = pad_batch(z0.to(self.device, torch.float32), padded)
        state = pad_batch(s0.to(self.device, torch.float32), padded)
        actions = pad_batch(actions.to(self.device, torch.float32), padded)
        # States do not depend on the latents: integrate them up front, in float32 (outside
        # autocast, so that bf16 never touches the rotation matrices).
        states = state[:, None]
        if actions.shape[1] > 1:
            states = torch.cat((states, rollout_states(state, actions[:, :-1])), dim=1)
        predictions, cache = [], None
        with self._autocast():
            for step in range(actions.shape[1]):
                raw, cache = step_fn(latent, actions[:, step], states[:, step], step, cache)
                latent = layer_norm_latents(raw.float())
                predictions.append(latent[:batch])
        return torch.stack(predictions, dim=1)

    def predict(
        self, latents: torch.Tensor, actions: torch.Tensor, states: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced prediction of frames 1..T from frames 0..T-1 (training, checks).

        Args:
            latents: [B, T, N, D] layer-normed latents; actions, states: [B, T, 7].

        Returns:
            [B, T, N, D] raw predictor output (not layer-normed).
        """
        with self._autocast():
            return self.predictor(latents, actions, states).float()


def rollout_bucket(batch: int) -> int:
    """The batch a compiled rollout runs at: the next power of two, at least 8."""
    return max(8, 1 << (batch - 1).bit_length())


def pad_batch(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """[1 or B, ...] -> [size, ...] (size >= B): a batch of 1 is broadcast, a batch of B gets
    size - B zero rows (a compiled rollout's padding; their predictions are dropped)."""
    if tensor.shape[0] == size:
        return tensor
    if tensor.shape[0] == 1:
        return tensor.expand(size, *tensor.shape[1:])
    return torch.cat((tensor, tensor.new_zeros(size - tensor.shape[0], *tensor.shape[1:])))


def resolve_config(config_or_preset: str | Path | WorldModelConfig) -> WorldModelConfig:
    """A config object, a preset name in ``configs/model/`` or a YAML/JSON path -> config.

    Raises:
        ConfigError: anything else (a plain dict: build a config with
            ``world_model.config.config_from_dict``).
    """
    if isinstance(config_or_preset, WorldModelConfig):
        return config_or_preset
    if not isinstance(config_or_preset, str | Path):
        hint = (
            "; build one with world_model.config.config_from_dict(mapping)"
            if isinstance(config_or_preset, dict)
            else ""
        )
        raise ConfigError(
            "a model config is a WorldModelConfig, a preset name (tiny, small, vitg-ac, ...) "
            f"or a YAML/JSON path, not a {type(config_or_preset).__name__}{hint}"
        )
    return load_model_config(config_or_preset)


def build(
    config_or_preset: str | Path | WorldModelConfig,
    device: str | torch.device = "cpu",
    seed: int | None = None,
) -> WorldModel:
    """A randomly initialised world model (release init), in eval mode, on ``device``.

    Args:
        config_or_preset: e.g. "tiny", "small", "vitg-ac", a YAML/JSON path or a config.
        device: where to allocate the parameters (allocated there directly).
        seed: if given, seeds torch's global RNG before the initialisation.
    """
    config = resolve_config(config_or_preset)
    device = resolve_device(device)  # a missing CUDA device: one clear DeviceError
    if seed is not None:
        torch.manual_seed(seed)
    with torch.device(device):
        model = WorldModel(config)
        init_weights(model.encoder, model.encoder.blocks)
        init_weights(model.predictor, model.predictor.predictor_blocks)
        if model.readout is not None:
            init_readout(model.readout)
        if model.critic is not None:
            init_critic(model.critic)
        if model.subgoals is not None:
            init_subgoals(model.subgoals)
        if config.predictor.residual:  # start as the identity: predict "nothing changes"
            torch.nn.init.zeros_(model.predictor.predictor_proj.weight)
            torch.nn.init.zeros_(model.predictor.predictor_proj.bias)
    return model.eval()


def with_views(model: WorldModel, views: int) -> WorldModel:
    """A copy of ``model`` that takes ``views`` camera views side by side, with the same encoder
    and predictor weights (neither depends on the token count: the views share the encoder,
    the predictor's columns continue across them). The readout, critic and subgoal heads,
    whose position embeddings are per token, are left out: train them for the new layout.
    """
    config = copy.deepcopy(model.config)
    config.views = int(views)
    config.readout.enabled = False
    config.critic.enabled = False
    config.subgoals.enabled = False
    config.__post_init__()
    with torch.device(model.device):
        widened = WorldModel(config)
    widened.encoder.load_state_dict(model.encoder.state_dict())
    widened.predictor.load_state_dict(model.predictor.state_dict())
    return widened.eval()
