"""Merged world-model rollouts for planners running side by side in threads: each lane's
``rollout`` waits until every active lane has asked, then one batched call serves them all.

Example (one planner per lane, each planning in its own thread)::

    batcher = RolloutBatcher(world_model, lanes=4)
    planners = [Planner(config, batcher.lane(i), batcher.device) for i in range(4)]
    # in thread i:
    with batcher.active(i):
        plan = planners[i].plan(obs[i], goal[i])

Batching applies "where the model allows": a request made with autograd on and an input that
requires grad (the ``gd`` and ``cem+gd`` actors backpropagate through the rollout) runs on the
real model at once, unbatched, because one shared graph cannot be backpropagated from several
threads; so does a request whose batch sizes cannot be broadcast (the model then names the
problem) and any request from a lane outside its ``active`` block.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from planner.protocol import LatentWorldModel, model_device


@dataclass
class RolloutRequest:
    """One lane's rollout, waiting for the merged call.

    Attributes:
        z0: [B, N, D]. s0: [B, 7]. actions: [B, H, 7] (each expanded to the request's batch B).
        result: [B, H, N, D] once served. error: what the merged call raised, if it failed.
    """

    z0: torch.Tensor
    s0: torch.Tensor
    actions: torch.Tensor
    result: torch.Tensor | None = None
    error: BaseException | None = None
    served: bool = False

    @property
    def batch(self) -> int:
        """Sequences in this request (B)."""
        return self.actions.shape[0]

    def merge_key(self) -> tuple[Any, ...]:
        """Requests with equal keys can be concatenated along the batch dimension."""
        return tuple(
            (tuple(t.shape[1:]), t.dtype, t.device) for t in (self.z0, self.s0, self.actions)
        )


def common_batch(z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> int | None:
    """The batch the three inputs broadcast to (each has it or 1), else None."""
    if z0.ndim < 1 or s0.ndim < 1 or actions.ndim < 1:
        return None
    sizes = {z0.shape[0], s0.shape[0], actions.shape[0]}
    batch = max(sizes)
    return batch if sizes <= {1, batch} else None


def needs_grad(*tensors: torch.Tensor) -> bool:
    """Whether a rollout of these inputs would build a graph (in the calling thread)."""
    return torch.is_grad_enabled() and any(tensor.requires_grad for tensor in tensors)


class RolloutBatcher:
    """Owns the real world model and merges the rollouts of ``lanes`` lanes (see module doc).

    Flush rule: a merged call runs as soon as every lane inside an ``active`` block is waiting
    in ``rollout``; the waiting thread that sees this runs it (one ``threading.Condition``, no
    extra thread). A lane leaving its block lets the others flush without it, so a lane that
    finishes early, fails or is never active cannot block the rest. If the merged call raises,
    every lane it served raises that error.

    Attributes:
        world_model: the real model. lanes: number of lanes.
        merged_calls: merged rollouts run so far. direct_calls: requests run unbatched.
    """

    def __init__(self, world_model: LatentWorldModel, lanes: int) -> None:
        """Args:
        world_model: any ``LatentWorldModel`` (already on its device, in eval mode).
        lanes: how many lanes (>= 1) will share it.
        """
        if isinstance(lanes, bool) or not isinstance(lanes, int) or lanes < 1:
            raise ValueError(f"lanes must be an integer >= 1, got {lanes!r}")
        self.world_model = world_model
        self.lanes = lanes
        self.merged_calls = 0
        self.direct_calls = 0
        self._condition = threading.Condition()
        self._active: set[int] = set()
        self._pending: dict[int, RolloutRequest] = {}
        self._lanes = [LaneModel(self, index) for index in range(lanes)]

    @property
    def device(self) -> torch.device:
        """The device the real model computes on."""
        return model_device(self.world_model)

    def lane(self, index: int) -> LaneModel:
        """The model object lane ``index`` plans with (a ``LatentWorldModel``)."""
        self._check_index(index)
        return self._lanes[index]

    def enter(self, index: int) -> None:
        """Mark lane ``index`` as planning: merged calls wait for its requests until ``leave``.
        (Marking all lanes from one thread before their threads start keeps a fast lane from
        flushing alone before the others have entered.)"""
        self._check_index(index)
        with self._condition:
            if index in self._active:
                raise RuntimeError(f"lane {index} is already active")
            self._active.add(index)

    def leave(self, index: int) -> None:
        """Lane ``index`` stops planning; the others may now flush without it."""
        self._check_index(index)
        with self._condition:
            self._active.discard(index)
            self._condition.notify_all()

    @contextmanager
    def active(self, index: int) -> Iterator[None]:
        """``enter(index)`` for the duration of the block (``leave`` even on an error)."""
        self.enter(index)
        try:
            yield
        finally:
            self.leave(index)

    def rollout(
        self, index: int, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor
    ) -> torch.Tensor:
        """Lane ``index``'s rollout: merged with the other active lanes' where the model allows
        (see module doc), else straight on the real model. Same shapes as the model's."""
        self._check_index(index)
        batch = common_batch(z0, s0, actions)
        with self._condition:
            direct = batch is None or needs_grad(z0, s0, actions)
            direct = direct or index not in self._active or index in self._pending
            self.direct_calls += int(direct)
        if direct or batch is None:
            return self.world_model.rollout(z0, s0, actions)
        request = RolloutRequest(
            z0.expand(batch, *z0.shape[1:]),
            s0.expand(batch, *s0.shape[1:]),
            actions.expand(batch, *actions.shape[1:]),
        )
        with self._condition:
            self._pending[index] = request
            while not request.served:
                if self._complete():
                    self._flush()
                else:
                    self._condition.wait()
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _complete(self) -> bool:
        """Every active lane is waiting (caller holds the condition)."""
        return bool(self._pending) and self._active <= self._pending.keys()

    def _flush(self) -> None:
        """Serve every pending request, one merged call per compatible group (caller holds the
        condition; the other lanes are all waiting on it)."""
        pending, self._pending = self._pending, {}
        groups: dict[tuple[Any, ...], list[RolloutRequest]] = {}
        for request in pending.values():
            groups.setdefault(request.merge_key(), []).append(request)
        try:
            for requests in groups.values():
                self._run_merged(requests)
        finally:
            self._condition.notify_all()

    def _run_merged(self, requests: list[RolloutRequest]) -> None:
        """One real rollout on the concatenated requests; each gets its slice (or the error)."""
        try:
            with torch.no_grad():  # no request here needs a graph (see ``needs_grad``)
                latents = self.world_model.rollout(
                    torch.cat([r.z0 for r in requests]),
                    torch.cat([r.s0 for r in requests]),
                    torch.cat([r.actions for r in requests]),
                )
            parts = latents.split([r.batch for r in requests])
        except BaseException as error:  # every waiting lane must see it, none may hang
            for request in requests:
                request.error, request.served = error, True
            return
        self.merged_calls += 1
        for request, part in zip(requests, parts, strict=True):
            request.result, request.served = part, True

    def _check_index(self, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < self.lanes:
            raise IndexError(f"lane index must be in 0..{self.lanes - 1}, got {index!r}")


class LaneModel:
    """One lane's view of a ``RolloutBatcher``'s model: a ``LatentWorldModel`` whose ``rollout``
    goes through the batcher; every other member (``encode``, ``read_state``, ``readout``,
    ``config``, ...) is the real model's, so a lane model has exactly the protocol members the
    real one has. Not an ``nn.Module``: ``Planner`` leaves it where it is and checks
    ``device`` instead.

    Attributes:
        num_patches, latent_dim: the real model's latent shape [N, D].
    """

    def __init__(self, batcher: RolloutBatcher, index: int) -> None:
        self.batcher = batcher
        self.index = index
        self.num_patches: int = batcher.world_model.num_patches
        self.latent_dim: int = batcher.world_model.latent_dim

    @property
    def device(self) -> torch.device:
        """The real model's device (what ``planner.protocol.model_device`` reads)."""
        return self.batcher.device

    def encode(self, images: Any, states: Any = None) -> torch.Tensor:
        """The real model's ``encode``, called directly (not batched)."""
        return self.batcher.world_model.encode(images, states)

    def rollout(self, z0: torch.Tensor, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """z0 [B, N, D], s0 [B, 7], actions [B, H, 7] -> [B, H, N, D], through the batcher."""
        return self.batcher.rollout(self.index, z0, s0, actions)

    def __getattr__(self, name: str) -> Any:
        """Any other member is the real model's (called directly, not batched)."""
        if name in ("batcher", "index") or name.startswith("__"):
            raise AttributeError(name)  # not set yet (copy, pickle): never recurse
        return getattr(self.batcher.world_model, name)
