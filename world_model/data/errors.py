"""Errors of the trajectory data: a malformed dataset (``DatasetError``, a ``ValueError``) or a
missing one (``DatasetNotFoundError``, a ``FileNotFoundError``); messages name the file."""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset folder, chunk file or episode that is malformed (the message names it)."""


class DatasetNotFoundError(FileNotFoundError):
    """No dataset (``meta.json``) or a chunk file listed in it is missing."""
