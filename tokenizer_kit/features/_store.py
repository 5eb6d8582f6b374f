"""Feature store: ragged per-item token vectors, sharded, memory-mapped on read.

Layout of a store directory (format version 2, ``FEATURE_STORE`` below)::

    manifest.json                  envelope (format, versions, checksums), backend, model,
                                   fields, dim, dtype, shards, n_items, n_tokens, complete
    shard-00000.tokens.npy         [T, d] float16, all items' tokens back to back
    shard-00000.offsets.npy        [n+1] int64, item i owns tokens[offsets[i]:offsets[i+1]]
    shard-00000.segments.npy       [T] int16, index into manifest["segments"] (which field)
    shard-00000.item_ids.json      [n] item ids (strings)
    shard-00000.extra.json         optional: rows covered, per-item error / skip records

Each shard is one append-only commit (``io.update_artifact``): its files are written beside
the others, then the manifest is replaced; a killed run leaves only listed, whole shards
(and unlisted files the next writer deletes). The writer holds the store's writer lock
from open to ``finish``. ``overwrite`` builds the new store in a staging directory and
switches it in at ``finish``: a failed or killed overwrite leaves the old store whole.
Opening checks file sizes (``verify="sha256"`` for full checksums). Stores in format 1
(shard subdirectories with DONE markers) still open, read-only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from dataclasses import dataclass

from ..errors import ArtifactError, InputError
from ..io import (
    ArtifactKind,
    Manifest,
    artifact_path,
    clean_stale,
    commit_directory,
    fsync_tree,
    read_artifact,
    read_manifest,
    update_artifact,
    writer_lock,
)

__all__ = ["FEATURE_STORE", "FeatureStore", "FeatureStoreWriter", "write_feature_store", "shard_parts", "STORE_FORMAT_VERSION"]

logger = logging.getLogger(__name__)


def _required(fv: int, data: dict[str, Any]) -> set[str]:
    if fv < 2:
        return set()
    shards = data.get("shards")
    if not isinstance(shards, list):
        return set()
    return {f"{s}.{part}" for s in shards if isinstance(s, str) for part in _PARTS}


FEATURE_STORE = ArtifactKind(
    name="feature-store",
    # 1: shard subdirectories with DONE markers, no checksums; 2: flat shard files, sealed
    format_version=2,
    sealed_since=2,
    what="feature store",
    fix="extract it again (with `overwrite`)",
    required=_required,
    # token files are large and memory-mapped: opening checks sizes; pass verify="sha256" for a full check
    verify="size",
    owned=lambda name: name.startswith("shard-"),
)
STORE_FORMAT_VERSION = FEATURE_STORE.format_version
MANIFEST = FEATURE_STORE.manifest_name
_PARTS = ("tokens.npy", "offsets.npy", "segments.npy", "item_ids.json")


@dataclass
class _Shard:
    path: Path
    tokens: np.ndarray
    offsets: np.ndarray
    segments: np.ndarray
    item_ids: list[str]
    extra: Path | None = None


def _check_shard(sh: _Shard, dim: int, name: str, path: Path) -> None:
    n = len(sh.item_ids) if isinstance(sh.item_ids, list) else -1
    o = sh.offsets
    ok = (
        n >= 0
        and all(isinstance(i, str) for i in sh.item_ids)
        and sh.tokens.ndim == 2 and sh.tokens.shape[1] == dim
        and o.ndim == 1 and len(o) == n + 1 and o.dtype.kind in "iu"
        and (n == 0 or (int(o[0]) == 0 and bool((np.diff(o) >= 0).all())))
        and int(o[-1]) == sh.tokens.shape[0] == sh.segments.shape[0]
    )
    if not ok:
        raise ArtifactError(
            f"shard {name} of {path} is inconsistent (item ids, offsets, tokens of shape {sh.tokens.shape} and dim {dim} disagree); "
            f"{FEATURE_STORE.fix}"
        )


class FeatureStore:
    """Read-only view of a feature store (memory-mapped)."""

    def __init__(self, path: Path, manifest: dict[str, Any], shards: list[_Shard]):
        self.path = path
        self.manifest = manifest
        self._shards = shards
        self.item_ids: list[str] = [i for s in shards for i in s.item_ids]
        self._starts = np.cumsum([0] + [len(s.item_ids) for s in shards])
        self._index: dict[str, int] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: Any = None) -> "FeatureStore":
        """Open a store for reading (memory-mapped); ``verify``: None (sizes), "sha256", "none"."""
        return read_artifact(path, FEATURE_STORE, lambda m: cls._open(m), verify=verify)

    @classmethod
    def _open(cls, m: Manifest) -> "FeatureStore":
        path = m.path
        manifest = m.data
        if not manifest.get("complete"):
            logger.warning("%s is unfinished (%d complete shards); resume the extraction to add the rest", path, len(manifest.get("shards", [])))
        names = manifest.get("shards", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ArtifactError(f"{path / MANIFEST}: 'shards' must be a list of shard names; {FEATURE_STORE.fix}")
        dim = manifest.get("dim")
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ArtifactError(f"{path / MANIFEST}: 'dim' is {dim!r}, expected a positive integer; {FEATURE_STORE.fix}")
        shards = []
        for name in names:
            if m.format_version < 2:
                sp = path / name
                if not (sp / "DONE").exists():
                    raise ArtifactError(f"{sp} is incomplete (no DONE marker); resume the extraction")
                files = {part: sp / part for part in _PARTS}
                extra = sp / "extra.json"
            else:
                files = {part: m.file(f"{name}.{part}") for part in _PARTS}
                extra = path / f"{name}.extra.json" if f"{name}.extra.json" in m.files else None
            try:
                sh = _Shard(
                    path=path / name,
                    tokens=np.load(files["tokens.npy"], mmap_mode="r", allow_pickle=False),
                    offsets=np.load(files["offsets.npy"], allow_pickle=False),
                    segments=np.load(files["segments.npy"], mmap_mode="r", allow_pickle=False),
                    item_ids=json.loads(files["item_ids.json"].read_text()),
                    extra=extra,
                )
            except (OSError, ValueError) as e:
                raise ArtifactError(f"shard {name} of {path} is corrupt or missing files ({' '.join(str(e).split())[:160]}); {FEATURE_STORE.fix}") from None
            _check_shard(sh, dim, name, path)
            shards.append(sh)
        return cls(path, manifest, shards)

    # ---- sizes --------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def segment_names(self) -> list[str]:
        return list(self.manifest.get("segments", []))

    def lengths(self) -> np.ndarray:
        """Tokens per item, (n,) int64."""
        return np.concatenate([np.diff(s.offsets) for s in self._shards]) if self._shards else np.zeros(0, np.int64)

    # ---- access -------------------------------------------------------------------------
    def index_of(self, item_id: str) -> int:
        if self._index is None:
            self._index = {iid: i for i, iid in enumerate(self.item_ids)}
        try:
            return self._index[str(item_id)]
        except KeyError:
            raise InputError(f"item {item_id!r} is not in the feature store {self.path}") from None

    def _locate(self, i: int) -> tuple[_Shard, int]:
        if i < 0 or i >= len(self):
            raise IndexError(i)
        s = int(np.searchsorted(self._starts, i, side="right") - 1)
        return self._shards[s], i - int(self._starts[s])

    def tokens(self, i: int) -> np.ndarray:
        """Token vectors of item ``i``: (T_i, d) float16 (a memmap slice)."""
        sh, j = self._locate(i)
        return sh.tokens[sh.offsets[j] : sh.offsets[j + 1]]

    def segments(self, i: int) -> np.ndarray:
        """Segment id per token of item ``i``: (T_i,) int16."""
        sh, j = self._locate(i)
        return sh.segments[sh.offsets[j] : sh.offsets[j + 1]]

    def get(self, item_id: str) -> tuple[np.ndarray, np.ndarray]:
        i = self.index_of(item_id)
        return self.tokens(i), self.segments(i)

    def batch(self, indices: Sequence[int], max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Padded batch: tokens (b, T, d) float32, mask (b, T) bool (True = real token),
        segments (b, T) int64 (-1 on padding). ``max_tokens`` truncates long items."""
        toks = [self.tokens(int(i)) for i in indices]
        segs = [self.segments(int(i)) for i in indices]
        if max_tokens is not None:
            toks = [t[:max_tokens] for t in toks]
            segs = [s[:max_tokens] for s in segs]
        b = len(toks)
        t_max = max(1, max((len(t) for t in toks), default=1))
        out = np.zeros((b, t_max, self.dim), dtype=np.float32)
        mask = np.zeros((b, t_max), dtype=bool)
        seg = np.full((b, t_max), -1, dtype=np.int64)
        for r, (t, s) in enumerate(zip(toks, segs)):
            out[r, : len(t)] = t
            mask[r, : len(t)] = True
            seg[r, : len(s)] = s
        return out, mask, seg

    def records(self) -> dict[str, list[dict]]:
        """Per-item records the extractor left in the shards: ``{"errors": [...], "skipped": [...],
        "embedded_empty": [...]}`` (images that failed to load; items without content left out,
        or kept with the empty text's tokens)."""
        out: dict[str, list[dict]] = {"errors": [], "skipped": [], "embedded_empty": []}
        for sh in self._shards:
            extra = _read_extra(sh.extra)
            for k in out:
                out[k].extend(extra.get(k, []))
        return out

    def iter_batches(self, batch_size: int, max_tokens: int | None = None) -> Iterable[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (item_ids, tokens, mask, segments) over the whole store in order."""
        for s in range(0, len(self), batch_size):
            idx = list(range(s, min(s + batch_size, len(self))))
            yield ([self.item_ids[i] for i in idx], *self.batch(idx, max_tokens))


def _read_extra(p: Path | None) -> dict[str, Any]:
    if p is None or not p.exists():
        return {}
    try:
        extra = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{p} cannot be read ({' '.join(str(e).split())[:120]}); {FEATURE_STORE.fix}") from None
    return extra if isinstance(extra, dict) else {}


class FeatureStoreWriter:
    """Writes a store shard by shard, each shard one atomic append (see the module docstring).

    ``config`` (backend, model, fields, ...) is stored in the manifest; re-opening a store
    whose config differs raises, so shards from different configs never mix. Use it as a
    context manager (or call ``finish``/``close``): it holds the store's writer lock, and a
    second writer waits ``lock_timeout`` seconds, then fails.
    """

    def __init__(self, path: str | os.PathLike, *, dim: int, config: dict[str, Any], segments: Sequence[str],
                 overwrite: bool = False, lock_timeout: float | None = None):
        self.target = Path(path)
        self.dim = int(dim)
        self.config = dict(config)
        self.segments_names = list(segments)
        real = artifact_path(path)
        if os.path.lexists(real) and not real.is_dir():
            raise ArtifactError(f"output path {path} exists and is not a directory; remove it or choose another `out`")
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(writer_lock(real, timeout=lock_timeout))
        try:
            clean_stale(real)
            self._staging: Path | None = None
            if overwrite and os.path.lexists(real):
                # the new store grows beside the old one and replaces it at finish()
                self._staging = Path(tempfile.mkdtemp(prefix=f".{real.name}.staging-", dir=real.parent))
                self._stack.callback(shutil.rmtree, self._staging, True)
                self.path = self._staging
            else:
                self.path = real
            if FEATURE_STORE.committed(self.path):
                m = read_manifest(self.path, FEATURE_STORE, verify="size")
                if m.format_version < 2:
                    raise ArtifactError(f"{path} is a feature store in format {m.format_version}, which cannot be resumed; set `overwrite` to replace it")
                if m.get("config") != self.config or m.get("dim") != self.dim:
                    raise ArtifactError(f"{path} holds a store made with another config; set `overwrite` to replace it, or write to another `out`")
                self.manifest = {k: v for k, v in m.data.items() if k in ("dim", "dtype", "segments", "config", "shards", "n_items", "n_tokens", "complete")}
            else:
                self.manifest = {
                    "dim": self.dim,
                    "dtype": "float16",
                    "segments": self.segments_names,
                    "config": self.config,
                    "shards": [],
                    "n_items": 0,
                    "n_tokens": 0,
                }
        except BaseException:
            self._stack.close()
            raise

    @staticmethod
    def preflight(path: str | os.PathLike, config: dict[str, Any], *, overwrite: bool = False) -> None:
        """Raise now, before any model is loaded, what opening a writer at ``path`` would:
        a file in the way, a format-1 store to resume, a store made with another config."""
        real = artifact_path(path)
        if os.path.lexists(real) and not real.is_dir():
            raise ArtifactError(f"output path {path} exists and is not a directory; remove it or choose another `out`")
        if overwrite or not FEATURE_STORE.committed(real):
            return
        m = read_manifest(real, FEATURE_STORE, verify="none")
        if m.format_version < 2:
            raise ArtifactError(f"{path} is a feature store in format {m.format_version}, which cannot be resumed; set `overwrite` to replace it")
        if m.get("config") != dict(config):
            raise ArtifactError(f"{path} holds a store made with another config; set `overwrite` to replace it, or write to another `out`")

    def __enter__(self) -> "FeatureStoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the lock (an unfinished overwrite is discarded; the old store stays)."""
        self._stack.close()

    def _commit(self, fields: dict[str, Any], files: dict[str, Any] | None = None) -> None:
        with update_artifact(self.path, FEATURE_STORE, create=True, verify="none", lock_of=self.target) as u:
            for name, write in (files or {}).items():
                with u.new_file(name) as tmp:
                    if isinstance(write, Path):  # a file another process wrote: moved in (same filesystem)
                        os.replace(write, tmp)
                        continue
                    with open(tmp, "wb") as f:
                        write(f)
            u.fields.clear()
            u.fields.update(fields)

    def shard_extra(self, name: str) -> dict[str, Any]:
        """The ``extra`` record written with shard ``name`` ({} if none)."""
        return _read_extra(self.path / f"{name}.extra.json")

    def write_shard(self, item_ids: Sequence[str], tokens: Sequence[np.ndarray], segments: Sequence[np.ndarray], extra: dict | None = None) -> str:
        """Write one shard of items: ``tokens[i]`` (T_i, d), ``segments[i]`` (T_i,)."""
        if not (len(item_ids) == len(tokens) == len(segments)):
            raise InputError("write_shard: item_ids, tokens and segments must have the same length")
        name = f"shard-{len(self.manifest['shards']):05d}"
        for t, sg in zip(tokens, segments):
            if t.ndim != 2 or t.shape[1] != self.dim:
                raise InputError(f"write_shard: token array of shape {t.shape}, expected (T, {self.dim})")
            if len(sg) != len(t):
                raise InputError("write_shard: segments must have one id per token")
        parts, n_tokens = shard_parts(item_ids, tokens, segments, self.dim, extra)
        files = {f"{name}.{part}": write for part, write in parts.items()}
        new = dict(self.manifest)
        new["shards"] = [*self.manifest["shards"], name]
        new["n_items"] = self.manifest["n_items"] + len(item_ids)
        new["n_tokens"] = self.manifest["n_tokens"] + n_tokens
        self._commit(new, files)
        self.manifest = new
        return name

    def adopt_shard(self, files: dict[str, Path], *, n_items: int, n_tokens: int) -> str:
        """Commit, as the next shard, files another process wrote (``shard_parts``)
        (keys: ``tokens.npy``, ``offsets.npy``, ``segments.npy``, ``item_ids.json``, optional
        ``extra.json``); they are moved in, then committed like ``write_shard``'s."""
        name = f"shard-{len(self.manifest['shards']):05d}"
        new = dict(self.manifest)
        new["shards"] = [*self.manifest["shards"], name]
        new["n_items"] = self.manifest["n_items"] + int(n_items)
        new["n_tokens"] = self.manifest["n_tokens"] + int(n_tokens)
        self._commit(new, {f"{name}.{part}": Path(p) for part, p in files.items()})
        self.manifest = new
        return name

    def finish(self, **info: Any) -> Path:
        """Mark the store complete (and switch an overwrite in); releases the lock."""
        new = {**self.manifest, **info, "complete": True}
        self._commit(new)
        self.manifest = new
        if self._staging is not None:
            fsync_tree(self._staging)
            commit_directory(self._staging, artifact_path(self.target))
            self._staging = None
            self.path = artifact_path(self.target)
        self.close()
        return self.target


def shard_parts(item_ids: Sequence[str], tokens: Sequence[np.ndarray], segments: Sequence[np.ndarray], dim: int,
                extra: dict | None = None) -> tuple[dict[str, Any], int]:
    """The files of one shard as ``{part: write(fileobj)}`` and its token count."""
    lens = [int(len(t)) for t in tokens]
    offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    flat = np.concatenate([np.asarray(t, dtype=np.float16) for t in tokens]) if lens and sum(lens) else np.zeros((0, dim), np.float16)
    seg = np.concatenate([np.asarray(x, dtype=np.int16) for x in segments]) if lens and sum(lens) else np.zeros(0, np.int16)
    parts: dict[str, Any] = {
        "tokens.npy": lambda f: np.save(f, flat),
        "offsets.npy": lambda f: np.save(f, offsets),
        "segments.npy": lambda f: np.save(f, seg),
        "item_ids.json": lambda f: f.write(json.dumps([str(i) for i in item_ids]).encode()),
    }
    if extra:
        parts["extra.json"] = lambda f: f.write(json.dumps(extra).encode())
    return parts, int(offsets[-1])


def write_feature_store(
    path: str | os.PathLike,
    item_ids: Sequence[str],
    tokens: Sequence[np.ndarray],
    segments: Sequence[np.ndarray] | None = None,
    *,
    config: dict[str, Any] | None = None,
    segment_names: Sequence[str] = ("text",),
    shard_size: int = 4096,
    overwrite: bool = True,
) -> FeatureStore:
    """Write a whole store from in-memory arrays (tests, small catalogues)."""
    if not tokens:
        raise InputError("write_feature_store: no items")
    dim = int(tokens[0].shape[1])
    if segments is None:
        segments = [np.zeros(len(t), np.int16) for t in tokens]
    with FeatureStoreWriter(path, dim=dim, config=config or {"backend": "arrays"}, segments=segment_names, overwrite=overwrite) as w:
        for s in range(0, len(item_ids), shard_size):
            w.write_shard(item_ids[s : s + shard_size], tokens[s : s + shard_size], segments[s : s + shard_size])
        w.finish()
    return FeatureStore.open(path)
