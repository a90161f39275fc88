"""Anti-collapse regularisers for training the encoder: a VICReg-style variance-covariance term
and SIGReg (LeJEPA / LeWorldModel's sketched isotropic-Gaussian test), on a batch of latents.

Both look at how latents vary *across images*: a collapsed encoder maps every image to the same
tokens, which the predictor then copies at zero loss. The latents are layer-normed per token,
so each token's features already have zero mean and unit variance; what can collapse is the
variation of a token position's features from image to image. Both terms therefore centre each
token position over the batch's images first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

REGULARIZERS = ("none", "vc", "sigreg")


@dataclass
class RegularizerSection:
    """Which anti-collapse term and how strong (``jepa-mpc train joint|encoder``).

    ``kind``: ``none``, ``vc`` (variance hinge + covariance, PLDM/VICReg-style) or ``sigreg``
    (Epps-Pulley test of random 1-D projections against N(0, 1), LeJEPA/LeWorldModel).
    ``weight`` scales the whole term in the loss (LeWorldModel's lambda, ~0.1).
    ``std_floor``: the per-dimension std (across images) below which the variance hinge
    pushes; ``covariance_weight`` its covariance part relative to the hinge.
    ``directions`` / ``knots`` / ``t_max``: SIGReg's random projections and quadrature."""

    kind: str = "none"
    weight: float = 0.1
    std_floor: float = 0.3
    covariance_weight: float = 0.04
    directions: int = 256
    knots: int = 17
    t_max: float = 3.0


def centred_by_position(latents: torch.Tensor) -> torch.Tensor:
    """[I, N, D] latents of I images -> [I, N, D] with each (token, feature) mean over the
    images removed (what is left is how images differ)."""
    if latents.ndim != 3 or latents.shape[0] < 2:
        raise ValueError(f"latents must be [images >= 2, N, D], got {tuple(latents.shape)}")
    return latents - latents.mean(dim=0, keepdim=True)


def latent_std(latents: torch.Tensor) -> torch.Tensor:
    """Std across images of every (token, feature) of [I, N, D] latents -> [N, D]."""
    return latents.float().std(dim=0)


def variance_covariance(
    latents: torch.Tensor, std_floor: float, covariance_weight: float
) -> torch.Tensor:
    """VICReg-style term on [I, N, D] latents (scalar).

    Variance: mean over (token, feature) of relu(std_floor - std across images).
    Covariance: squared off-diagonal entries of the feature covariance (samples = images x
    tokens, centred per token position), summed and divided by D, times ``covariance_weight``.
    """
    centred = centred_by_position(latents.float())
    hinge = F.relu(std_floor - torch.sqrt(centred.square().sum(0) / (len(centred) - 1) + 1e-4))
    centred = centred.flatten(0, 1)  # [I*N, D]
    dim = centred.shape[1]
    covariance = centred.T @ centred / (centred.shape[0] - 1)
    off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
    return hinge.mean() + covariance_weight * off_diagonal.square().sum() / dim


def sigreg(
    latents: torch.Tensor,
    directions: int,
    generator: torch.Generator | None = None,
    knots: int = 17,
    t_max: float = 3.0,
) -> torch.Tensor:
    """SIGReg on [I, N, D] latents (scalar, >= 0; 0 for an exact standard Gaussian).

    The samples (images x tokens, centred per token position) are projected on ``directions``
    random unit vectors; for each projection the Epps-Pulley statistic integrates the squared
    distance between its empirical characteristic function and exp(-t^2/2) with the weight
    exp(-t^2/2) over t in [-t_max, t_max] (trapezoid rule on ``knots`` points of [0, t_max],
    doubled by symmetry). The mean over directions is returned; unlike LeJEPA's statistic it
    is not multiplied by the sample count, so its scale does not depend on the batch size.
    """
    samples = centred_by_position(latents.float()).flatten(0, 1)  # [M, D]
    draw = torch.randn(samples.shape[1], directions, generator=generator)
    basis = F.normalize(draw.to(samples.device), dim=0)  # [D, K] unit columns
    projected = samples @ basis  # [M, K]
    t = torch.linspace(0.0, t_max, knots, device=samples.device)
    phase = projected.unsqueeze(-1) * t  # [M, K, T]
    real, imaginary = torch.cos(phase).mean(dim=0), torch.sin(phase).mean(dim=0)  # [K, T]
    gaussian = torch.exp(-0.5 * t.square())
    distance = (real - gaussian).square() + imaginary.square()
    return 2.0 * torch.trapezoid(distance * gaussian, t, dim=-1).mean()


def regularizer(
    latents: torch.Tensor, config: RegularizerSection, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The configured anti-collapse term on [I, N, D] latents, unweighted (0 for ``none``)."""
    if config.kind == "none":
        return latents.new_zeros(())
    if config.kind == "vc":
        return variance_covariance(latents, config.std_floor, config.covariance_weight)
    if config.kind == "sigreg":
        return sigreg(latents, config.directions, generator, config.knots, config.t_max)
    raise ValueError(f"regularizer.kind must be one of {REGULARIZERS}, got {config.kind!r}")
