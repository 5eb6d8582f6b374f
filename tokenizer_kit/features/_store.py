"""Feature store: ragged per-item token vectors, sharded, memory-mapped on read.

Layout of a store directory::

    manifest.json                  format version, backend, model, fields, dim, dtype, shards, ...
    shard-00000/tokens.npy         [T, d] float16, all items' tokens back to back
    shard-00000/offsets.npy        [n+1] int64, item i owns tokens[offsets[i]:offsets[i+1]]
    shard-00000/segments.npy       [T] int16, index into manifest["segments"] (which field)
    shard-00000/item_ids.json      [n] item ids (strings)
    shard-00000/extra.json         optional: rows covered, per-item error / skip records
    shard-00000/DONE               written last: a shard without it is incomplete

Shards are written to a staging directory and renamed into place, so a killed run leaves
only whole shards; the manifest lists the complete ones.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ArtifactError, InputError
from ..io import atomic_write_json

__all__ = ["FeatureStore", "FeatureStoreWriter", "write_feature_store", "STORE_FORMAT_VERSION"]

logger = logging.getLogger(__name__)

STORE_FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class _Shard:
    path: Path
    tokens: np.ndarray
    offsets: np.ndarray
    segments: np.ndarray
    item_ids: list[str]


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
    def open(cls, path: str | os.PathLike) -> "FeatureStore":
        path = Path(path)
        mpath = path / MANIFEST
        if not mpath.exists():
            raise ArtifactError(f"{path} is not a feature store (no {MANIFEST}); run `tokenizer-kit extract` first")
        try:
            manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as e:
            raise ArtifactError(f"{mpath} is corrupt ({e.msg}); re-run extraction") from None
        fv = int(manifest.get("format_version", 0))
        if fv > STORE_FORMAT_VERSION:
            raise ArtifactError(
                f"{path}: feature store format {fv} is newer than this tokenizer-kit reads "
                f"({STORE_FORMAT_VERSION}); upgrade tokenizer-kit"
            )
        if not manifest.get("complete"):
            logger.warning("%s is unfinished (%d complete shards); resume the extraction to add the rest", path, len(manifest.get("shards", [])))
        shards = []
        for name in manifest.get("shards", []):
            sp = path / name
            if not (sp / "DONE").exists():
                raise ArtifactError(f"{sp} is incomplete (no DONE marker); resume the extraction")
            try:
                shards.append(
                    _Shard(
                        path=sp,
                        tokens=np.load(sp / "tokens.npy", mmap_mode="r"),
                        offsets=np.load(sp / "offsets.npy"),
                        segments=np.load(sp / "segments.npy", mmap_mode="r"),
                        item_ids=json.loads((sp / "item_ids.json").read_text()),
                    )
                )
            except (OSError, ValueError) as e:
                raise ArtifactError(f"{sp} is corrupt or missing files ({e}); delete it and resume the extraction") from None
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
        """Per-item records the extractor left in the shards: ``{"errors": [...], "skipped": [...]}``
        (images that failed to load; items left out for having no content)."""
        out: dict[str, list[dict]] = {"errors": [], "skipped": []}
        for sh in self._shards:
            p = sh.path / "extra.json"
            if p.exists():
                extra = json.loads(p.read_text())
                for k in out:
                    out[k].extend(extra.get(k, []))
        return out

    def iter_batches(self, batch_size: int, max_tokens: int | None = None) -> Iterable[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]]:
        """Yield (item_ids, tokens, mask, segments) over the whole store in order."""
        for s in range(0, len(self), batch_size):
            idx = list(range(s, min(s + batch_size, len(self))))
            yield ([self.item_ids[i] for i in idx], *self.batch(idx, max_tokens))


class FeatureStoreWriter:
    """Writes shards atomically; ``manifest.json`` is rewritten after every shard.

    ``config`` (backend, model, fields, ...) is stored in the manifest; re-opening a store
    whose config differs raises, so shards from different configs never mix.
    """

    def __init__(self, path: str | os.PathLike, *, dim: int, config: dict[str, Any], segments: Sequence[str], overwrite: bool = False):
        self.path = Path(path)
        self.dim = int(dim)
        self.config = dict(config)
        self.segments_names = list(segments)
        mpath = self.path / MANIFEST
        if mpath.exists() and overwrite:
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        if (self.path / MANIFEST).exists():
            m = json.loads((self.path / MANIFEST).read_text())
            if m.get("config") != self.config or int(m.get("dim", -1)) != self.dim:
                raise ArtifactError(
                    f"{self.path} holds a store made with another config; pass --overwrite or a new --out"
                )
            self.manifest = m
        else:
            self.manifest = {
                "format_version": STORE_FORMAT_VERSION,
                "dim": self.dim,
                "dtype": "float16",
                "segments": self.segments_names,
                "config": self.config,
                "shards": [],
                "n_items": 0,
                "n_tokens": 0,
            }
        # drop leftovers of a killed run: shard dirs not in the manifest
        for p in self.path.glob("shard-*"):
            if p.name not in self.manifest["shards"]:
                shutil.rmtree(p, ignore_errors=True)
        for p in self.path.glob(".shard-*"):
            shutil.rmtree(p, ignore_errors=True)

    @property
    def done_item_ids(self) -> set[str]:
        ids: set[str] = set()
        for name in self.manifest["shards"]:
            ids.update(json.loads((self.path / name / "item_ids.json").read_text()))
        return ids

    def write_shard(self, item_ids: Sequence[str], tokens: Sequence[np.ndarray], segments: Sequence[np.ndarray], extra: dict | None = None) -> str:
        """Write one shard of items: ``tokens[i]`` (T_i, d), ``segments[i]`` (T_i,)."""
        if not (len(item_ids) == len(tokens) == len(segments)):
            raise InputError("write_shard: item_ids, tokens and segments must have the same length")
        name = f"shard-{len(self.manifest['shards']):05d}"
        staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=self.path))
        # mkdtemp makes 0700; a store is shared data, so honour the umask like mkdir would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(staging, 0o777 & ~umask)
        try:
            lens = [int(len(t)) for t in tokens]
            for t, s in zip(tokens, segments):
                if t.ndim != 2 or t.shape[1] != self.dim:
                    raise InputError(f"write_shard: token array of shape {t.shape}, expected (T, {self.dim})")
                if len(s) != len(t):
                    raise InputError("write_shard: segments must have one id per token")
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            flat = np.concatenate([np.asarray(t, dtype=np.float16) for t in tokens]) if lens and sum(lens) else np.zeros((0, self.dim), np.float16)
            seg = np.concatenate([np.asarray(s, dtype=np.int16) for s in segments]) if lens and sum(lens) else np.zeros(0, np.int16)
            np.save(staging / "tokens.npy", flat)
            np.save(staging / "offsets.npy", offsets)
            np.save(staging / "segments.npy", seg)
            (staging / "item_ids.json").write_text(json.dumps([str(i) for i in item_ids]))
            if extra:
                (staging / "extra.json").write_text(json.dumps(extra))
            (staging / "DONE").write_text("ok\n")
            os.replace(staging, self.path / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.manifest["shards"].append(name)
        self.manifest["n_items"] += len(item_ids)
        self.manifest["n_tokens"] += int(offsets[-1])
        atomic_write_json(self.path / MANIFEST, self.manifest)
        return name

    def finish(self, **info: Any) -> Path:
        self.manifest.update(info)
        self.manifest["complete"] = True
        atomic_write_json(self.path / MANIFEST, self.manifest)
        return self.path


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
    w = FeatureStoreWriter(path, dim=dim, config=config or {"backend": "arrays"}, segments=segment_names, overwrite=overwrite)
    for s in range(0, len(item_ids), shard_size):
        w.write_shard(item_ids[s : s + shard_size], tokens[s : s + shard_size], segments[s : s + shard_size])
    w.finish()
    return FeatureStore.open(path)
