"""Append-only index segments: a cold-start round costs O(new items), never a catalogue rewrite.

An index on disk is a **base** (``sids.parquet``, ``trie.safetensors``, ``index.safetensors``,
written by a full save) plus one **segment** per cold-start round since, in commit order.
A segment is one immutable safetensors file, ``index-seg-<version>.safetensors``::

    ids_int64 (a,) int64            the a appended items' ids (integer ids), or
    ids_utf8 (bytes,) uint8 + ids_offsets (a + 1,) int64   (string ids, UTF-8)
    sids      (a + u, S) int64      SIDs of the a appended items, then of the u updated rows
    raw_codes (a + u, L) int32      quantizer codes before collision resolution
    moved     (a + u,) uint8        the policy moved the item off its own codes
    emb_hash  (a + u,) uint64       embedding fingerprints (0 = unknown)
    rows      (u,) int64            the rows the last u entries update (a replaced item's new
                                    SID, or the first embedding seen for an item indexed without)
    retired   (r, S) int64          SIDs retired in this round (never reissued)

and the manifest's ``sections.index.segments`` lists them ({name, version, appended,
updated, retired}). A row number is an item's position in the merged index: base rows
first, then each segment's appended items; an update never moves a row, and no live SID
ever changes. Committing a segment writes that one file and replaces the manifest
(``os.replace``) under the directory's writer lock. ``compact`` (a full save) folds the
segments into a new base.

In memory the index is merged (flat arrays over all rows); lookups and cold start read the
live SIDs through ``LiveSIDs``: the base trie minus the base rows a segment updated, plus
an overlay trie over the rows the segments appended or updated (small), so a load never
rebuilds the base trie.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import ArtifactError
from ._lazy import advise_whole
from ._trie import SIDTrie

__all__ = ["Segment", "LiveSIDs", "RowOverlay", "SEGMENT_PREFIX", "apply_segments", "encode_ids", "decode_ids"]

SEGMENT_PREFIX = "index-seg-"


def encode_ids(ids: np.ndarray) -> dict[str, np.ndarray]:
    """Item ids as safetensors arrays: int64 as is, anything else as UTF-8 bytes + offsets."""
    ids = np.asarray(ids)
    if ids.dtype.kind in "iu":
        return {"ids_int64": ids.astype(np.int64)}
    enc = [str(i).encode() for i in ids.tolist()]
    offsets = np.zeros(len(enc) + 1, np.int64)
    np.cumsum([len(b) for b in enc], out=offsets[1:])
    return {"ids_utf8": np.frombuffer(b"".join(enc), np.uint8).copy(), "ids_offsets": offsets}


def decode_ids(arrays: dict[str, np.ndarray], where: str) -> np.ndarray:
    if "ids_int64" in arrays:
        return np.asarray(arrays["ids_int64"], np.int64)
    if "ids_utf8" not in arrays or "ids_offsets" not in arrays:
        raise ArtifactError(f"{where} holds no item ids (ids_int64, or ids_utf8 + ids_offsets); the segment is corrupt, run `tokenizer-kit index` to rebuild")
    buf = np.asarray(arrays["ids_utf8"], np.uint8).tobytes()
    off = np.asarray(arrays["ids_offsets"], np.int64)
    if len(off) == 0 or off[0] != 0 or off[-1] != len(buf) or (np.diff(off) < 0).any():
        raise ArtifactError(f"{where}: ids_offsets do not index ids_utf8; the segment is corrupt, run `tokenizer-kit index` to rebuild")
    try:
        return np.asarray([buf[a:b].decode() for a, b in zip(off[:-1].tolist(), off[1:].tolist())], dtype=object)
    except UnicodeDecodeError:
        raise ArtifactError(f"{where}: item ids are not UTF-8; the segment is corrupt, run `tokenizer-kit index` to rebuild") from None


@dataclass
class Segment:
    """The rows one cold-start round adds: ``a`` appended items, then ``u`` updated rows."""

    version: int
    item_ids: np.ndarray  # (a,)
    sids: np.ndarray  # (a + u, S)
    raw_codes: np.ndarray  # (a + u, L)
    moved: np.ndarray  # (a + u,) bool
    emb_hash: np.ndarray  # (a + u,) uint64
    rows: np.ndarray  # (u,) rows updated by the last u entries
    retired: np.ndarray  # (r, S)

    @property
    def name(self) -> str:
        return f"{SEGMENT_PREFIX}{self.version:06d}"

    @property
    def appended(self) -> int:
        return len(self.item_ids)

    def tensors(self) -> dict[str, np.ndarray]:
        return {
            **encode_ids(self.item_ids),
            "sids": np.ascontiguousarray(self.sids, np.int64),
            "raw_codes": np.ascontiguousarray(self.raw_codes, np.int32),
            "moved": np.ascontiguousarray(self.moved, np.uint8),
            "emb_hash": np.ascontiguousarray(self.emb_hash, np.uint64),
            "rows": np.ascontiguousarray(self.rows, np.int64),
            "retired": np.ascontiguousarray(self.retired, np.int64),
        }

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "appended": self.appended, "updated": int(len(self.rows)),
                "retired": int(len(self.retired))}

    @classmethod
    def from_tensors(cls, info: dict[str, Any], arrays: dict[str, np.ndarray], *, sid_length: int, levels: int) -> "Segment":
        where = f"segment {info.get('name')!r}"
        need = ("sids", "raw_codes", "moved", "emb_hash", "rows", "retired")
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ArtifactError(f"{where} lacks {missing}; the segment is corrupt, run `tokenizer-kit index` to rebuild the index")
        seg = cls(
            version=int(info["version"]),
            item_ids=decode_ids(arrays, where),
            sids=np.asarray(arrays["sids"], np.int64).reshape(-1, sid_length),
            raw_codes=np.asarray(arrays["raw_codes"], np.int64).reshape(-1, levels),
            moved=np.asarray(arrays["moved"]).astype(bool),
            emb_hash=np.asarray(arrays["emb_hash"], np.uint64),
            rows=np.asarray(arrays["rows"], np.int64),
            retired=np.asarray(arrays["retired"], np.int64).reshape(-1, sid_length),
        )
        n = seg.appended + len(seg.rows)
        if not (len(seg.sids) == len(seg.raw_codes) == len(seg.moved) == len(seg.emb_hash) == n):
            raise ArtifactError(f"{where}: {seg.appended} appended + {len(seg.rows)} updated rows, but arrays of {len(seg.sids)} SIDs; "
                                "the segment is corrupt, run `tokenizer-kit index` to rebuild the index")
        return seg


class RowOverlay:
    """A per-row array of a segmented index without copying its base: rows [0, n_base) from
    ``base`` (the memory-mapped base file), rows after it from ``tail`` (the segments'
    appended rows, small), and ``rows`` (sorted) replaced by ``values`` (rows the segments
    updated). ``take`` reads only the rows asked for; anything that needs the whole array
    (``np.asarray``, any other ndarray method) gets it built once."""

    __array_priority__ = 20.0

    def __init__(self, base: np.ndarray, tail: np.ndarray, rows: np.ndarray, values: np.ndarray):
        self.base, self.n_base = base, len(base)
        self.dtype = np.result_type(base.dtype, tail.dtype)
        self.tail = tail.astype(self.dtype, copy=False)
        self.rows, self.values = rows, values.astype(self.dtype, copy=False)
        self.shape = (self.n_base + len(tail), *base.shape[1:])
        self.ndim = len(self.shape)
        self._full: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        a = self._materialize()
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)

    def __getattr__(self, name: str):  # tolist, sum, copy, astype...: on the whole array
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._materialize(), name)

    def __getitem__(self, key: Any):
        if self._full is not None:
            return self._full[key]
        if isinstance(key, (int, np.integer)):
            return self.take(np.asarray([key], np.int64))[0]
        arr = np.asarray(key) if not isinstance(key, (slice, tuple)) else None
        if arr is None or not (arr.dtype == bool or (arr.dtype.kind in "iu" and arr.ndim == 1)):
            return self._materialize()[key]
        return self.take(np.flatnonzero(arr) if arr.dtype == bool else arr.astype(np.int64))

    def __setitem__(self, key: Any, value) -> None:
        self._materialize()[key] = value

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Values of ``rows`` (m,), reading only those rows of the base."""
        if self._full is not None:
            return self._full[rows]
        n = len(self)
        rows = np.asarray(rows, np.int64).reshape(-1)
        rows = np.where(rows < 0, rows + n, rows)
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise IndexError(f"row {int(rows.max()) if rows.max() >= n else int(rows.min())} is out of bounds for {n} rows")
        out = np.empty((len(rows), *self.shape[1:]), self.dtype)
        b = rows < self.n_base
        if b.any():
            out[b] = self.base[rows[b]]
        if not b.all():
            out[~b] = self.tail[rows[~b] - self.n_base]
        if len(self.rows) and len(rows):
            at = np.minimum(np.searchsorted(self.rows, rows), len(self.rows) - 1)
            hit = self.rows[at] == rows
            out[hit] = self.values[at[hit]]
        return out

    def _materialize(self) -> np.ndarray:
        if self._full is None:
            advise_whole([self.base])
            full = np.concatenate([np.asarray(self.base, self.dtype), self.tail])
            full[self.rows] = self.values
            self._full = full
        return self._full


def _overlay(base: np.ndarray, segments: Sequence["Segment"], key: str) -> "RowOverlay | np.ndarray":
    """``key``'s rows of the base plus segments as a :class:`RowOverlay` (the last segment's
    value wins for a row updated twice)."""
    tail = np.concatenate([np.asarray(base[:0])] + [s.__dict__[key][: s.appended] for s in segments])
    rows = np.concatenate([np.zeros(0, np.int64)] + [s.rows for s in segments])
    vals = np.concatenate([tail[:0]] + [s.__dict__[key][s.appended :] for s in segments])
    last = len(rows) - 1 - np.unique(rows[::-1], return_index=True)[1]  # the last update of each row, rows ascending
    return RowOverlay(base, tail, rows[last], vals[last])


def apply_segments(base: dict[str, np.ndarray], segments: Sequence[Segment], merge_ids) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Merged arrays (item_ids, sids, raw_codes, moved, emb_hash, retired) of ``base`` plus ``segments``.

    Nothing of the base is copied: raw codes, moved flags, fingerprints and integer ids are
    :class:`RowOverlay` s over the base arrays, the SIDs of a ``LazySIDs`` base stay in its
    trie. Also returns the base rows some segment updated (sorted) and their SIDs in the base
    (what the base trie still holds for them).
    """
    n_base = len(base["item_ids"])
    if not segments:  # nothing to merge: no copy
        return dict(base), np.zeros(0, np.int64), np.zeros((0, base["sids"].shape[1]), np.int64)
    out = {k: _overlay(base[k], segments, k) for k in ("raw_codes", "moved", "emb_hash")}
    parts = [s.sids[: s.appended] for s in segments]
    lazy = getattr(base["sids"], "extended", None)  # LazySIDs: base rows stay in the trie
    out["sids"] = lazy(parts) if lazy is not None else np.concatenate([base["sids"]] + parts)
    ids = [base["item_ids"]] + [s.item_ids for s in segments]
    if all(i.dtype.kind in "iu" for i in ids):
        out["item_ids"] = RowOverlay(base["item_ids"], np.concatenate(ids[1:]).astype(np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))
    else:
        out["item_ids"] = merge_ids(ids)
    out["retired"] = np.concatenate([base["retired"]] + [s.retired for s in segments])
    n = len(out["item_ids"])
    stale: dict[int, np.ndarray] = {}
    for s in segments:
        rows = s.rows
        if len(rows) and (rows.min() < 0 or rows.max() >= n):
            raise ArtifactError(f"segment {s.name!r} updates row {int(rows.max())} of an index of {n} items; the segment is corrupt, "
                                "run `tokenizer-kit index` to rebuild the index")
        for r in rows[rows < n_base].tolist():
            stale.setdefault(r, out["sids"][r].copy())
        out["sids"][rows] = s.sids[s.appended :]
    dead = np.asarray(sorted(stale), np.int64)
    dead_sids = np.stack([stale[r] for r in dead.tolist()]) if len(dead) else np.zeros((0, out["sids"].shape[1]), np.int64)
    return out, dead, dead_sids


class LiveSIDs:
    """The live SIDs of a merged index without rebuilding its base trie.

    ``base`` is the trie over the first ``n_base`` rows as the base stored them; rows in
    ``dead`` (sorted; their base SIDs ``dead_sids``) were updated since and are read from
    the overlay instead: a trie over every row at or after ``n_base`` plus the dead rows,
    with their current SIDs. Answers match one trie built over all current SIDs.
    """

    def __init__(self, base: SIDTrie, sids: np.ndarray, n_base: int, dead: np.ndarray, dead_sids: np.ndarray):
        self.base = base
        self.sids = sids
        self.n_base = n_base
        self.dead = dead
        self.dead_sids = dead_sids
        self.rows = np.concatenate([dead, np.arange(n_base, len(sids), dtype=np.int64)])  # overlay entry -> row (ascending)
        self.overlay = SIDTrie.build(sids[self.rows]) if len(self.rows) else None

    def _dead_under(self, prefix: Sequence[int]) -> np.ndarray:
        """Base SIDs of the dead rows under ``prefix``."""
        if not len(self.dead_sids):
            return self.dead_sids
        t = len(prefix)
        return self.dead_sids[(self.dead_sids[:, :t] == np.asarray(prefix, np.int64)[None, :]).all(1)]

    def allowed_next(self, prefix: Sequence[int]) -> np.ndarray:
        prefix = [int(c) for c in prefix]
        node = self.base.node_of(prefix)
        codes = np.zeros(0, np.int32)
        if node >= 0:
            codes, nodes = self.base.children(node)
            dead = self._dead_under(prefix)
            if len(dead) and len(codes):
                count = self.base.item_count[nodes].astype(np.int64)
                count -= np.asarray([(dead[:, len(prefix)] == c).sum() for c in codes.tolist()], np.int64)
                codes = codes[count > 0]
        if self.overlay is not None:
            codes = np.union1d(codes, self.overlay.allowed_next(prefix)).astype(np.int32)
        return codes

    def count_under(self, prefix: Sequence[int]) -> int:
        prefix = [int(c) for c in prefix]
        n = self.base.count_under(prefix) - (len(self._dead_under(prefix)) if self.base.node_of(prefix) >= 0 else 0)
        return n + (self.overlay.count_under(prefix) if self.overlay is not None else 0)

    def contains(self, sid: Sequence[int]) -> bool:
        return len(list(sid)) == self.base.sid_length and self.count_under(sid) > 0

    def rows_under(self, prefix: Sequence[int], limit: int | None = None) -> np.ndarray:
        """Rows under ``prefix`` in SID order, ties by row (as one trie over all rows orders them)."""
        return self.rows_sids_under(prefix, limit, sids=False)[0]

    def rows_sids_under(self, prefix: Sequence[int], limit: int | None = None, *, sids: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`rows_under` and, with ``sids``, their SIDs (m, S), read by position from the
        base trie (contiguous) and from the overlay, not row by row."""
        prefix = [int(c) for c in prefix]
        pos = self.base.positions_under(prefix)
        if limit is not None:
            pos = pos[: limit + len(self.dead)]
        base = self.base.order[pos].astype(np.int64)
        if len(self.dead):
            keep = ~np.isin(base, self.dead)
            base, pos = base[keep], pos[keep]
        over = self.rows[self.overlay.items_under(prefix)] if self.overlay is not None else self.dead[:0]
        if limit is not None:
            over = over[:limit]
        if not len(over):
            base = base if limit is None else base[:limit]
            return base, (self.base.sids_under_at(prefix, pos[: len(base)]) if sids else None)
        rows = np.concatenate([base, over])
        s = np.concatenate([self.base.sids_under_at(prefix, pos), self.sids[over]])  # live base rows hold their base SIDs
        order = np.lexsort([rows] + [s[:, l] for l in range(s.shape[1] - 1, -1, -1)])[:limit]
        return rows[order], (s[order] if sids else None)

    def sids_under(self, prefix: Sequence[int]) -> np.ndarray:
        return self.sids[self.rows_under(prefix)]

    def item_row(self, sid: Sequence[int]) -> int:
        """The first row holding this full SID, or -1."""
        if len(list(sid)) != self.base.sid_length:
            return -1
        rows = self.rows_under(sid, limit=1)
        return int(rows[0]) if len(rows) else -1


def commit_segments(index, tok, path) -> None:
    """Append ``index.pending`` to the tokenizer directory ``path``: one new immutable file
    per segment, then the manifest replaced in one ``os.replace`` (``io.update_artifact``,
    under the directory's writer lock). A failure before the manifest replace leaves the
    previous version (the new files unreferenced, deleted by the next writer)."""
    from pathlib import Path

    from safetensors.numpy import save_file

    from ..errors import TokenizerKitError
    from ..build import TOKENIZER
    from ..io import update_artifact

    path = Path(path)
    with update_artifact(path, TOKENIZER) as u:
        sec = (u.fields.get("sections") or {}).get("index") or {}
        if sec.get("version") != index._origin[1]:
            raise TokenizerKitError(
                f"the index in {path} changed since it was loaded (version {index._origin[1]} -> {sec.get('version')}); "
                "load it again and repeat the cold start"
            )
        infos = list(sec.get("segments", []))
        for seg in index.pending:
            name = f"{seg.name}.safetensors"
            if name in u.files:
                raise TokenizerKitError(f"{path / name} already belongs to the index; load the index again and repeat the cold start")
            with u.new_file(name) as tmp:
                save_file(seg.tensors(), str(tmp))
            infos.append(seg.info())
        section = index.section(infos)
        u.fields.setdefault("sections", {})["index"] = section
    for seg in index.pending:  # the tokenizer object mirrors the directory: base rows plus segment attachments
        tok.attachments[seg.name] = seg.tensors()
    tok.sections["index"] = section
    index.segments, index.pending = infos, []
    index._origin = (path, index.version)
