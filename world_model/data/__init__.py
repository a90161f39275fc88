"""Trajectory data: the on-disk format (``docs/data_format.md``), its writer and reader, a
reader of LeRobot datasets, and a streaming clip dataset for training."""

from world_model.data.format import (
    ACTION_NAMES,
    FORMAT,
    VERSION,
    DatasetError,
    DatasetNotFoundError,
    Episode,
    TrajectoryReader,
    TrajectoryWriter,
    actions_from_states,
    read_meta,
)
from world_model.data.lerobot import LeRobotReader, is_lerobot_dataset, open_reader
from world_model.data.stream import TrajectoryDataset

__all__ = [
    "ACTION_NAMES",
    "FORMAT",
    "VERSION",
    "DatasetError",
    "DatasetNotFoundError",
    "Episode",
    "LeRobotReader",
    "TrajectoryDataset",
    "TrajectoryReader",
    "TrajectoryWriter",
    "actions_from_states",
    "is_lerobot_dataset",
    "open_reader",
    "read_meta",
]
