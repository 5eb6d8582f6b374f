"""One manifest for every artifact directory: versions, checksums, atomic commits, one writer.

This module is the mechanism; the artifacts are defined by their owners. Each owner
declares its ``ArtifactKind`` next to the code that writes it (the tokenizer directory in
``tokenizer_kit.build._artifact``, the alignment and its resume checkpoint in
``alignment._artifact``, the feature store in ``features._store``, the companion model in
``companion._model``, shard directories in ``engines._output``, pipeline stage records in
``pipeline._runner``) and writes and reads it through the functions here. A kind fixes the
format version written, the oldest one read and, per format version, the files that must
be present. Its manifest is ``manifest.json`` (``MANIFEST_NAME``); names used by older
versions (``legacy_manifest_names``) are read when it is absent, and the next commit
writes ``manifest.json`` and removes the old one. ``kind.committed(path)`` says whether a
directory holds a committed artifact of the kind.

The manifest (JSON, human-readable) always holds::

    "format": "tokenizer-kit/<kind>"   which artifact this is
    "format_version": 2                refused when newer than this code reads
    "package_version": "0.1.0"         the one package-version key; a newer one warns
    "config": {...}                    the settings the artifact was made with
    "files": {"name": {"sha256": "...", "size": 123}, ...}
    ...                                the kind's own fields
    "manifest_sha256": "..."           sha256 of the canonical JSON of all the above

File names in ``files`` are plain names inside the directory (no ``/``, ``\\``, ``..``, no
leading dot); each must be a regular file (not a symlink). The format version fixes the set
of required files (``ArtifactKind.required``): an emptied ``files`` map is an error, not a
way to switch checksums off. Editing the manifest by hand breaks ``manifest_sha256``;
``seal(data)`` recomputes it (for tests and deliberate repairs).

Writing, two kinds of atomic commit (both under the artifact's writer lock, ``_lock``):

* ``write_artifact(path, kind)``: build or overwrite a whole directory. Yields a writer
  whose ``.dir`` is a staging directory; write the files there and put the kind's fields
  (``config`` ...) in ``.fields``. On success the checksums are computed, the sealed
  manifest is written last and the directory is switched in with one atomic exchange
  (``_atomic.commit_directory``). The old version stays whole until that instant.
* ``update_artifact(path, kind)``: append-only change in place, costing O(new data). New
  files are written beside the live ones under new names (``.new_file(name)``; a file the
  manifest references is immutable), files can be dropped from the manifest
  (``.drop_file``), then the manifest alone is replaced with ``os.replace``. Files no longer
  referenced are deleted by the *next* writer (``collect_garbage``), so a reader that read
  the previous manifest a moment ago still finds them. A kill before the manifest replace
  leaves the old version; after it, the new one.

Reading: ``read_manifest(path, kind)`` checks all of the above and the files' checksums
(``verify``: "sha256" full, "size" cheap, "none" presence only; "read" sizes, then each
file's checksum when its loader reads it whole, ``Manifest.check``). ``read_artifact(path, kind,
load)`` runs ``load(manifest)`` on a consistent snapshot: readers take no lock; if a
writer commits while a reader reads, the reader notices (the directory or manifest changed
identity) and reads again. Directories written by older formats of a kind load when the
kind knows them (``oldest_format``); they are rewritten in the current format on the next
save.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from .._version import __version__
from ..errors import ArtifactError
from ._atomic import artifact_path, _fsync_path, _step, atomic_directory, atomic_write, clean_stale, live_directory, sha256_file
from ._lock import writer_lock

__all__ = [
    "ArtifactKind",
    "ArtifactUpdate",
    "ArtifactWriter",
    "Manifest",
    "MANIFEST_NAME",
    "CARD_NAME",
    "PACKAGE_VERSION_KEY",
    "CHECKSUM_KEY",
    "seal",
    "manifest_checksum",
    "check_file_name",
    "read_manifest",
    "read_artifact",
    "write_artifact",
    "update_artifact",
    "collect_garbage",
    "write_record",
    "read_record",
    "version_tuple",
]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"  # the manifest of every artifact kind but those that must hide it (``ArtifactKind.manifest_name``)
CARD_NAME = "README.md"  # a kind's model card, beside its manifest
PACKAGE_VERSION_KEY = "package_version"
CHECKSUM_KEY = "manifest_sha256"
# spellings of the package version in manifests written before the one key
_LEGACY_VERSION_KEYS = ("package_version", "tokenizer_kit_version", "version")
# "read": sizes at open, and the checksum of each file its loader reads whole (``Manifest.check``)
_VERIFY_LEVELS = ("sha256", "read", "size", "none")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_TMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # atomic_write's temporary files


# ----------------------------------------------------------------------------------- kinds
@dataclass(frozen=True)
class ArtifactKind:
    """What one kind of artifact directory looks like, per format version.

    ``required(format_version, data)`` returns the file names a manifest of that version
    must list (``data`` is the manifest). ``sealed_since``: the first format version with
    the envelope and ``manifest_sha256`` (older ones load without them). ``owned(name)``:
    which unreferenced files an in-place writer may delete (default: every plain file).
    ``keep``: entries of the directory that are not part of the artifact but survive a
    whole-directory rewrite (training logs, resume checkpoints), carried over by hard link.
    ``manifest_name``: ``MANIFEST_NAME`` unless the directory's readers need another (a Parquet
    dataset's manifest starts with ``_`` so that Parquet readers skip it);
    ``legacy_manifest_names``: the names it had before, read when it is absent.
    """

    name: str
    format_version: int
    what: str
    fix: str
    manifest_name: str = MANIFEST_NAME
    # names the manifest had in directories written by older versions, read when ``manifest_name`` is absent
    legacy_manifest_names: tuple[str, ...] = ()
    required: Callable[[int, Mapping[str, Any]], set[str]] = lambda fv, data: set()
    oldest_format: int = 1
    sealed_since: int = 1
    verify: str = "sha256"
    owned: Callable[[str], bool] = lambda name: True
    keep: tuple[str, ...] = ()
    legacy_formats: tuple[str, ...] = ()  # values of "format" written by older versions
    # the files map of a manifest older than ``sealed_since`` that has none: name -> sha256 or None
    legacy_files: Callable[[int, Mapping[str, Any]], dict[str, Any]] | None = None
    # the model card (README.md) rendered from the manifest and the directory's name; written
    # beside the manifest at every commit, not listed in it
    card: Callable[[Mapping[str, Any], str], str] | None = None

    @property
    def format_id(self) -> str:
        return f"tokenizer-kit/{self.name}"

    @property
    def manifest_names(self) -> tuple[str, ...]:
        """Every name this kind's manifest may have: the current one first, then the legacy ones."""
        return (self.manifest_name, *self.legacy_manifest_names)

    def manifest_path(self, path: str | os.PathLike) -> Path:
        """The manifest file of the artifact at ``path``: the one present (the current name
        first, then the legacy ones), else where a new one is written."""
        d = live_directory(Path(path))
        for name in self.manifest_names:
            if (d / name).is_file():
                return d / name
        return d / self.manifest_name

    def committed(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` holds a committed artifact of this kind (its manifest is there; the
        manifest is written last, so a killed writer never leaves one). Checks nothing else:
        ``read_manifest`` does."""
        return self.manifest_path(path).is_file()


# ----------------------------------------------------------------------------------- helpers
def version_tuple(v: Any) -> tuple[int, ...]:
    """``"1.2.3rc1"`` -> (1, 2, 3); anything unparsable compares as 0."""
    out = []
    for part in str(v).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


def manifest_checksum(data: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON (sorted keys, no spaces, ASCII) of ``data`` minus the checksum."""
    body = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def seal(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``data`` with ``manifest_sha256`` (re)computed, as the last key."""
    out = {k: v for k, v in data.items() if k != CHECKSUM_KEY}
    out[CHECKSUM_KEY] = manifest_checksum(out)
    return out


def check_file_name(name: Any, where: str = "manifest") -> str:
    """``name`` if it is a plain file name inside a directory; ``ArtifactError`` otherwise."""
    if not isinstance(name, str) or not name:
        raise ArtifactError(f"{where} lists a file name {name!r} that is not a non-empty string; the manifest is corrupt")
    if "/" in name or "\\" in name or "\x00" in name or name in (".", "..") or name.startswith("."):
        raise ArtifactError(
            f"{where} lists file {name!r}, which is not a plain name inside the directory (no '/', '\\\\', '..' or leading '.'); "
            "the manifest was tampered with or is corrupt"
        )
    return name


def _file_entry(path: Path, hash_it: bool = True) -> dict[str, Any]:
    st = os.stat(path)
    return {"sha256": sha256_file(path) if hash_it else None, "size": int(st.st_size)}


def _files_of(directory: Path, manifest_name: str, skip: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
    """Entries for every plain, visible regular file directly in ``directory`` (but ``skip``)."""
    out = {}
    for p in sorted(directory.iterdir(), key=lambda p: p.name):
        if p.name == manifest_name or p.name.startswith(".") or p.name in skip:
            continue
        if p.is_file() and not p.is_symlink():
            out[check_file_name(p.name, f"{directory}")] = _file_entry(p)
    return out


def _a(what: str) -> str:
    return ("an " if what[:1] in "aeiou" else "a ") + what


def _dump(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, sort_keys=False, allow_nan=True) + "\n").encode()


def _identity(directory: Path, kind: ArtifactKind) -> tuple:
    try:
        d = os.stat(directory)
        m = os.stat(kind.manifest_path(directory))
        return (d.st_ino, d.st_dev, m.st_ino, m.st_mtime_ns, m.st_size)
    except OSError:
        return ()


# ----------------------------------------------------------------------------------- reading
@dataclass
class Manifest:
    """A checked manifest: ``data`` (the JSON), ``files`` (name -> {"sha256", "size"}), where
    it lives (``path``: the directory) and what it is (``kind``, ``format_version``)."""

    path: Path
    kind: ArtifactKind
    data: dict[str, Any]
    files: dict[str, dict[str, Any]]
    format_version: int
    package_version: str | None
    level: str = "sha256"  # how the files were checked at open
    _checked: set[str] = field(default_factory=set, repr=False)  # files whose checksum was verified since

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def config(self) -> Any:
        return self.data.get("config")

    def file(self, name: str) -> Path:
        """The path of a file the manifest lists (a plain name inside the directory)."""
        if name not in self.files:
            raise ArtifactError(f"{self.kind.manifest_path(self.path)} does not list {name}; the {self.kind.what} is incomplete, {self.kind.fix}")
        return self.path / name

    def verify(self, level: str | None = None) -> None:
        """Check each listed file: present, a regular file, its size and (``sha256``) its checksum.

        ``read``: as ``size`` now; the loader then calls ``check(name)`` for each file it
        reads whole, so a load costs what it reads, not the size of the directory."""
        level = _level(self.kind, level)
        for name, entry in self.files.items():
            _verify_file(self.path / name, entry, "size" if level == "read" else level, self.kind)
        self.level = level
        if level == "sha256":
            self._checked = set(self.files)

    def check(self, name: str) -> Path:
        """The path of listed file ``name``, its checksum verified first (once) when the
        manifest was read with ``verify="read"``: for a file the caller reads whole. Files read
        in part (memory-mapped) are left to their size check, or to ``verify="sha256"``."""
        path = self.file(name)
        if self.level == "read" and name not in self._checked:
            _verify_file(path, self.files[name], "sha256", self.kind)
            self._checked.add(name)
        return path


def _level(kind: ArtifactKind, verify: Any) -> str:
    if verify is None or verify is True:
        return kind.verify if verify is None else "sha256"
    if verify is False:
        return "none"
    if verify not in _VERIFY_LEVELS:
        raise ValueError(f"verify must be one of {_VERIFY_LEVELS}, True or False, got {verify!r}")
    return verify


def _verify_file(fp: Path, entry: Mapping[str, Any], level: str, kind: ArtifactKind) -> None:
    try:
        st = os.lstat(fp)
    except FileNotFoundError:
        raise ArtifactError(f"{fp} is missing; the {kind.what} is incomplete, {kind.fix}") from None
    except OSError as e:
        raise ArtifactError(f"{fp} cannot be read ({e.strerror}); {kind.fix}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ArtifactError(f"{fp} is not a regular file (a symlink or a directory); an artifact holds its own files, {kind.fix}")
    if level == "none":
        return
    size = entry.get("size")
    if size is not None and st.st_size != size:
        raise ArtifactError(f"{fp} has {st.st_size} bytes, its manifest says {size}; the file is truncated or was changed, {kind.fix}")
    if level == "sha256" and entry.get("sha256"):
        try:
            got = sha256_file(fp)
        except OSError as e:
            raise ArtifactError(f"{fp} cannot be read ({e.strerror}); {kind.fix}") from None
        if got != entry["sha256"]:
            raise ArtifactError(
                f"{fp} fails its checksum (sha256 {got[:12]}..., manifest says {entry['sha256'][:12]}...); "
                f"the file is corrupt or was changed, {kind.fix}"
            )


def _load_json(mpath: Path, kind: ArtifactKind) -> dict[str, Any]:
    try:
        raw = mpath.read_bytes()
    except IsADirectoryError:
        raise ArtifactError(f"{mpath} is a directory, not a manifest file; {kind.fix}") from None
    except OSError as e:
        raise ArtifactError(f"cannot read {mpath} ({e.strerror}); check its permissions") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ArtifactError(f"{mpath} is corrupt (not UTF-8 text); {kind.fix}") from None
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{mpath} is corrupt ({e.msg} at line {e.lineno}); {kind.fix}") from None
    except RecursionError:
        raise ArtifactError(f"{mpath} is corrupt (nested too deeply); {kind.fix}") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{mpath} is corrupt (a JSON {type(data).__name__}, expected an object); {kind.fix}")
    return data


def check_manifest(data: dict[str, Any], kind: ArtifactKind, where: str) -> tuple[int, dict[str, dict[str, Any]], str | None]:
    """Check a manifest's envelope; returns (format version, files, package version).

    ``where`` names the manifest in messages. Raises ``ArtifactError`` for a missing or newer
    format, a foreign kind, a broken seal, bad file names or entries, or missing required files.
    """
    fv = data.get("format_version")
    if not isinstance(fv, int) or isinstance(fv, bool) or fv < 1:
        raise ArtifactError(f"{where} is not a tokenizer-kit {kind.what} manifest (format_version {fv!r}); {kind.fix}")
    fmt = data.get("format")
    if fmt is not None and fmt != kind.format_id and fmt not in kind.legacy_formats:
        other = str(fmt).removeprefix("tokenizer-kit/")
        raise ArtifactError(f"{where} describes {_a(other)} artifact, not {_a(kind.what)}; pass the right directory")
    if fv > kind.format_version:
        raise ArtifactError(
            f"{where} was written in {kind.name} format {fv}, newer than this tokenizer-kit {__version__} reads "
            f"({kind.format_version}); upgrade tokenizer-kit"
        )
    if fv < kind.oldest_format:
        raise ArtifactError(f"{where} is in {kind.name} format {fv}, older than this tokenizer-kit reads ({kind.oldest_format}); {kind.fix}")
    if fv >= kind.sealed_since:
        if fmt != kind.format_id:
            raise ArtifactError(f"{where} has format {fmt!r}, expected {kind.format_id!r}; {kind.fix}")
        want = data.get(CHECKSUM_KEY)
        if not isinstance(want, str):
            raise ArtifactError(f"{where} has no {CHECKSUM_KEY}; the manifest is incomplete or was edited, {kind.fix}")
        if manifest_checksum(data) != want:
            raise ArtifactError(f"{where} fails its own checksum ({CHECKSUM_KEY}); the manifest was edited or is corrupt, {kind.fix}")
    pv = None
    for key in _LEGACY_VERSION_KEYS if fv < kind.sealed_since else (PACKAGE_VERSION_KEY,):
        if key in data:
            pv = data[key]
            break
    if pv is not None and not isinstance(pv, str):
        raise ArtifactError(f"{where}: {PACKAGE_VERSION_KEY} is {pv!r}, expected a version string; {kind.fix}")
    files_raw = data.get("files")
    if files_raw is None and fv < kind.sealed_since:
        files_raw = kind.legacy_files(fv, data) if kind.legacy_files is not None else {}
    if not isinstance(files_raw, dict):
        raise ArtifactError(f"{where} has no files map (got {type(files_raw).__name__}); the manifest is corrupt, {kind.fix}")
    files: dict[str, dict[str, Any]] = {}
    for name, entry in files_raw.items():
        check_file_name(name, where)
        if name in kind.manifest_names:
            raise ArtifactError(f"{where} lists itself as a file; the manifest is corrupt, {kind.fix}")
        if (entry is None or isinstance(entry, str)) and fv < kind.sealed_since:
            entry = {"sha256": entry, "size": None}
        sha = entry.get("sha256") if isinstance(entry, dict) else None
        size = entry.get("size") if isinstance(entry, dict) else None
        ok = isinstance(entry, dict) and (sha is None and fv < kind.sealed_since or isinstance(sha, str) and _SHA_RE.match(sha))
        ok = ok and (size is None and fv < kind.sealed_since or isinstance(size, int) and not isinstance(size, bool) and size >= 0)
        if not ok:
            raise ArtifactError(f"{where}: the entry of {name} is {entry!r}, expected {{'sha256': 64 hex digits, 'size': bytes}}; {kind.fix}")
        files[name] = {"sha256": sha, "size": size}
    missing = sorted(kind.required(fv, data) - set(files))
    if missing:
        raise ArtifactError(
            f"{where} does not list {', '.join(missing)}, which a {kind.name} of format {fv} must have "
            f"(its files map was emptied or cut); {kind.fix}"
        )
    return fv, files, pv


def read_manifest(path: str | os.PathLike, kind: ArtifactKind, *, verify: Any = None) -> Manifest:
    """Read and check the manifest of the ``kind`` artifact at ``path``, then its files.

    ``verify``: None (the kind's default), "sha256" or True (every file's checksum),
    "size" (sizes only), "read" (sizes; the checksum of each file the loader reads whole,
    when it asks, ``Manifest.check``), "none" or False (presence only). Every problem is one
    ``ArtifactError`` line saying what is wrong and how to fix it.
    """
    shown = Path(path)
    p = live_directory(shown)
    if not p.exists():
        raise ArtifactError(f"{kind.what} {shown} does not exist; {kind.fix}")
    if not p.is_dir():
        raise ArtifactError(f"{shown} is not {_a(kind.what)} (expected a directory with {kind.manifest_name})")
    mpath = kind.manifest_path(p)
    if not mpath.exists():
        raise ArtifactError(f"{shown} has no {kind.manifest_name}, so it is not {_a(kind.what)} or an incomplete one; {kind.fix}")
    data = _load_json(mpath, kind)
    fv, files, pv = check_manifest(data, kind, str(mpath))
    if pv is not None and version_tuple(pv) > version_tuple(__version__):
        logger.warning("%s was written by tokenizer-kit %s, newer than this %s; upgrade if anything looks wrong", shown, pv, __version__)
    m = Manifest(path=p, kind=kind, data=data, files=files, format_version=fv, package_version=pv)
    m.verify(verify)
    return m


def read_artifact(path: str | os.PathLike, kind: ArtifactKind, load: Callable[[Manifest], Any], *, verify: Any = None, retries: int = 10) -> Any:
    """``load(manifest)`` on a consistent snapshot of the artifact at ``path``.

    Readers take no lock. If a writer commits while ``load`` runs (the directory or the
    manifest changed identity), the result is dropped and the artifact read again, up to
    ``retries`` times; errors raised while it changed count as such a race. ``load`` reads
    files through ``manifest.file(name)`` (or ``manifest.path``).
    """
    shown = Path(path)
    last: Exception | None = None
    for attempt in range(retries + 1):
        d = live_directory(shown)
        before = _identity(d, kind)
        try:
            m = read_manifest(shown, kind, verify=verify)
            result = load(m)
        except (ArtifactError, OSError) as e:
            if before and _identity(live_directory(shown), kind) != before:
                last = e
                time.sleep(0.01 * (attempt + 1))
                continue
            raise
        if _identity(live_directory(shown), kind) == before:
            return result
        time.sleep(0.01 * (attempt + 1))
    raise ArtifactError(f"{shown} kept changing while being read ({retries + 1} tries; last error: {last}); retry when its writer has finished")


# ----------------------------------------------------------------------------------- writing
def _envelope(kind: ArtifactKind, fields: Mapping[str, Any], files: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {
        "format": kind.format_id,
        "format_version": kind.format_version,
        "package": "tokenizer-kit",
        PACKAGE_VERSION_KEY: __version__,
    }
    for k, v in fields.items():
        if k in data or k in ("files", CHECKSUM_KEY):
            raise ValueError(f"manifest field {k!r} is set by the manifest module")
        data[k] = v
    data.setdefault("config", {})
    data["files"] = dict(files)
    return seal(data)


def _card_names(kind: ArtifactKind) -> tuple[str, ...]:
    return (CARD_NAME,) if kind.card is not None else ()


def _write_card(directory: Path, kind: ArtifactKind, data: Mapping[str, Any], name: str, *, staged: bool = False) -> None:
    """The model card beside the manifest, for kinds that have one: written directly into a
    ``staged`` directory (not visible yet), atomically into a live one."""
    if kind.card is None:
        return
    text = kind.card(data, name or directory.name)
    if staged:
        (directory / CARD_NAME).write_text(text, encoding="utf-8")
        return
    with atomic_write(directory / CARD_NAME) as tmp:
        tmp.write_text(text, encoding="utf-8")


@dataclass
class ArtifactWriter:
    """Yielded by ``write_artifact``: write files into ``dir``, put manifest fields in ``fields``."""

    dir: Path
    kind: ArtifactKind
    fields: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] | None = None  # the sealed manifest, after the commit


@contextlib.contextmanager
def write_artifact(
    path: str | os.PathLike,
    kind: ArtifactKind,
    *,
    overwrite: bool = False,
    lock_timeout: float | None = None,
) -> Iterator[ArtifactWriter]:
    """Write a whole ``kind`` artifact directory at ``path``, committed atomically.

    >>> with write_artifact(out, TOKENIZER, overwrite=True) as w:
    ...     save_file(tensors, str(w.dir / "quantizer.safetensors"))
    ...     w.fields.update(config=cfg, method="rq-kmeans")

    Every visible regular file in ``w.dir`` becomes part of the artifact (checksummed); the
    manifest is written last; the required files of ``kind`` must be there. The directory is
    switched in with one atomic step under the writer lock (a second writer waits up to
    ``lock_timeout`` seconds); entries named in ``kind.keep`` are carried over from the old
    version. On any exception nothing at ``path`` changes.
    """
    with atomic_directory(path, overwrite=overwrite, lock_timeout=lock_timeout, keep=kind.keep) as staging:
        w = ArtifactWriter(dir=staging, kind=kind)
        yield w
        for p in staging.iterdir():
            if p.name != kind.manifest_name and not p.name.startswith(".") and (p.is_symlink() or not p.is_file()):
                raise ArtifactError(f"{kind.what} writer left {p.name}, which is not a regular file; artifacts are flat directories of files")
        files = _files_of(staging, kind.manifest_name, _card_names(kind))
        data = _envelope(kind, w.fields, files)
        check_manifest(data, kind, f"the new {kind.manifest_name}")  # a writer bug, caught before the commit
        with atomic_write(staging / kind.manifest_name) as tmp:
            tmp.write_bytes(_dump(data))
        _write_card(staging, kind, data, Path(path).name, staged=True)
        w.manifest = data


@dataclass
class ArtifactUpdate:
    """Yielded by ``update_artifact``: the live directory, the current manifest's fields to
    change, new immutable files to add and files to drop from the manifest."""

    dir: Path
    kind: ArtifactKind
    fields: dict[str, Any]
    files: dict[str, dict[str, Any]]
    previous: Manifest | None
    _new: dict[str, Path] = field(default_factory=dict)
    _dropped: set[str] = field(default_factory=set)
    manifest: dict[str, Any] | None = None

    @contextlib.contextmanager
    def new_file(self, name: str) -> Iterator[Path]:
        """Yield a temporary path; on success it becomes the new file ``name`` (atomically).

        ``name`` must be a plain name not referenced by the current manifest: referenced
        files are immutable (readers of the current version may be reading them).
        """
        check_file_name(name, f"new file of {self.dir}")
        if name in self.kind.manifest_names:
            raise ValueError("the manifest is written by the commit, not as a new file")
        if name in self.files or name in self._new:
            raise ArtifactError(f"{self.dir / name} already belongs to the {self.kind.what}; files are immutable, write a new name")
        with atomic_write(self.dir / name) as tmp:
            yield tmp
        self._new[name] = self.dir / name

    def drop_file(self, name: str) -> None:
        """Leave ``name`` out of the next manifest; the next writer deletes it."""
        if name in self._new:
            raise ValueError(f"{name} was added in this update")
        self.files.pop(name, None)
        self._dropped.add(name)


def collect_garbage(directory: str | os.PathLike, kind: ArtifactKind, referenced: Sequence[str]) -> list[str]:
    """Delete files in ``directory`` no manifest references: temporary files of killed writers,
    and files ``kind.owned`` claims that ``referenced`` does not list. Call with the lock held."""
    d = Path(directory)
    keep = set(referenced) | {*kind.manifest_names, *_card_names(kind)}
    removed = []
    for p in list(d.iterdir()):
        if p.name in keep or p.name in kind.keep:
            continue
        stale_tmp = _TMP_RE.match(p.name) is not None
        if stale_tmp or (not p.name.startswith(".") and kind.owned(p.name)):
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    _step("remove-unreferenced", os.unlink, p)
            removed.append(p.name)
    if removed:
        logger.info("removed %d unreferenced files from %s", len(removed), d)
    return removed


@contextlib.contextmanager
def update_artifact(
    path: str | os.PathLike,
    kind: ArtifactKind,
    *,
    create: bool = False,
    lock_timeout: float | None = None,
    verify: Any = "size",
    lock_of: str | os.PathLike | None = None,
) -> Iterator[ArtifactUpdate]:
    """Change the ``kind`` artifact at ``path`` in place, append-only, at the cost of the new data.

    >>> with update_artifact(tok_dir, TOKENIZER) as u:
    ...     with u.new_file("segment-00002.parquet") as tmp:
    ...         pq.write_table(table, tmp)
    ...     u.fields["sections"]["index"]["segments"].append("segment-00002.parquet")

    Holds the writer lock for the whole block (read-modify-write is safe); first deletes
    what earlier writers left unreferenced. The manifest is replaced with ``os.replace`` when
    the block succeeds; on an exception the new files are left unreferenced (and deleted by
    the next writer) and the artifact is unchanged. ``create``: start an empty artifact
    (``fields`` = {}) when ``path`` has no manifest yet. ``lock_of``: take that artifact's
    lock instead (a staging copy of it being filled by a writer that already holds it).
    """
    shown = Path(path)
    d = artifact_path(path)
    with writer_lock(artifact_path(lock_of) if lock_of is not None else d, timeout=lock_timeout):
        clean_stale(d)
        if not kind.committed(d) and create:
            if os.path.lexists(d) and not d.is_dir():
                raise ArtifactError(f"output path {shown} exists and is not a directory; remove it or choose another path")
            d.mkdir(parents=True, exist_ok=True)
            prev = None
            fields: dict[str, Any] = {}
            files: dict[str, dict[str, Any]] = {}
        else:
            prev = read_manifest(d, kind, verify=verify)
            fields = {k: copy.deepcopy(v) for k, v in prev.data.items() if k not in ("format", "format_version", "package", "files", CHECKSUM_KEY, *_LEGACY_VERSION_KEYS)}
            files = {k: dict(v) for k, v in prev.files.items()}
            collect_garbage(d, kind, list(files))
        u = ArtifactUpdate(dir=d, kind=kind, fields=fields, files=files, previous=prev)
        committed = False
        try:
            yield u
            for name, p in u._new.items():
                u.files[name] = _file_entry(p)
            for name, entry in list(u.files.items()):
                if entry.get("sha256") is None:  # an entry without a checksum (from legacy_files): checksum it now
                    u.files[name] = _file_entry(d / name)
                elif entry.get("size") is None:  # a format-1 entry (sha256 only): its size, the checksum kept
                    u.files[name] = {"sha256": entry["sha256"], "size": int(os.stat(d / name).st_size)}
            data = _envelope(kind, u.fields, u.files)
            check_manifest(data, kind, f"the new {kind.manifest_name}")
            with atomic_write(d / kind.manifest_name) as tmp:
                tmp.write_bytes(_dump(data))
            committed = True
            for old in kind.legacy_manifest_names:  # the new manifest is read first; the legacy one is stale now
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(d / old)
            _fsync_path(d)
            u.manifest = data
            _write_card(d, kind, data, shown.name)
        except BaseException:
            if not committed:  # the new files were never referenced: take them back now
                for p in u._new.values():
                    with contextlib.suppress(OSError):
                        p.unlink()
            raise


# ----------------------------------------------------------------------------------- records
def write_record(path: str | os.PathLike, kind: ArtifactKind, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Write a one-file manifest (a pipeline stage record) atomically: the envelope (format,
    versions, ``config``) plus ``fields``, sealed; ``files`` is empty. Returns what was written."""
    data = _envelope(kind, fields, {})
    with atomic_write(path) as tmp:
        tmp.write_bytes(_dump(data))
    return data


def read_record(path: str | os.PathLike, kind: ArtifactKind) -> dict[str, Any]:
    """Read and check a one-file manifest written by ``write_record``; ``ArtifactError`` if
    it is missing, corrupt, edited (seal), of another kind or of a newer format."""
    p = Path(path)
    if not p.is_file():
        raise ArtifactError(f"{kind.what} {p} does not exist or is not a file")
    data = _load_json(p, kind)
    check_manifest(data, kind, str(p))
    return data
