"""``SIDIndex``: one SID per item and one item per SID, its trie, and cold-start updates.

Stored inside the tokenizer directory (``SemanticTokenizer`` extension points):

* ``sids.parquet``          item_id, code_0..code_{S-1} (the SIDs, suffix level included), sid
* ``trie.safetensors``      the ``SIDTrie`` arrays
* ``index.safetensors``     raw_codes (n, L) quantizer codes before collision resolution,
                            moved (n,) uint8, emb_hash (n,) uint64 (0 = unknown),
                            retired (r, S) SIDs that were taken back and are never reissued
* manifest ``sections.index``: policy, version (bumped by every update), level sizes,
                            build statistics and an update history

Cold start (``assign``) encodes new items with the frozen quantizer, resolves them against
the existing SIDs without changing any, and returns a new ``SIDIndex`` (version + 1); the
caller saves it with ``save``, which rewrites the directory atomically.
"""

from __future__ import annotations

import json
import logging
import os
import time
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import numpy as np

from .._config import ValidatedConfig, setting
from .._progress import Progress
from ..build import TOKENIZER, level_token, parse_sid_string, sid_string
from ..errors import ArtifactError, InputError, TokenizerKitError
from ..io import embedding_hash
from ._cold_start import cold_start
from .policies import POLICIES, CollisionPolicy, IndexView, get_policy, sid_keys
from ._ids import IdLookup, as_ids, concat_ids, ids_increase
from ._lazy import LazySIDs, advise_random, as_bool
from ._segments import SEGMENT_PREFIX, LiveSIDs, RowOverlay, Segment, apply_segments, commit_segments
from ._trie import SIDTrie
from ._vocab import SIDVocab

__all__ = ["IndexConfig", "SIDIndex", "embedding_hash", "read_lcrec_index", "INDEX_FORMAT"]

logger = logging.getLogger(__name__)

INDEX_FORMAT = 1
_HISTORY_KEEP = 100


@dataclass
class IndexConfig(ValidatedConfig):
    """How codes become SIDs (see ``indexer.policies`` for the collision policies)."""

    label: ClassVar[str] = "index"
    error_type: ClassVar[type[InputError]] = InputError

    policy: str = setting(
        "suffix",
        help="Collision policy: suffix (append a level), reassign (move to a free code), none (report only).",
        choices=POLICIES,
    )
    suffix_reserve: int = setting(
        8, help="Smallest size of the suffix level's vocabulary, so cold start rarely adds tokens to an LLM that already has them.",
        bounds=(1, None),
    )
    nearest_k: int = setting(5, help="Neighbours listed per cold-start item.", bounds=(0, None))
    nearest_candidates: int = setting(4096, help="Cold start looks for neighbours among at most this many items under the item's prefix.",
                                      bounds=(1, None))


_as_ids = as_ids


def _merge_ids(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return concat_ids([a, b])


def _segment_arrays(tok, info: dict[str, Any]) -> dict[str, np.ndarray]:
    name = info.get("name") if isinstance(info, dict) else None
    if not isinstance(name, str) or not name.startswith(SEGMENT_PREFIX) or name not in tok.attachments:
        raise ArtifactError(f"the index lists segment {name!r} but the tokenizer directory does not hold {name}.safetensors; "
                            "restore the directory or rebuild the index with `tokenizer-kit index`")
    return tok.attachments[name]


def _check_build_input(item_ids, codes: np.ndarray, x, decode, policy: CollisionPolicy) -> np.ndarray:
    n = len(codes)
    item_ids = _as_ids(item_ids)
    if len(item_ids) != n:
        raise InputError(f"{len(item_ids)} item ids for {n} code rows")
    if policy.needs_vectors and (x is None or decode is None):
        raise InputError(f"the {policy.name} policy needs the items' embeddings (`x`) to rank free codes")
    if x is not None and len(x) != n:
        raise InputError(f"{len(x)} vectors for {n} indexed items; pass the embeddings the tokenizer was built on")
    return item_ids


def _build_stats(policy: CollisionPolicy, codes: np.ndarray, res, err, x, resolve_s: float) -> dict[str, Any]:
    """Collisions before and after, moves and, with vectors, the reconstruction cost of the SIDs."""
    from ..evaluation import collision_stats

    n = len(codes)
    before = collision_stats(codes)
    after = collision_stats(res.sids)
    stats: dict[str, Any] = {
        "policy": policy.name,
        "n_items": int(n),
        "collision_rate_codes": before["collision_rate"],
        "colliding_items_codes": before["colliding_items"],
        "largest_bucket_codes": before["largest_bucket"],
        "collision_rate_sids": after["collision_rate"],
        "duplicate_sids": int(n - after["unique_sids"]),
        "max_suffix": 0,
        "moved_items": int(res.moved.sum()),
        "moved_rate": float(res.moved.mean()) if n else 0.0,
        "moved_other_prefix": 0,
        **res.stats,
        "resolve_seconds": resolve_s,
    }
    if err is not None:
        sse0 = float(err.sum())
        sse1 = sse0 + float(res.extra.sum())
        d = np.asarray(x).shape[1]
        stats.update(
            reconstruction_mse_codes=sse0 / (n * d),
            reconstruction_mse_sids=sse1 / (n * d),
            reconstruction_cost_relative=(sse1 / sse0 - 1.0) if sse0 > 0 else 0.0,
            extra_sq_error_per_moved_item=float(res.extra[res.moved].mean()) if res.moved.any() else 0.0,
        )
    return stats


def index_section(*, policy: str, version: int, sid_length: int, codebook_sizes, level_sizes, suffix_size: int, n_items: int,
                  base_items: int, n_retired: int, stats: dict[str, Any], history: list[dict[str, Any]],
                  segments: list[dict[str, Any]], ids_increasing: bool | None = None) -> dict[str, Any]:
    """The manifest's ``sections.index`` (the one layout the in-memory and the on-disk index write).

    ``ids_increasing``: the base's integer item ids (``index.safetensors``) increase strictly
    with the row, so a load under ``verify="read"`` and the id lookup trust it instead of
    reading every id (None: not known, not written; the readers check the ids themselves)."""
    extra = {} if ids_increasing is None else {"ids_increasing": bool(ids_increasing)}
    return {
        "format": INDEX_FORMAT,
        "policy": policy,
        "version": version,
        "sid_length": sid_length,
        "codebook_sizes": codebook_sizes,
        "level_sizes": level_sizes,
        "suffix_size": suffix_size,
        "n_items": n_items,
        "base_items": base_items,
        "n_retired": n_retired,
        "updated_at": _now(),
        "stats": stats,
        "history": history[-_HISTORY_KEEP:],
        "segments": segments,
        **extra,
    }


def read_lcrec_index(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """LC-Rec / LETTER / MiniOneRec ``*.index.json`` -> (item ids (n,), SIDs (n, S))."""
    from ..evaluation import read_index_json

    return read_index_json(path)


@dataclass
class SIDIndex:
    """Item ids (n,), their SIDs (n, S) and the trie; see the module docstring for the files."""

    item_ids: np.ndarray
    sids: np.ndarray
    raw_codes: np.ndarray
    codebook_sizes: list[int]
    policy: str = "suffix"
    version: int = 1
    suffix_size: int = 0
    moved: np.ndarray | None = None
    emb_hash: np.ndarray | None = None
    retired: np.ndarray | None = None
    stats: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    # segments (see _segments.py): committed ones (manifest entries) and rounds not yet saved
    segments: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Segment] = field(default_factory=list)
    _trie: SIDTrie | None = field(default=None, repr=False)
    _rows: Any = field(default=None, repr=False)
    # the stored base: its trie covers rows [0, n_base) as first written; dead rows were updated since
    _base: tuple[SIDTrie, int, np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    _live: LiveSIDs | None = field(default=None, repr=False)
    _origin: tuple[Any, int] | None = field(default=None, repr=False)  # (directory, version) it was loaded from or saved to
    # the base's integer ids increase with the row (the manifest says so): looked up without a pass over them
    _ids_increasing: bool | None = field(default=None, repr=False)

    def __post_init__(self):
        n = len(self.item_ids)
        if not isinstance(self.item_ids, RowOverlay):  # a segmented stored index: base rows stay memory-mapped
            self.item_ids = _as_ids(self.item_ids)
        if isinstance(self.sids, LazySIDs):  # a stored base read through its trie (SIDIndex.stored)
            if len(self.sids) != n:
                raise ArtifactError(f"{len(self.sids)} SIDs for {n} item ids; rerun `tokenizer-kit index`")
        else:
            self.sids = np.asarray(self.sids, np.int64).reshape(n, -1)
        self.codebook_sizes = [int(k) for k in self.codebook_sizes]
        if not isinstance(self.raw_codes, RowOverlay):
            raw = np.asarray(self.raw_codes)  # int32 as stored is kept (a 10M-item index: 120 MB less)
            self.raw_codes = (raw if raw.dtype in (np.int32, np.int64) else raw.astype(np.int64)).reshape(n, -1)
        if not isinstance(self.moved, RowOverlay):
            self.moved = np.zeros(n, bool) if self.moved is None else as_bool(self.moved)
        if not isinstance(self.emb_hash, RowOverlay):
            self.emb_hash = np.zeros(n, np.uint64) if self.emb_hash is None else np.asarray(self.emb_hash, np.uint64)
        self.retired = np.zeros((0, self.sid_length), np.int64) if self.retired is None else np.asarray(self.retired, np.int64).reshape(-1, self.sid_length)

    # ---- shape ------------------------------------------------------------------------------
    def __len__(self) -> int:
        merge = self.__dict__.get("_merge")
        return merge[2] if merge is not None else len(self.item_ids)

    @classmethod
    def _after_round(cls, parent: "SIDIndex", seg: Segment, **fields) -> "SIDIndex":
        """The index after a cold-start round whose per-row arrays (the parent's plus the
        segment) are merged on first use: a round that is only committed copies nothing."""
        new = cls.__new__(cls)
        for f in dataclasses.fields(cls):
            if f.name not in _MERGED:
                setattr(new, f.name, fields[f.name] if f.name in fields else (
                    f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default))
        new.__dict__["_merge"] = (parent, seg, len(parent) + seg.appended)
        return new

    def _materialize(self) -> None:
        parent, seg, _ = self.__dict__.pop("_merge")
        for k in ("sids", "raw_codes", "moved", "emb_hash"):
            a = np.concatenate([getattr(parent, k), getattr(seg, k)[: seg.appended]])
            a[seg.rows] = getattr(seg, k)[seg.appended :]
            setattr(self, k, a)
        self.item_ids = _merge_ids(parent.item_ids, seg.item_ids)

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def policy_obj(self) -> CollisionPolicy:
        return get_policy(self.policy)

    @property
    def sid_length(self) -> int:
        return self.policy_obj.sid_length(self.levels)

    @property
    def level_sizes(self) -> list[int]:
        """Tokens per SID level (the suffix level last, under ``suffix``)."""
        return self.policy_obj.level_sizes(self.codebook_sizes, self.suffix_size)

    @property
    def trie(self) -> SIDTrie:
        """One trie over every live SID (built on first use when segments are loaded)."""
        if self._trie is None:
            if self._base is not None and self._base[1] == len(self) and not len(self._base[2]):
                self._trie = self._base[0]
            else:
                self._trie = SIDTrie.build(self.sids)
        return self._trie

    @property
    def live(self) -> LiveSIDs:
        """The live SIDs read through the stored base trie and a small overlay (no full rebuild)."""
        if self._live is None:
            if self._base is None:
                self._base = (self.trie, len(self), np.zeros(0, np.int64), np.zeros((0, self.sid_length), np.int64))
            trie, n_base, dead, dead_sids = self._base
            self._live = LiveSIDs(trie, self.sids, n_base, dead, dead_sids)
        return self._live

    def vocab(self, *, base: int = 0) -> SIDVocab:
        return SIDVocab(self.level_sizes, base=base)

    # ---- building -----------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        item_ids: Sequence | np.ndarray,
        codes: np.ndarray,
        *,
        codebook_sizes: Sequence[int],
        config: IndexConfig | None = None,
        x: np.ndarray | None = None,
        decode=None,
        retired: np.ndarray | None = None,
        version: int = 1,
    ) -> "SIDIndex":
        """SIDs for ``codes`` (n, L) under ``config.policy``.

        ``x`` (n, d) preprocessed vectors and ``decode(codes) -> (m, d)`` are needed by
        ``reassign`` and used by ``suffix`` to number each group best-quantised first.
        """
        config = (config or IndexConfig()).validate()
        policy = get_policy(config.policy)
        codes = np.asarray(codes, np.int64)
        item_ids = _check_build_input(item_ids, codes, x, decode, policy)
        t0 = time.perf_counter()
        err = None
        if x is not None and decode is not None:
            err = ((np.asarray(x, np.float64) - decode(codes)) ** 2).sum(1)
        res = policy.build(codes, sizes=codebook_sizes, x=x, decode=decode, err=err, retired=retired,
                           suffix_reserve=config.suffix_reserve)
        stats = _build_stats(policy, codes, res, err, x, time.perf_counter() - t0)
        idx = cls(
            item_ids=item_ids,
            sids=res.sids,
            raw_codes=codes,
            codebook_sizes=list(codebook_sizes),
            policy=config.policy,
            version=version,
            suffix_size=res.suffix_size,
            moved=res.moved,
            retired=retired,
            stats=stats,
        )
        t1 = time.perf_counter()
        trie = idx.trie
        stats["trie_build_seconds"] = time.perf_counter() - t1
        stats["trie_nodes"] = trie.n_nodes
        stats["trie_bytes"] = trie.nbytes
        return idx

    @classmethod
    def for_tokenizer(cls, tok, *, config: IndexConfig | None = None, x: np.ndarray | None = None, ids=None) -> "SIDIndex":
        """(Re)build the index of a tokenizer's items from their quantizer codes.

        ``x`` (n, d) raw embeddings of the indexed items (any order when ``ids`` are given).
        """
        if tok.codes is None or tok.item_ids is None:
            raise TokenizerKitError("this tokenizer holds no items; build it with build-codebook or assign items first")
        old = cls.stored(tok)  # with its segments merged
        codes = old.raw_codes if old is not None else tok.codes
        item_ids = old.item_ids if old is not None else tok.item_ids
        config = (config or IndexConfig()).validate()
        new_len = get_policy(config.policy).sid_length(tok.levels)
        retired = None
        if old is not None and len(old.retired):
            if old.retired.shape[1] == new_len:
                retired = old.retired
            else:
                logger.warning("dropping %d retired SIDs of length %d: the %s policy makes SIDs of length %d",
                               len(old.retired), old.retired.shape[1], config.policy, new_len)
        xp = None
        hashes = None
        if x is not None:
            x = np.asarray(x)
            if x.ndim != 2 or x.shape[1] != tok.dim:
                raise InputError(f"the embeddings have shape {x.shape}, but the tokenizer expects vectors of dimension {tok.dim}; pass the embeddings it was built on")
            if ids is not None:
                rows = IdLookup(_as_ids(ids)).rows(item_ids)
                if (rows < 0).any():
                    raise InputError(f"the embeddings lack {int((rows < 0).sum())} indexed items (first {item_ids[np.argmax(rows < 0)]!r}); "
                                     "pass the embeddings the tokenizer was built on")
                x = x[rows]
            hashes = embedding_hash(x)
            xp = tok.preprocess(x, what="index embeddings")
        idx = cls.build(
            item_ids,
            codes,
            codebook_sizes=tok.codebook_sizes,
            config=config,
            x=xp,
            decode=tok.decode,
            retired=retired,
            version=(old.version + 1) if old is not None else 1,
        )
        if hashes is not None:
            idx.emb_hash = hashes
        elif old is not None:
            idx.emb_hash = old.emb_hash.copy()
        if old is not None:
            idx.history = list(old.history)
            changed = int((old.sids != idx.sids).any(1).sum()) if old.sids.shape == idx.sids.shape else len(idx)
            idx.stats["changed_sids_vs_previous"] = changed
        idx.history = (idx.history + [{"version": idx.version, "event": "index", "policy": idx.policy, "at": _now(), "items": len(idx)}])[-_HISTORY_KEEP:]
        return idx

    # ---- persistence ----------------------------------------------------------------------------
    @classmethod
    def from_tokenizer(cls, tok, *, build: bool = False) -> "SIDIndex":
        """The index stored in a loaded tokenizer (base and segments merged).

        A tokenizer that was never indexed is an error naming the fix, or with ``build``
        gets an index in memory under the default policy (``for_tokenizer``; save it with
        ``save``). ``stored(tok)`` returns None instead.
        """
        idx = cls.stored(tok)
        if idx is not None:
            return idx
        where = f"{tok.path}" if tok.path is not None else "this tokenizer"
        if tok.codes is None or tok.item_ids is None:
            raise TokenizerKitError(f"{where} holds no items to index; build it with `tokenizer-kit build-codebook` or SemanticTokenizer.build")
        if build:
            logger.info("%s has no SID index; indexing it in memory with the default policy", where)
            return cls.for_tokenizer(tok)
        raise TokenizerKitError(
            f"{where} has no SID index; build one with `tokenizer-kit index DIR` or SIDIndex.for_tokenizer(tok).save(tok), "
            "or pass build=True to index it in memory"
        )

    @classmethod
    def stored(cls, tok) -> "SIDIndex | None":
        """The index stored in a loaded tokenizer (base and segments merged), or None if it was never indexed."""
        sec = tok.sections.get("index")
        if not sec:
            return None
        if int(sec.get("format", 1)) > INDEX_FORMAT:
            raise ArtifactError(f"the index was written in format {sec.get('format')}, newer than this tokenizer-kit reads ({INDEX_FORMAT}); upgrade")
        arr = tok.attachments.get("index")
        tarr = tok.attachments.get("trie")
        if arr is None or tarr is None:
            raise ArtifactError("the manifest has an index section but index.safetensors or trie.safetensors is missing; rerun `tokenizer-kit index`")
        sid_length = get_policy(sec["policy"]).sid_length(tok.levels)
        lazy = tok.codes is None and tok.item_ids is not None  # loaded with load_sids="ids": the SIDs come from the trie
        if lazy:  # read a few rows at a time: no read-around of a whole window per row
            advise_random([*arr.values(), *tarr.values()])
        trie = SIDTrie.from_arrays(tarr)
        if lazy:
            if trie.n_items != len(tok.item_ids) or trie.sid_length != sid_length:
                raise ArtifactError(f"trie.safetensors holds {trie.n_items} items of length {trie.sid_length}, sids.parquet "
                                    f"{len(tok.item_ids)} of length {sid_length}; rerun `tokenizer-kit index`")
            base_sids = LazySIDs(trie)
        else:
            base_sids = tok.sids
        _check_index_arrays(arr, len(tok.item_ids), tok.levels, sid_length)
        base = {"item_ids": _as_ids(tok.item_ids), "sids": base_sids, "raw_codes": arr["raw_codes"],
                "moved": as_bool(arr["moved"]), "emb_hash": arr["emb_hash"], "retired": np.asarray(arr["retired"], np.int64).reshape(-1, sid_length)}
        if base["sids"].shape[1] != sid_length:
            raise ArtifactError(f"sids.parquet has SIDs of length {base['sids'].shape[1]} but the {sec['policy']} index expects {sid_length}; rerun `tokenizer-kit index`")
        segments = [Segment.from_tensors(info, _segment_arrays(tok, info), sid_length=sid_length, levels=tok.levels)
                    for info in sec.get("segments", [])]
        merged, dead, dead_sids = apply_segments(base, segments, concat_ids)
        idx = cls(**merged, codebook_sizes=tok.codebook_sizes, policy=sec["policy"], version=int(sec["version"]),
                  suffix_size=int(sec.get("suffix_size", 0)), stats=dict(sec.get("stats", {})), history=list(sec.get("history", [])),
                  segments=list(sec.get("segments", [])))
        n_base = len(base["item_ids"])
        if trie.n_items != n_base or trie.sid_length != sid_length:
            raise ArtifactError(f"trie.safetensors holds {trie.n_items} items of length {trie.sid_length}, sids.parquet {n_base}; rerun `tokenizer-kit index`")
        idx._base = (trie, n_base, dead, dead_sids)
        idx._origin = (tok.path, idx.version)
        idx._ids_increasing = sec.get("ids_increasing") is True
        return idx

    def section(self, segments: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The manifest's ``sections.index``; ``segments``: the segment entries after the base."""
        segments = [] if segments is None else segments
        n_segment_rows = sum(int(g["appended"]) for g in segments)
        # the base's ids: unchanged by segments; a new base is checked once, as it is written
        increasing = self._ids_increasing if segments else (self.item_ids.dtype.kind in "iu" and ids_increase(self.item_ids))
        return index_section(policy=self.policy, version=self.version, sid_length=self.sid_length, codebook_sizes=self.codebook_sizes,
                             level_sizes=self.level_sizes, suffix_size=self.suffix_size, n_items=len(self),
                             base_items=len(self) - n_segment_rows, n_retired=int(len(self.retired)), stats=self.stats,
                             history=self.history, segments=segments, ids_increasing=bool(increasing))

    def attach(self, tok) -> None:
        """Put this index into ``tok`` as a new base (items, SIDs, manifest section, trie and
        index arrays; segments folded in)."""
        L = tok.levels
        if self.levels != L:
            raise InputError(f"index has {self.levels} code levels, the tokenizer {L}")
        tok.item_ids = self.item_ids
        tok.codes = self.sids[:, :L].copy()
        tok.sid_suffix = self.sids[:, L].copy() if self.sid_length > L else None
        tok._id_index = None
        tok.sections["index"] = self.section()
        for name in [k for k in tok.attachments if k.startswith(SEGMENT_PREFIX)]:
            del tok.attachments[name]
        tok.attachments["trie"] = self.trie.state_arrays()
        tok.attachments["index"] = {
            **({"item_ids": np.asarray(self.item_ids, np.int64)} if self.item_ids.dtype.kind in "iu" else {}),
            "raw_codes": self.raw_codes.astype(np.int32),
            "moved": self.moved.astype(np.uint8),
            "emb_hash": self.emb_hash.astype(np.uint64),
            "retired": self.retired.astype(np.int64).reshape(-1, self.sid_length),
        }

    def save(self, tok, path: str | os.PathLike | None = None) -> Path:
        """Save into ``tok``'s directory (or ``path``).

        Rounds of cold start on an index loaded from that directory are appended as segments
        (one new file each, then the manifest; O(new items)); anything else (a new or
        re-resolved index, another directory) rewrites the directory atomically as a new
        base. Either way a failure leaves the previous version whole.
        """
        path = Path(path) if path is not None else tok.path
        if path is None:
            raise InputError("no tokenizer directory to save the index into; pass a path")
        if self.pending and self._origin is not None and _same_dir(self._origin[0], path):
            commit_segments(self, tok, path)
        else:
            self.compact(tok, path)
        return path

    def compact(self, tok, path: str | os.PathLike | None = None) -> Path:
        """Rewrite the directory with this index as its base: every segment folded in, no SID changed."""
        path = Path(path) if path is not None else tok.path
        if path is None:
            raise InputError("no tokenizer directory to save the index into; pass a path")
        from ..io import writer_lock

        with writer_lock(path):  # read-check-rewrite as one step against other writers
            self._check_unchanged_on_disk(path)
            self.attach(tok)
            tok.save_pretrained(path, overwrite=True)
        self.segments, self.pending = [], []
        self._base = (self.trie, len(self), np.zeros(0, np.int64), np.zeros((0, self.sid_length), np.int64))
        self._live = None
        self._ids_increasing = tok.sections["index"].get("ids_increasing") is True
        self._rows = None
        self._origin = (path, self.version)
        return path

    def _check_unchanged_on_disk(self, path: Path) -> None:
        """Refuse to rewrite ``path`` with an index loaded from it if another writer changed it
        since (a cold start committed meanwhile would otherwise be lost)."""
        if self._origin is None or not _same_dir(self._origin[0], path) or not TOKENIZER.committed(path):
            return
        from ..io import read_manifest

        sec = (read_manifest(path, TOKENIZER, verify="none").get("sections") or {}).get("index") or {}
        if sec.get("version") != self._origin[1]:
            raise TokenizerKitError(
                f"the index in {path} changed since it was loaded (version {self._origin[1]} -> {sec.get('version')}); "
                "load it again and repeat"
            )

    # ---- lookups ----------------------------------------------------------------------------------
    def rows_of(self, ids) -> np.ndarray:
        """Row of each item id (m,) in the index, -1 where it is not indexed."""
        if self._rows is None:
            ids_ = self.item_ids
            if isinstance(ids_, RowOverlay):  # base ids memory-mapped, the segments' appended after them
                self._rows = IdLookup.stacked([ids_.base, ids_.tail], increasing=[bool(self._ids_increasing), False])
            else:
                self._rows = IdLookup(ids_, increasing=bool(self._ids_increasing) and self._base is not None
                                      and self._base[1] == len(ids_))
        return self._rows.rows(_as_ids(ids))

    def row_of(self, item_id) -> int:
        return int(self.rows_of([item_id])[0])

    def sid_of(self, item_id) -> list[int]:
        r = self.row_of(item_id)
        if r < 0:
            raise InputError(f"item {item_id!r} is not in the index; add it first by a cold start (assign, then save the index)")
        return self.sids[r].tolist()

    def item_of(self, sid: str | Sequence[int]):
        """Item id of a full SID (string or codes), or None."""
        codes = parse_sid_string(sid) if isinstance(sid, str) else list(sid)
        r = self.live.item_row(codes)
        return None if r < 0 else self.item_ids[r]

    def allowed_next(self, prefix: str | Sequence[int]) -> list[str]:
        """Tokens that may follow ``prefix`` (a SID prefix string or codes)."""
        codes = _prefix_codes(prefix)
        return [level_token(len(codes), int(c)) for c in self.live.allowed_next(codes)]

    def count_under(self, prefix: str | Sequence[int]) -> int:
        return self.live.count_under(_prefix_codes(prefix))

    def items_under(self, prefix: str | Sequence[int]) -> np.ndarray:
        return self.item_ids[self.live.rows_under(_prefix_codes(prefix))]

    def rows_under(self, prefix: Sequence[int], *, limit: int | None = None) -> np.ndarray:
        """Rows of the items whose SID starts with ``prefix``, in SID order (the first ``limit``)."""
        return self.live.rows_under(list(prefix), limit)

    def view(self) -> "IndexView":
        """The live SIDs as collision policies read them during cold start."""
        return self.live

    def sid_strings(self) -> list[str]:
        return [sid_string(r) for r in self.sids.tolist()]

    def check(self) -> None:
        """Raise if the index breaks its invariants (duplicate SIDs under a resolving policy, trie != SIDs)."""
        trie = SIDTrie.build(self.sids)
        resolves = self.policy_obj.resolves
        if resolves and trie.n_leaves != len(self):
            raise ArtifactError(f"index holds {len(self) - trie.n_leaves} duplicate SIDs under policy {self.policy}")
        if not np.array_equal(self.trie.leaf_sids(), np.unique(self.sids, axis=0).reshape(-1, self.sid_length)):
            raise ArtifactError("the trie does not hold exactly the index's SIDs; rerun `tokenizer-kit index`")
        if len(self.retired) and resolves:
            live = set(sid_keys(self.sids, self._key_sizes()).tolist())
            if live & set(sid_keys(self.retired, self._key_sizes()).tolist()):
                raise ArtifactError("a retired SID was given to a live item")

    def _key_sizes(self) -> list[int]:
        return self.policy_obj.key_sizes(self.codebook_sizes, self.sids, self.retired, self.suffix_size)

    # ---- cold start ----------------------------------------------------------------------------------
    def assign(self, tok, ids=None, x: np.ndarray | None = None, *, codes: np.ndarray | None = None, hashes: np.ndarray | None = None,
               lookups=None, replace: bool = False, config: IndexConfig | None = None, batch_size: int | None = None,
               progress: Progress | None = None) -> tuple["SIDIndex", list[dict[str, Any]], dict[str, Any]]:
        """Index new items without changing any existing SID.

        ``ids`` (m,) and raw embeddings ``x`` (m, d), or, for an index imported from another
        tool (``import_sid_index``), the items' ``codes`` (m, L) from that tool; or the codes a
        sharded ``assign`` computed with the embeddings' fingerprints ``hashes`` (m,) uint64
        (``embedding_hash``; no neighbours are listed then); or ``lookups``, the concatenated
        results of ``lookup_batch`` over the input's batches (what an engine maps; ``ids`` is
        then left out). Items already
        indexed with the same embedding (codes) keep their SID (idempotent); a known id with a
        different one raises unless ``replace`` (its old SID is retired, never reissued).
        Returns the new index (version + 1 if anything changed; ``save`` appends it as a
        segment), one lookup row per input item, and a summary. ``progress`` shows the encode
        and the neighbour search.
        """
        config = (config or IndexConfig(policy=self.policy)).validate()
        return cold_start(self, tok, ids, x, codes=codes, hashes=hashes, lookups=lookups, replace=replace, config=config,
                          batch_size=batch_size, progress=progress)

    # ---- interop --------------------------------------------------------------------------------------
    def to_lcrec(self) -> dict[str, list[str]]:
        """LC-Rec ``*.index.json`` content: item id -> ["<a_1>", "<b_2>", ...]."""
        return {str(i): [level_token(l, c) for l, c in enumerate(row)] for i, row in zip(self.item_ids.tolist(), self.sids.tolist())}

    def export_lcrec(self, path: str | os.PathLike) -> Path:
        from ..io import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(self.to_lcrec()).encode())
        return Path(path)

    @classmethod
    def from_lcrec(cls, path: str | os.PathLike) -> "SIDIndex":
        """An index over another tool's SIDs (policy ``none``: reported as they are, nothing resolved)."""
        from ..evaluation import collision_stats

        ids, sids = read_lcrec_index(path)
        sizes = (sids.max(0) + 1).tolist()
        idx = cls(item_ids=ids, sids=sids, raw_codes=sids, codebook_sizes=sizes, policy="none")
        t0 = time.perf_counter()
        trie = idx.trie
        st = collision_stats(sids)
        idx.stats = {
            "policy": "imported",
            "source": str(path),
            "n_items": len(idx),
            "sid_length": int(sids.shape[1]),
            "level_sizes": sizes,
            "collision_rate_sids": st["collision_rate"],
            "duplicate_sids": int(len(idx) - st["unique_sids"]),
            "largest_bucket": st["largest_bucket"],
            "trie_nodes": trie.n_nodes,
            "trie_bytes": trie.nbytes,
            "trie_build_seconds": time.perf_counter() - t0,
        }
        return idx


# index.safetensors: array -> (dtype kinds, width of a row); one row per base item, except retired SIDs
_INDEX_ARRAYS = {"raw_codes": ("iu", "levels"), "moved": ("ub", None), "emb_hash": ("u", None), "retired": ("iu", "sid_length")}
_KINDS = {"iu": "integers", "u": "unsigned integers", "ub": "booleans or uint8"}


def _check_index_arrays(arr: dict[str, np.ndarray], n: int, levels: int, sid_length: int) -> None:
    """index.safetensors holds every array with the dtype and shape its readers rely on (its
    checksum protects the bytes; a resealed file must still make sense)."""
    for name, (kinds, width) in _INDEX_ARRAYS.items():
        a = arr.get(name)
        if a is None:
            raise ArtifactError(f"index.safetensors lacks {name!r}; rerun `tokenizer-kit index`")
        w = {"levels": levels, "sid_length": sid_length}.get(width)
        if name == "retired":
            ok, want = a.size % sid_length == 0, f"(r, {sid_length})"
        else:
            ok = a.shape == ((n, w) if w else (n,))
            want = f"({n}, {w})" if w else f"({n},)"
        if a.dtype.kind not in kinds or not ok:
            raise ArtifactError(f"index.safetensors: {name!r} is {a.dtype} of shape {tuple(a.shape)}, expected {_KINDS[kinds]} of shape "
                                f"{want}; rerun `tokenizer-kit index`")


def _prefix_codes(prefix: str | Sequence[int]) -> list[int]:
    if isinstance(prefix, str):
        return [] if prefix.strip() == "" else parse_sid_string(prefix)
    return [int(c) for c in prefix]


class _Merged:
    """A per-row array of ``SIDIndex`` (item_ids, sids, ...), built on first use when the index
    is the deferred result of a cold-start round (``SIDIndex._after_round``)."""

    def __init__(self, name: str):
        self.key = f"_{name}_"

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        if self.key not in obj.__dict__:
            obj._materialize()
        return obj.__dict__[self.key]

    def __set__(self, obj, value):
        obj.__dict__[self.key] = value


_MERGED = ("item_ids", "sids", "raw_codes", "moved", "emb_hash")
for _name in _MERGED:  # after the dataclass is made: its __init__ keeps the defaults, assignments go through _Merged
    setattr(SIDIndex, _name, _Merged(_name))


def _same_dir(a, b) -> bool:
    try:
        return a is not None and b is not None and Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
