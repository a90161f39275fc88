"""Trajectory collection in MuJoCo into the chunked dataset format."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from jepa_mpc.collect import collect, main
from robots.franka import integrate_pose
from sim.tasks import TRAINING_SEEDS_START
from world_model.data import TrajectoryReader


def test_collect_writes_readable_consistent_episodes(tmp_path: Path) -> None:
    out = tmp_path / "data"
    summary = collect(
        out,
        ["reach", "grasp"],
        episodes=2,
        seed=TRAINING_SEEDS_START + 3,
        workers=1,
        progress=False,
        image_size=32,
        steps=4,
        explore=0.5,
    )
    assert summary["episodes"] == 2
    assert summary["expert"] + summary["random_walk"] == 2
    reader = TrajectoryReader(out)
    assert len(reader) == 2
    tasks = set()
    for index in range(2):
        episode = reader.episode(index)
        tasks.add(episode.task)
        assert episode.frames.shape == (5, 32, 32, 3) and episode.frames.dtype == np.uint8
        assert episode.states.shape == (5, 7)
        # Stored action t takes state t to state t+1 (the layout of robots.franka).
        states = torch.from_numpy(episode.states).double()
        actions = torch.from_numpy(episode.actions).double()
        reached = integrate_pose(states[:-1], actions[:-1])
        torch.testing.assert_close(reached[:, :3], states[1:, :3], atol=1e-5, rtol=0)
        assert not np.array_equal(episode.frames[0], episode.frames[-1])
    assert tasks == {"reach", "grasp"}
    assert reader.meta["info"]["seeds"] == [TRAINING_SEEDS_START + 3, TRAINING_SEEDS_START + 4]


def test_collect_is_seeded(tmp_path: Path) -> None:
    kwargs = dict(
        episodes=1, seed=TRAINING_SEEDS_START + 7, workers=1, progress=False, image_size=32, steps=3
    )
    collect(tmp_path / "a", ["reach"], **kwargs)
    collect(tmp_path / "b", ["reach"], **kwargs)
    first, second = TrajectoryReader(tmp_path / "a"), TrajectoryReader(tmp_path / "b")
    np.testing.assert_array_equal(first.episode(0).states, second.episode(0).states)


def test_bad_arguments_are_refused_and_nothing_is_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "data"
    assert main(["--task", "fly", "--episodes", "1", "--out", str(out)]) == 2
    assert "unknown task 'fly'" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match="at least 1"):
        collect(out, ["reach"], episodes=0)
    assert not out.exists()


def test_collect_refuses_evaluation_seeds(tmp_path: Path, capsys) -> None:
    """Training scenes never overlap the benchmark's: seeds below the training range are
    refused with one line and nothing is written."""
    out = tmp_path / "data"
    assert main(["--task", "reach", "--episodes", "1", "--seed", "7", "--out", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert "evaluation range" in error and "\n" not in error
    assert not out.exists()


def test_the_default_image_size_is_the_bundled_models_input_size() -> None:
    """Data recorded with the defaults trains sim-small without a resize."""
    import json

    from jepa_mpc.collect import DEFAULT_IMAGE_SIZE, CollectSpec
    from world_model.checkpoint import find_checkpoint

    config = json.loads((find_checkpoint("sim-small") / "config.json").read_text())
    assert DEFAULT_IMAGE_SIZE == config["img_size"] == CollectSpec("reach", 0).image_size


def test_training_on_frames_of_another_size_says_so_once(tmp_path: Path) -> None:
    from world_model.errors import ImageResizeWarning
    from world_model.train import note_frame_size

    out = tmp_path / "data"
    collect(out, ["reach"], 1, workers=1, progress=False, image_size=32, steps=2)
    reader = TrajectoryReader(out)
    with pytest.warns(ImageResizeWarning) as caught:
        note_frame_size(reader, 64)
    assert [str(w.message) for w in caught] == [
        "the dataset's frames are 32x32 and the model takes 64x64: every frame is upsampled "
        "(2x) on every step; record at the model's size (jepa-mpc collect --image-size 64)"
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        note_frame_size(reader, 32)  # the model's size: nothing to say
