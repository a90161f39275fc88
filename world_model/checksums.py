"""sha256 records of checkpoint files and their verification: the ``## Files (sha256)`` section
of a folder's ``MODEL_CARD.md``, a ``SHA256SUMS`` file (``sha256sum`` format, written by
``save``) and a ``<file>.sha256`` sidecar beside an official ``.pt``."""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path, PurePosixPath
from typing import Literal

from world_model.errors import CheckpointError, ChecksumError
from world_model.files import write_text

CARD_FILE = "MODEL_CARD.md"
SUMS_FILE = "SHA256SUMS"
SIDECAR_SUFFIX = ".sha256"
CARD_SECTION = "## Files (sha256)"
Verify = bool | Literal["strict"]

log = logging.getLogger(__name__)
_HEX = r"([0-9a-fA-F]{64})"
_CARD_LINE = re.compile(r"^\s*[-*]\s+`([^`]+)`\s+" + _HEX + r"\s*$")
_SUMS_LINE = re.compile(r"^" + _HEX + r" [ *](.+)$")
_BARE_HASH = re.compile(r"^\s*" + _HEX + r"\s*$")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (the file is never held in memory)."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _safe_name(name: str, record: Path) -> str:
    """A file name from a record, refused when it would leave the checkpoint folder."""
    pure = PurePosixPath(name.strip())
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in name:
        raise CheckpointError(f"{record}: file name {name!r} points outside the checkpoint folder")
    return str(pure)


def read_card(card: Path) -> dict[str, str] | None:
    """``{file: sha256}`` from the card's ``## Files (sha256)`` section (lines like
    ``- `model.safetensors` <64 hex>``); None when the card has no such section."""
    lines = _read_text(card).splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == CARD_SECTION)
    except StopIteration:
        return None
    hashes: dict[str, str] = {}
    for line in lines[start + 1 :]:
        if line.startswith("#"):
            break
        if not line.strip():
            continue
        match = _CARD_LINE.match(line)
        if not match:
            raise CheckpointError(
                f"{card}: cannot read line {line.strip()!r} of '{CARD_SECTION}' "
                f"(expected '- `file` <64 hex digits>')"
            )
        hashes[_safe_name(match.group(1), card)] = match.group(2).lower()
    if not hashes:
        raise CheckpointError(f"{card}: the '{CARD_SECTION}' section lists no files")
    return hashes


def read_sums(sums: Path) -> dict[str, str]:
    """``{file: sha256}`` from a ``sha256sum``-format file (``<hex>  <file>`` per line)."""
    hashes: dict[str, str] = {}
    for line in _read_text(sums).splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = _SUMS_LINE.match(line.strip())
        if not match:
            raise CheckpointError(
                f"{sums}: cannot read line {line.strip()!r} (expected '<64 hex digits>  <file>')"
            )
        hashes[_safe_name(match.group(2), sums)] = match.group(1).lower()
    if not hashes:
        raise CheckpointError(f"{sums}: lists no files")
    return hashes


def read_sidecar(sidecar: Path, target: Path) -> str:
    """The hash in ``<file>.sha256``: a bare hex digest, or one ``sha256sum`` line."""
    text = _read_text(sidecar).strip()
    bare = _BARE_HASH.match(text)
    if bare:
        return bare.group(1).lower()
    line = _SUMS_LINE.match(text)
    if line and "\n" not in text and PurePosixPath(line.group(2).strip()).name == target.name:
        return line.group(1).lower()
    raise CheckpointError(
        f"{sidecar}: expected the sha256 of {target.name} (64 hex digits, or "
        f"'sha256sum {target.name}' output)"
    )


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable checksum record ({error})") from None


def folder_records(folder: Path) -> list[tuple[Path, dict[str, str]]]:
    """Every checksum record of a checkpoint folder: (record file, {file: sha256})."""
    records = []
    card = folder / CARD_FILE
    if card.is_file():
        hashes = read_card(card)
        if hashes is not None:
            records.append((card, hashes))
    sums = folder / SUMS_FILE
    if sums.is_file():
        records.append((sums, read_sums(sums)))
    return records


def check_hashes(folder: Path, record: Path, hashes: dict[str, str]) -> None:
    """Raise ChecksumError naming the first listed file whose sha256 differs (or is missing)."""
    for name, expected in hashes.items():
        path = folder / name
        if not path.is_file():
            raise ChecksumError(f"{path}: listed in {record.name} but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ChecksumError(
                f"{path}: sha256 mismatch with {record.name}: expected {expected}, actual "
                f"{actual}. The file is corrupt or was changed after the record was written; "
                f"re-download or re-convert it (or load with verify=False / --no-verify)"
            )


def verify_folder(folder: Path, needed: tuple[str, ...], verify: Verify = True) -> None:
    """Check a checkpoint folder against its card and ``SHA256SUMS`` before anything is read.

    Args:
        folder: the checkpoint folder.
        needed: files the loader will read; each must be covered by a record that has one.
        verify: True checks the records and only warns when the folder has none; "strict"
            also refuses a folder without a record; False skips the check.
    """
    if not check_verify_arg(verify):
        return
    records = folder_records(folder)
    if not records:
        _no_record(folder, f"no {CARD_FILE} '{CARD_SECTION}' section and no {SUMS_FILE}", verify)
        return
    covered = set().union(*(hashes for _, hashes in records))
    uncovered = [name for name in needed if name not in covered]
    if uncovered:
        raise ChecksumError(
            f"{folder}: {', '.join(uncovered)} not listed in {records[0][0].name}; a checksum "
            f"record must cover every file that is loaded"
        )
    for record, hashes in records:
        check_hashes(folder, record, hashes)


def verify_file(path: Path, verify: Verify = True) -> None:
    """Check a single-file checkpoint against its ``<file>.sha256`` sidecar (see verify_folder
    for ``verify``)."""
    if not check_verify_arg(verify):
        return
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    if not sidecar.is_file():
        _no_record(path, f"no {sidecar.name} sidecar", verify)
        return
    check_hashes(path.parent, sidecar, {path.name: read_sidecar(sidecar, path)})


def check_verify_arg(verify: Verify) -> bool:
    """Whether to verify at all; a value other than True, False or "strict" is an error."""
    if verify is not True and verify is not False and verify != "strict":
        raise ValueError(f"verify must be True, False or 'strict', got {verify!r}")
    return verify is not False


def _no_record(path: Path, what: str, verify: Verify) -> None:
    if verify == "strict":
        raise ChecksumError(f"{path}: {what}; verify='strict' refuses an unrecorded checkpoint")
    log.warning("%s: %s; loading it unverified (record its hashes: docs/security.md)", path, what)


def write_sums(folder: Path, names: list[str]) -> Path:
    """Write ``folder/SHA256SUMS`` for ``names`` (checkable with ``sha256sum -c``)."""
    lines = [f"{sha256_file(folder / name)}  {name}\n" for name in names]
    return write_text(folder / SUMS_FILE, "".join(lines))
