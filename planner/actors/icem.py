"""iCEM (Pinneri et al., 2020): CEM with colored noise over time, a population that shrinks
every iteration, elites carried across iterations and control steps, and a shifted warm start."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from planner.actors.base import (
    ActionSpace,
    ActorResult,
    Problem,
    elite_moments,
    keep_best,
    pick_final,
    refit,
    shift,
)
from planner.config import ActorConfig


def colored_noise(
    samples: int,
    horizon: int,
    beta: float,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Unit-variance Gaussian noise [S, H, 7] whose power spectrum over time is 1 / f^beta.

    beta = 0 is white noise; beta = 2 (brown) gives smooth, correlated steps. With one step
    there is no time axis to colour and the noise is white.
    """
    shape = (samples, 7)
    if horizon == 1 or beta == 0:
        return torch.randn((samples, horizon, 7), generator=generator, device=device)
    freqs = torch.fft.rfftfreq(horizon, device=device).clamp_min(1.0 / horizon)
    amplitude = freqs ** (-beta / 2.0)  # [F]
    real = torch.randn((*shape, len(freqs)), generator=generator, device=device) * amplitude
    imag = torch.randn((*shape, len(freqs)), generator=generator, device=device) * amplitude
    # The DC term (and the Nyquist term for even H) of a real signal has no imaginary part.
    imag[..., 0] = 0.0
    real[..., 0] *= math.sqrt(2.0)
    if horizon % 2 == 0:
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    signal = torch.fft.irfft(torch.complex(real, imag), n=horizon)  # [S, 7, H]
    # Exact per-step variance of that inverse transform: sum_k weight_k * amplitude_k^2 / H^2,
    # weight 2 for the DC (and Nyquist) terms, 4 for the others.
    weight = torch.full_like(amplitude, 4.0)
    weight[0] = 2.0
    if horizon % 2 == 0:
        weight[-1] = 2.0
    signal = signal * horizon / (weight * amplitude**2).sum().sqrt()
    return signal.transpose(1, 2).contiguous()


def population_sizes(config: ActorConfig) -> list[int]:
    """New samples drawn at each iteration: samples * decay^-i, at least 2 * elites."""
    return [
        max(int(config.samples * config.population_decay**-i), 2 * config.elites)
        for i in range(config.iterations)
    ]


@dataclass
class Search:
    """iCEM's state inside one plan.

    Attributes:
        mean, std: [H, 7] the sampling distribution.
        carried, carried_energy: [kept, H, 7] elites carried to the next iteration, [kept].
        best_actions, best_energy: [H, 7] the best sequence scored so far, [] its energy.
        elites: [K, H, 7] the last iteration's elites.
    """

    mean: torch.Tensor
    std: torch.Tensor
    carried: torch.Tensor
    carried_energy: torch.Tensor
    best_actions: torch.Tensor
    best_energy: torch.Tensor
    elites: torch.Tensor

    @classmethod
    def start(
        cls, mean: torch.Tensor, std: torch.Tensor, carried: torch.Tensor, energy: torch.Tensor
    ) -> Search:
        """A search around ``mean``/``std`` that already holds the scored ``carried`` [k, H, 7]
        with energies ``energy`` [k] (k may be 0)."""
        best_actions, best_energy = mean, torch.tensor(float("inf"), device=mean.device)
        if len(carried):
            best_actions, best_energy = keep_best(best_actions, best_energy, carried, energy)
        return cls(mean, std, carried, energy, best_actions, best_energy, mean.unsqueeze(0))


def iterate(
    problem: Problem,
    space: ActionSpace,
    config: ActorConfig,
    sizes: list[int],
    search: Search,
    generator: torch.Generator,
) -> Search:
    """iCEM iterations: one per entry of ``sizes`` (new samples drawn), from ``search``.

    Each samples coloured noise around the mean, scores it (the mean joins the last
    population), ranks it together with the carried elites, keeps the top ``config.elites``
    (the first ``keep_elites`` of them carried on) and refits mean and std (``refit``).
    """
    cfg, device = config, search.mean.device
    kept = round(cfg.keep_elites * cfg.elites)
    mean, std, carried, carried_energy = (
        search.mean,
        search.std,
        search.carried,
        search.carried_energy,
    )
    best_actions, best_energy, elites = search.best_actions, search.best_energy, search.elites
    for iteration, size in enumerate(sizes):
        noise = colored_noise(size, cfg.horizon, cfg.noise_beta, generator, device)
        actions = space.project(mean + std * noise)
        if iteration == len(sizes) - 1:
            actions = torch.cat((actions, space.project(mean).unsqueeze(0)))
        energy = problem.evaluate(actions)
        actions = torch.cat((actions, carried))
        energy = torch.cat((energy, carried_energy))
        order = torch.topk(energy, min(cfg.elites, len(energy)), largest=False).indices
        elites, elite_energy = actions[order], energy[order]  # [K, H, 7], [K]
        carried, carried_energy = elites[:kept], elite_energy[:kept]
        fitted_mean, fitted_std = elite_moments(elites, cfg.unbiased_std)
        mean, std = refit(space, mean, std, fitted_mean, fitted_std, cfg)
        best_actions, best_energy = keep_best(best_actions, best_energy, actions, energy)
    return Search(mean, std, carried, carried_energy, best_actions, best_energy, elites)


class ICEM:
    """iCEM over [H, 7] action sequences.

    Reads: horizon, samples, iterations, elites, momentum, init_std_*, min_std, unbiased_std,
    final, warm_start, noise_beta, population_decay, keep_elites. Population sizes follow
    ``population_sizes`` (fixed by the config, so shapes are known in advance). The kept elites
    keep their energies inside one plan (the model is deterministic); across control steps
    they are shifted and scored again. The mean joins the last iteration's population.
    """

    def __init__(self, config: ActorConfig, space: ActionSpace) -> None:
        self.config = config
        self.space = space
        self.sizes = population_sizes(config)
        self._prev_mean: torch.Tensor | None = None  # [H, 7]
        self._prev_elites: torch.Tensor | None = None  # [kept, H, 7]

    def reset(self) -> None:
        """Forget the previous plan and elites (new episode)."""
        self._prev_mean, self._prev_elites = None, None

    @torch.no_grad()
    def plan(self, problem: Problem, generator: torch.Generator) -> ActorResult:
        """Search the action sequence of lowest energy (see class docstring)."""
        cfg, space = self.config, self.space
        device = problem.latent.device
        warm = cfg.warm_start and self._prev_mean is not None
        mean = shift(self._prev_mean) if warm else torch.zeros(cfg.horizon, 7, device=device)
        std = space.initial_std(cfg).expand(cfg.horizon, 7)
        carried = mean.new_zeros(0, cfg.horizon, 7)  # [kept, H, 7] elites carried over
        if warm and self._prev_elites is not None:
            carried = shift(self._prev_elites)
        carried_energy = problem.evaluate(carried) if len(carried) else mean.new_zeros(0)
        search = Search(
            mean,
            std,
            carried,
            carried_energy,
            mean,
            torch.tensor(float("inf"), device=device),
            mean.unsqueeze(0),
        )
        search = iterate(problem, space, cfg, self.sizes, search, generator)
        actions, energy = pick_final(cfg.final, search.mean, search.best_actions, problem, space)
        self._prev_mean, self._prev_elites = actions, search.carried
        return ActorResult(actions=actions, energy=energy, elites=search.elites)
