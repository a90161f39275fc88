"""``world_model.files``, the one way results are written: a reader sees the old file or the new
one, never a part; a failed write leaves the old file and no temp file; results are readable by
others (0o644, not ``mkstemp``'s 0o600); figures are saved in the format their suffix names."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from world_model.files import atomic_write, pyplot, save_figure, write_json, write_text


def test_write_json_creates_the_folder_and_a_shareable_file(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "results.json"
    assert write_json(path, {"success": [1, 0]}) == path
    assert json.loads(path.read_text()) == {"success": [1, 0]}
    assert path.read_text().endswith("\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    path = write_text(tmp_path / "table.md", "old\n")

    def half_then_fail(temp: Path) -> None:
        temp.write_text("half")
        raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        atomic_write(path, half_then_fail)
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]


def test_temp_names_keep_the_suffix_or_the_pattern_a_clean_up_looks_for(tmp_path: Path) -> None:
    seen: list[str] = []
    atomic_write(tmp_path / "episode.gif", lambda temp: seen.append(temp.name) or temp.touch())
    atomic_write(
        tmp_path / "step-00000002.pt",
        lambda temp: seen.append(temp.name) or temp.touch(),
        temp_suffix=".tmp",
        durable=True,
    )
    assert seen[0].startswith(".episode.gif.") and seen[0].endswith(".gif")
    assert seen[1].startswith(".step-00000002.pt.") and seen[1].endswith(".tmp")


def test_save_figure_writes_the_suffixs_format_and_closes_the_figure(tmp_path: Path) -> None:
    plt = pyplot()
    figure, axes = plt.subplots()
    axes.plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "loss.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert not plt.fignum_exists(figure.number)
    figure, _ = plt.subplots()
    assert save_figure(figure, tmp_path / "loss.svg").read_text().lstrip().startswith("<?xml")
