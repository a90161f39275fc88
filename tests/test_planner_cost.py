"""The cost module's latent distance: L1 (the paper's, default) or L2 (root mean square)."""

from __future__ import annotations

import pytest
import torch

from planner.config import CostConfig
from planner.cost import Cost
from robots.config import ConfigError


def test_l2_distance_is_the_root_mean_square_and_l1_stays_the_default() -> None:
    generator = torch.Generator().manual_seed(0)
    predicted = torch.randn(3, 2, 4, 8, generator=generator)
    goal = torch.randn(1, 4, 8, generator=generator)
    actions, start = torch.zeros(3, 2, 7), torch.zeros(1, 7)
    difference = predicted[:, -1] - goal
    l1 = Cost()(predicted, goal, actions, start)
    l2 = Cost(CostConfig(distance="l2"))(predicted, goal, actions, start)
    torch.testing.assert_close(l1, difference.abs().mean(dim=(-2, -1)))
    torch.testing.assert_close(l2, difference.square().mean(dim=(-2, -1)).sqrt())
    assert CostConfig().distance == "l1"


def test_l2_ranks_one_large_error_worse_than_spread_small_ones() -> None:
    goal = torch.zeros(1, 4, 8)
    spread = torch.full((1, 1, 4, 8), 0.1)
    spike = torch.zeros(1, 1, 4, 8)
    spike[..., 0, 0] = 0.1 * 32
    both = torch.cat((spread, spike))
    actions, start = torch.zeros(2, 1, 7), torch.zeros(1, 7)
    l1 = Cost()(both, goal, actions, start)
    l2 = Cost(CostConfig(distance="l2"))(both, goal, actions, start)
    torch.testing.assert_close(l1[0], l1[1])  # same mean absolute error
    assert l2[1] > 2 * l2[0]


def test_unknown_distance_is_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="cost.distance"):
        CostConfig(distance="cosine")
