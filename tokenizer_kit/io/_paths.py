"""Checking input and output locations before anything is computed or written.

Every verb checks its outputs first (``check_output_file`` / ``check_output_dir``): a file
path that is a directory, a directory path that is a file, a parent that is a file, an
existing output without ``overwrite``, or a place that cannot be written is one
``InputError`` line, raised before any input is read, any model loaded or any artifact
changed. ``read_text`` / ``read_json`` read small input files (ids, configs, LC-Rec
indexes, catalogues) with the same one-line errors for a missing path, a directory, an
unreadable file, non-UTF-8 bytes, broken JSON and duplicate JSON keys.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["check_output_file", "check_output_dir", "check_input_file", "read_text", "read_json"]


def _nearest_existing(path: Path) -> Path:
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    return p


def _check_writable_place(path: Path, what: str) -> None:
    """The folder that will hold ``path`` exists or can be created, and can be written."""
    anc = _nearest_existing(path.parent)
    if not anc.is_dir():
        raise InputError(f"cannot write {what} {path}: {anc} is a file, not a directory; choose another path")
    try:  # a real probe: permission bits alone miss read-only mounts, /proc and the like
        fd, probe = tempfile.mkstemp(prefix=".tokenizer-kit-probe-", dir=anc)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"cannot write {what} {path}: {anc} is not writable ({e.strerror}); choose another path") from None


def check_output_file(path: str | os.PathLike, what: str = "output file", *, overwrite: bool = True) -> Path:
    """Raise unless a file can be written at ``path`` (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; give the path of a file to write")
    if os.path.lexists(path) and not overwrite:
        raise InputError(f"{what} {path} already exists; set overwrite to replace it, or choose another path")
    _check_writable_place(path, what)
    return path


def check_output_dir(path: str | os.PathLike, what: str = "output directory", *, overwrite: bool = True) -> Path:
    """Raise unless a directory can be written (or replaced, with ``overwrite``) at ``path``."""
    path = Path(path)
    if os.path.lexists(path) and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a directory; remove it or choose another path")
    if os.path.lexists(path) and not overwrite:
        raise InputError(f"{what} {path} already exists; set overwrite to replace it, or choose another path")
    _check_writable_place(path, what)
    return path


def check_input_file(path: str | os.PathLike, what: str = "input file") -> Path:
    """Raise unless ``path`` is an existing file."""
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(f"{what} {path} does not exist; pass an existing file")
    if path.is_dir():
        raise InputError(f"{what} {path} is a directory; pass a file")
    return path


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """The UTF-8 text of ``path``; one-line errors for everything that can go wrong."""
    path = check_input_file(path, what)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"{what} {path} cannot be read ({e.strerror}); check its permissions") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{what} {path} is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); save it as UTF-8") from None


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


class _DuplicateKey(Exception):
    pass


def read_json(path: str | os.PathLike, what: str = "JSON file", *, unique_keys: bool = True) -> Any:
    """Parsed JSON of ``path``; with ``unique_keys`` a key given twice in one object is an
    error (``json`` would silently keep the last one)."""
    text = read_text(path, what)
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates if unique_keys else None)
    except json.JSONDecodeError as e:
        raise InputError(f"{what} {path} is not valid JSON ({e.msg} at line {e.lineno}); fix the file") from None
    except _DuplicateKey as e:
        raise InputError(f"{what} {path} gives the key {e.args[0]!r} twice in one object; keep one") from None
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply to be read; fix the file") from None
