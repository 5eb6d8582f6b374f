"""Cold start: give new items SIDs with the frozen tokenizer, never changing an existing SID.

One round, in named steps: check the input, sort the items into known / replaced / new,
encode the ones to place, let the collision policy place them against the live and retired
SIDs, build the new index (replaced rows change in place, new rows are appended), and report
a lookup row per item (its SID, status and nearest indexed neighbours) and a summary.

The round splits in two at the placement. :func:`lookup_batch` is the per-batch part: it
reads only the frozen index and one batch of items (their fingerprints, which ones the index
knows, the codes of the others and their nearest indexed items under their code prefix), so
an engine may map it over batches anywhere; the local engine maps it in this process and
the ray engine on its workers (``engines._assign``). The placement that follows decides each
new item's SID in input order against everything placed before it, so it runs once, over the
concatenated batches (:func:`cold_start` with ``lookups``). Under the ``reassign`` policy an
item may move to another prefix, so its neighbours are found after the placement instead
(local engine only).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._progress import Progress, as_progress
from ..build import sid_string
from ..errors import InputError
from ._segments import Segment
from .policies import sid_keys

if TYPE_CHECKING:
    from ._index import IndexConfig, SIDIndex

__all__ = ["cold_start", "Round", "BatchLookup", "lookup_batch", "lookup_arrow"]

_ENCODE_BLOCK = 65536  # rows per progress step of the cold-start encode


@dataclass
class Round:
    """One cold-start round over m input items (arrays are (m,) unless noted)."""

    ids: np.ndarray
    hashes: np.ndarray  # embedding fingerprints
    rows: np.ndarray  # the item's row in the index, -1 if new
    known: np.ndarray  # indexed before
    differs: np.ndarray  # indexed before with another embedding (placed again with ``replace``)
    xp: np.ndarray | None = None  # (m, d) preprocessed vectors, when anything is placed
    codes: np.ndarray | None = None  # (m, L) quantizer codes of the placed items (0 elsewhere)
    sids: np.ndarray | None = None  # (m, S) every item's SID after the round
    collided: np.ndarray | None = None
    moved: np.ndarray | None = None

    @property
    def todo(self) -> np.ndarray:
        return (~self.known) | self.differs

    @property
    def new_rows(self) -> np.ndarray:
        """Input rows appended to the index."""
        return np.flatnonzero(~self.known)


@dataclass
class BatchLookup:
    """The per-batch part of a cold start over m items (what :func:`lookup_batch` returns)."""

    ids: np.ndarray  # (m,) int64 or str
    hashes: np.ndarray  # (m,) uint64 embedding fingerprints
    codes: np.ndarray  # (m, L) int64 quantizer codes of the items to place (0 for known items, same embedding)
    nearest: list[np.ndarray]  # per item: index rows of its nearest indexed items, nearest first

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def concat(cls, parts: "list[BatchLookup]", levels: int) -> "BatchLookup":
        from ._ids import concat_ids

        if not parts:
            return cls(np.empty(0, np.int64), np.empty(0, np.uint64), np.empty((0, levels), np.int64), [])
        return cls(concat_ids([p.ids for p in parts]), np.concatenate([p.hashes for p in parts]),
                   np.concatenate([p.codes for p in parts]), [r for p in parts for r in p.nearest])


def lookup_batch(index: "SIDIndex", tok, ids, x, *, config: "IndexConfig | None" = None, batch_size: int | None = None) -> BatchLookup:
    """The per-batch part of a cold start of ``ids`` (b,) with raw embeddings ``x`` (b, d)
    against the frozen ``index``: pure in (index, tokenizer, batch), so its result does not
    depend on where the batch runs or how the input was cut into batches.

    Known items with the same embedding are not encoded (their SID is the index's); known
    items with another embedding are encoded as if replaced (whether that is allowed is
    decided once, by the round). Neighbours are searched under the item's code prefix, which
    is its SID prefix under every policy that keeps codes (``suffix``, ``none``).
    """
    from ._index import IndexConfig

    if index.policy_obj.needs_vectors:
        raise InputError(f"cold start under the {index.policy} policy places items before it finds their neighbours; "
                         "use the local engine")
    config = (config or IndexConfig(policy=index.policy)).validate()
    ids, x = _check_input(ids, x, None, index.codebook_sizes)
    if len(x):
        tok.preprocess(x[:1], what="new items")  # a wrong dimension is named before the ids are compared
    return _lookup(index, tok, ids, x, config, batch_size)


def _lookup(index: "SIDIndex", tok, ids: np.ndarray, x: np.ndarray, config: "IndexConfig", batch_size: int | None) -> BatchLookup:
    rnd, rows = lookup_round(index, tok, ids, x, config, batch_size)
    return BatchLookup(ids=rnd.ids, hashes=rnd.hashes, codes=rnd.codes, nearest=rows)


def lookup_round(index: "SIDIndex", tok, ids: np.ndarray, x: np.ndarray, config: "IndexConfig",
                 batch_size: int | None, *, nearest: bool = True) -> tuple[Round, list[np.ndarray]]:
    """:func:`lookup_batch` on checked input, with the batch's classification (rows, known,
    differs) and preprocessed vectors kept: the streaming assign writes the known items' SIDs
    from it, and searches the neighbours later, over all batches at once (``nearest=False``)."""
    rnd = _classify(index, ids, x, replace=True)
    _encode(rnd, tok, x, None, index.levels, batch_size)
    if not nearest:
        return rnd, []
    return rnd, nearest_of(index, tok, rnd, config)


def nearest_of(index: "SIDIndex", tok, rnd: Round, config: "IndexConfig") -> list[np.ndarray]:
    """Nearest index rows of the round's items to place, under their code prefix (the items
    of one prefix are ranked together: the result of an item does not depend on the others)."""
    return _nearest(index, tok, rnd, config, rnd.codes[:, : max(index.levels - 1, 0)])


def _check_input(ids, x, codes, sizes) -> tuple[np.ndarray, np.ndarray]:
    """Ids (m,) and what fingerprints each item: its embedding (m, d), or its given codes (m, L)."""
    from ._index import _as_ids

    ids = _as_ids(ids)
    if (x is None) == (codes is None):
        raise InputError("give the new items either their embeddings (x) or, for an imported index, their codes (codes)")
    if codes is not None:
        x = _check_codes(codes, sizes, len(ids)).astype(np.float32)  # the codes are the items' fingerprint
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] != len(ids):
        raise InputError(f"{len(ids)} item ids but embeddings of shape {x.shape}")
    seen: set[str] = set()
    for i in ids.tolist():
        if str(i) in seen:
            raise InputError(f"item {i!r} appears twice in the new items; give each item one row")
        seen.add(str(i))
    return ids, x


def _check_codes(codes, sizes, m: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu" or codes.shape != (m, len(sizes)):
        raise InputError(f"codes: expected integers of shape ({m}, {len(sizes)}), got {codes.dtype} of shape {codes.shape}")
    for l, k in enumerate(sizes):
        if m and (codes[:, l].min() < 0 or codes[:, l].max() >= k):
            raise InputError(f"codes: level {l} holds codes outside [0, {k}) (the index's codebook_sizes); "
                             "import the index again with larger codebook_sizes")
    return codes.astype(np.int64)


def _classify(index: "SIDIndex", ids: np.ndarray, x: np.ndarray | None, replace: bool, hashes: np.ndarray | None = None) -> Round:
    """Known items with the same embedding keep their SID; with another one they need ``replace``."""
    from ._index import embedding_hash

    hashes = embedding_hash(x) if hashes is None else np.asarray(hashes, np.uint64)
    rows = index.rows_of(ids)
    known = rows >= 0
    old_hash = index.emb_hash[np.maximum(rows, 0)] if len(index) else np.zeros(len(ids), np.uint64)
    differs = known & (old_hash != 0) & (old_hash != hashes)
    if differs.any() and not replace:
        first = ids[np.flatnonzero(differs)[0]]
        raise InputError(
            f"{int(differs.sum())} known items come with a different embedding (first {first!r}); "
            "set `replace` to retire their SIDs and give them new ones, or drop them"
        )
    return Round(ids=ids, hashes=hashes, rows=rows, known=known, differs=differs)


def _encode(rnd: Round, tok, x: np.ndarray, codes, levels: int, batch_size: int | None, progress: Progress | None = None) -> None:
    """Codes of the items to place: the frozen quantizer's, or the ones given (an imported index,
    whose items all decode to one point: its policies take the first free SID). Encoded in
    blocks of ``_ENCODE_BLOCK`` rows (the codes do not depend on the block size)."""
    todo = rnd.todo
    rnd.codes = np.zeros((len(rnd.ids), levels), np.int64)
    if not todo.any():
        return
    if codes is not None:
        rnd.codes[todo] = np.asarray(codes, np.int64)[todo]
        rnd.xp = np.zeros((len(rnd.ids), tok.decode(rnd.codes[:1]).shape[1]), np.float32)
        return
    rnd.xp = tok.preprocess(x, what="new items")
    rows = np.flatnonzero(todo)
    with as_progress(progress).task("encode", total=len(rows), unit="item") as task:
        for s in range(0, len(rows), _ENCODE_BLOCK):
            r = rows[s : s + _ENCODE_BLOCK]
            rnd.codes[r] = np.asarray(tok.quantizer.encode(rnd.xp[r], batch_size=batch_size), np.int64)
            task.advance(len(r))


def _place(rnd: Round, index: "SIDIndex", tok, retired: np.ndarray) -> None:
    """Known items keep their SID; the policy places the others in input order."""
    m = len(rnd.ids)
    rnd.sids = np.zeros((m, index.sid_length), np.int64)
    rnd.collided = np.zeros(m, bool)
    rnd.moved = np.zeros(m, bool)
    keep = rnd.known & ~rnd.differs
    rnd.sids[keep] = index.sids[rnd.rows[keep]]
    t = np.flatnonzero(rnd.todo)
    if len(t):
        p = index.policy_obj.place_new(
            rnd.codes[t], view=index.view(), retired=retired, sizes=index.codebook_sizes,
            x=None if rnd.xp is None else rnd.xp[t], decode=tok.decode,
        )
        rnd.sids[t], rnd.collided[t], rnd.moved[t] = p.sids, p.collided, p.moved


def _segment(index: "SIDIndex", rnd: Round, fill: np.ndarray, version: int) -> Segment:
    """The round as a segment: new items appended, replaced and newly pinned rows updated."""
    new = rnd.new_rows
    upd = np.flatnonzero(rnd.differs | fill)  # input rows that update an indexed row
    rows = rnd.rows[upd]
    pinned = fill[upd]  # same SID, first embedding seen
    sids = np.where(pinned[:, None], index.sids[rows], rnd.sids[upd])
    raw = np.where(pinned[:, None], index.raw_codes[rows], rnd.codes[upd])
    moved = np.where(pinned, index.moved[rows], rnd.moved[upd])
    return Segment(
        version=version,
        item_ids=rnd.ids[new],
        sids=np.concatenate([rnd.sids[new], sids]),
        raw_codes=np.concatenate([rnd.codes[new], raw]),
        moved=np.concatenate([rnd.moved[new], moved]),
        emb_hash=np.concatenate([rnd.hashes[new], rnd.hashes[upd]]),
        rows=rows,
        retired=index.sids[rnd.rows[rnd.differs]],
    )


def _updated_index(index: "SIDIndex", seg: Segment, retired: np.ndarray, suffix_size: int) -> "SIDIndex":
    """The index after the round (replaced rows change in place, new rows are appended; merged
    on first use), with the round pending as a segment; the stored base trie is kept, the
    base rows updated leave it for the overlay."""
    from ._index import SIDIndex

    new = SIDIndex._after_round(
        index, seg, codebook_sizes=index.codebook_sizes, policy=index.policy, version=seg.version, suffix_size=suffix_size,
        retired=retired, stats=dict(index.stats), history=list(index.history), segments=list(index.segments),
        pending=list(index.pending) + [seg], _ids_increasing=index._ids_increasing,
    )
    live = index.live
    trie, n_base, dead, dead_sids = live.base, live.n_base, live.dead, live.dead_sids
    fresh = np.setdiff1d(seg.rows[seg.rows < n_base], dead)
    if len(fresh):
        dead_sids = np.concatenate([dead_sids, index.sids[fresh]])
        dead = np.concatenate([dead, fresh])
        order = np.argsort(dead, kind="stable")
        dead, dead_sids = dead[order], dead_sids[order]
    new._base = (trie, n_base, dead, dead_sids)
    new._origin = index._origin
    return new


_NO_ROWS = np.empty(0, np.int64)


def _nearest(index: "SIDIndex", tok, rnd: Round, config: "IndexConfig", prefixes: np.ndarray,
             progress: Progress | None = None) -> list[np.ndarray]:
    """Index rows of up to k indexed items under each placed item's prefix (``prefixes``
    (m, L-1): the first L-1 levels of its SID), nearest first.

    Items sharing a prefix share its candidates, and each distinct candidate code row is
    decoded once (a prefix holds at most K distinct code rows, however many items).
    """
    res: list[np.ndarray] = [_NO_ROWS] * len(rnd.ids)
    if config.nearest_k == 0 or not len(index) or rnd.xp is None:  # no vectors (codes encoded elsewhere): no neighbours
        return res
    todo = np.flatnonzero(rnd.todo)
    groups: dict[tuple, list[int]] = {}
    for i in todo.tolist():
        groups.setdefault(tuple(prefixes[i].tolist()), []).append(i)
    with as_progress(progress).task("nearest items", total=len(todo), unit="item") as task:
        for prefix, items in groups.items():
            _nearest_under(index, tok, rnd, config, prefix, items, res)
            task.advance(len(items))
    return res


def _nearest_under(index: "SIDIndex", tok, rnd: Round, config: "IndexConfig", prefix: tuple, items: list[int],
                   res: list[np.ndarray]) -> None:
    """The nearest indexed items of ``items`` (which share ``prefix``), into ``res``: distances
    to each distinct code row under the prefix, ranked per block of items by (distance, SID
    order), an item's own row (a replaced item) left out."""
    keeps = index.policy_obj.keeps_codes  # the candidates' codes are their SIDs' first levels: read by trie position
    cand, sids = index.live.rows_sids_under(list(prefix), config.nearest_candidates, sids=keeps)
    if not len(cand):
        return
    raw = sids[:, : index.levels] if keeps else np.asarray(index.raw_codes[cand], np.int64)
    uniq, inv = _unique_rows(raw, index.codebook_sizes)
    recon = tok.decode(uniq)  # [u, d]
    # candidates in SID order hold each distinct code row as one run, the runs in row order
    runs = np.bincount(inv, minlength=len(uniq)) if bool((np.diff(inv) >= 0).all()) else None
    step = max(1, (1 << 22) // max(1, recon.size))  # items per block: [block, u, d] stays ~16 MB
    k = config.nearest_k
    for s in range(0, len(items), step):
        block = np.asarray(items[s : s + step])
        du = ((recon[None, :, :] - rnd.xp[block][:, None, :]) ** 2).sum(2)  # [block, u]
        slow = rnd.rows[block] >= 0  # an indexed item (replaced) may be among the candidates: its own row is left out
        if runs is None:
            slow[:] = True
        elif slow.any():
            slow[slow] = np.isin(rnd.rows[block][slow], cand)
        order = np.empty((len(block), min(k, len(cand))), np.int64)
        n_ok = np.full(len(block), order.shape[1], np.int64)
        if not slow.all():
            order[~slow] = _run_top(du[~slow], runs, k)
        if slow.any():
            dist = du[slow][:, inv]  # [slow, cand]
            own = cand[None, :] == rnd.rows[block[slow]][:, None]  # a replaced item is not its own neighbour
            dist[own] = np.inf
            order[slow] = _stable_top(dist, k)  # own row (inf) last, ties by SID order
            n_ok[slow] = np.minimum((~own).sum(1), k)
        rows = cand[order]
        for j, i in enumerate(block.tolist()):
            res[i] = np.asarray(rows[j, : n_ok[j]], np.int64)


def _run_top(du: np.ndarray, runs: np.ndarray, k: int) -> np.ndarray:
    """The first ``min(k, candidates)`` candidates (positions) of each row of ``du`` (b, u) in
    the stable order of their distances, when distinct code row j's candidates are the run of
    ``runs[j]`` consecutive positions after rows 0..j-1's: ranking the rows by (distance, j)
    and reading their runs in that order gives the candidates by (distance, position), as a
    stable argsort over the candidates would, without expanding the distances to every one."""
    n = int(runs.sum())
    k = min(k, n)
    top = _stable_top(du, k)  # k rows hold at least k candidates (each run has one)
    lens = runs[top]
    ends = np.cumsum(lens, axis=1)
    starts = (np.cumsum(runs) - runs)[top]
    q = np.arange(k)
    r = np.minimum((ends[:, None, :] <= q[None, :, None]).sum(2), top.shape[1] - 1)  # the run of output q
    return np.take_along_axis(starts, r, 1) + q - np.take_along_axis(ends - lens, r, 1)


def _stable_top(d: np.ndarray, k: int) -> np.ndarray:
    """``np.argsort(d, axis=1, kind="stable")[:, :k]`` without sorting whole rows: per row the
    elements below its k-th smallest value, then the ones equal to it in column order until
    there are k, ordered by (value, column). The same columns in the same order, in O(columns)
    per row instead of O(columns log columns) (a prefix lists up to ``nearest_candidates``)."""
    b, n = d.shape
    if k <= 0:
        return np.empty((b, 0), np.intp)
    if k >= n or not b:
        return np.argsort(d, axis=1, kind="stable")[:, :k]
    kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]
    less, eq = d < kth, d == kth
    # the first (k - #less) of the values equal to the k-th smallest, in column order
    sel = less | (eq & (np.cumsum(eq, axis=1) <= k - less.sum(1, keepdims=True)))
    cols = np.nonzero(sel)[1].reshape(b, k)  # k per row, ascending
    return np.take_along_axis(cols, np.argsort(np.take_along_axis(d, cols, 1), axis=1, kind="stable"), 1)


def _unique_rows(raw: np.ndarray, sizes) -> tuple[np.ndarray, np.ndarray]:
    """Distinct code rows of ``raw`` (m, L) and each row's index into them (``np.unique(axis=0)``
    through one mixed-radix int64 key per row when the code space fits: several times faster)."""
    if float(np.prod([float(k) for k in sizes])) >= 2.0**62:
        uniq, inv = np.unique(raw, axis=0, return_inverse=True)
        return uniq, inv.ravel()
    _, first, inv = np.unique(sid_keys(raw, sizes), return_index=True, return_inverse=True)
    return raw[first], inv.ravel()


def _table(index: "SIDIndex", rnd: Round, nearest: list[np.ndarray]) -> list[dict[str, Any]]:
    status = np.where(~rnd.known, "new", np.where(rnd.differs, "replaced", "known"))
    item_ids = index.item_ids
    nearest = [[v.item() if hasattr(v, "item") else v for v in item_ids[r]] if len(r) else [] for r in nearest]
    return [
        {
            "item_id": rnd.ids[i].item() if hasattr(rnd.ids[i], "item") else rnd.ids[i],
            "sid": sid_string(rnd.sids[i].tolist()),
            "codes": rnd.sids[i].tolist(),
            "status": str(status[i]),
            "collided": bool(rnd.collided[i]),
            "moved": bool(rnd.moved[i]),
            "nearest": nearest[i],
        }
        for i in range(len(rnd.ids))
    ]


def _summary(index: "SIDIndex", new: "SIDIndex", rnd: Round, retired: np.ndarray) -> dict[str, Any]:
    return {
        "policy": index.policy,
        "items": int(len(rnd.ids)),
        "new": int((~rnd.known).sum()),
        "known": int((rnd.known & ~rnd.differs).sum()),
        "replaced": int(rnd.differs.sum()),
        "collided": int(rnd.collided.sum()),
        "moved": int(rnd.moved.sum()),
        "retired_total": int(len(retired)),
        "version_before": index.version,
        "version_after": new.version,
        "index_items": len(new),
        "suffix_vocab_grew": bool(new.suffix_size > index.suffix_size),
    }


def _id_type(ids: np.ndarray) -> str:
    return "int64" if ids.dtype.kind in "iu" else "string"


def _check_id_type(index: "SIDIndex", rnd: Round) -> None:
    """New items join the index only with ids of its type: appending string ids to an int64
    index (or the reverse) would turn every id of the index into a string."""
    new = ~rnd.known
    if not len(index) or not new.any() or _id_type(index.item_ids) == _id_type(rnd.ids):
        return
    first = rnd.ids[np.flatnonzero(new)[0]]
    want = "integer ids (an int64 item_id column)" if _id_type(index.item_ids) == "int64" else "string ids (a string item_id column)"
    raise InputError(f"the index's item ids are {_id_type(index.item_ids)} but the new items' ids are {_id_type(rnd.ids)} "
                     f"(first {first!r}); give the new items {want}, as the items it was built on")


def _encoded(index: "SIDIndex", ids, codes, hashes, replace: bool) -> Round:
    """A round over items a sharded ``assign`` already encoded: their codes (m, L) and
    embedding fingerprints (m,) stand in for the embeddings; nothing is encoded here."""
    from ._index import _as_ids

    ids = _as_ids(ids)
    codes = _check_codes(codes, index.codebook_sizes, len(ids))
    hashes = np.asarray(hashes)
    if hashes.shape != (len(ids),):
        raise InputError(f"{len(ids)} item ids but {hashes.shape} embedding fingerprints; give one per item")
    _check_input(ids, None, codes, index.codebook_sizes)  # duplicate ids
    rnd = _classify(index, ids, None, replace, hashes=hashes)
    rnd.codes = np.where(rnd.todo[:, None], codes, 0)
    return rnd


def _lookups(index: "SIDIndex", tok, ids: np.ndarray, x: np.ndarray, config: "IndexConfig", batch_size: int | None,
             progress: Progress | None) -> BatchLookup:
    """:func:`lookup_batch` mapped over the input in this process, block by block."""
    parts = []
    with as_progress(progress).task("encode and nearest items", total=len(ids), unit="item") as task:
        for s in range(0, len(ids), _ENCODE_BLOCK):
            parts.append(_lookup(index, tok, ids[s : s + _ENCODE_BLOCK], x[s : s + _ENCODE_BLOCK], config, batch_size))
            task.advance(len(parts[-1]))
    return BatchLookup.concat(parts, index.levels)


def cold_start(
    index: "SIDIndex", tok, ids, x, *, codes=None, hashes=None, lookups: BatchLookup | None = None, replace: bool,
    config: "IndexConfig", batch_size: int | None, progress: Progress | None = None,
) -> tuple["SIDIndex", list[dict[str, Any]], dict[str, Any]]:
    """See ``SIDIndex.assign``."""
    new, rnd, nearest, summary = cold_start_round(index, tok, ids, x, codes=codes, hashes=hashes, lookups=lookups, replace=replace,
                                                  config=config, batch_size=batch_size, progress=progress)
    return new, _table(index, rnd, nearest), summary


def cold_start_round(
    index: "SIDIndex", tok, ids, x, *, codes=None, hashes=None, lookups: BatchLookup | None = None, replace: bool,
    config: "IndexConfig", batch_size: int | None, progress: Progress | None = None,
) -> tuple["SIDIndex", Round, list[np.ndarray], dict[str, Any]]:
    """:func:`cold_start` up to its lookup rows: the new index, the placed round (each item's
    SID, status, collided, moved), each item's nearest index rows and the summary."""
    from ._index import _HISTORY_KEEP, _now

    nearest = None
    if lookups is None and hashes is None and codes is None and not index.policy_obj.needs_vectors:
        ids, x = _check_input(ids, x, None, index.codebook_sizes)
        if len(x):
            tok.preprocess(x[:1], what="new items")  # a wrong dimension is named before the ids are compared
        lookups = _lookups(index, tok, ids, x, config, batch_size, progress)
        x = None
    if lookups is not None:
        if x is not None or codes is not None or hashes is not None:
            raise InputError("the per-batch lookups stand for the items' embeddings, codes and fingerprints; give only them")
        ids, codes, hashes, nearest = lookups.ids, lookups.codes, lookups.hashes, lookups.nearest
    if hashes is not None:
        if codes is None or x is not None:
            raise InputError("embedding fingerprints (hashes) come with the items' codes, not with their embeddings")
        rnd = _encoded(index, ids, codes, hashes, replace)
        ids = rnd.ids
    else:
        ids, x = _check_input(ids, x, codes, index.codebook_sizes)
        if codes is None and len(x):
            tok.preprocess(x[:1], what="new items")  # a wrong dimension is named before the ids are compared
        rnd = _classify(index, ids, x, replace)
        _encode(rnd, tok, x, codes, index.levels, batch_size, progress)
    _check_id_type(index, rnd)
    retired = index.retired
    if rnd.differs.any():
        retired = np.concatenate([retired, index.sids[rnd.rows[rnd.differs]]])
    _place(rnd, index, tok, retired)
    fill = rnd.known & (index.emb_hash[np.maximum(rnd.rows, 0)] == 0) if len(index) else np.zeros(len(ids), bool)
    changed = bool(rnd.todo.any()) or bool(fill.any())
    if changed:
        suffix_size = index.policy_obj.grown_suffix_size(index.suffix_size, rnd.sids[rnd.todo])
        new = _updated_index(index, _segment(index, rnd, fill, index.version + 1), retired, suffix_size)
    else:
        new = index
    if nearest is None:  # placed first (reassign may move an item to another prefix), then searched
        nearest = _nearest(index, tok, rnd, config, rnd.sids[:, : max(index.levels - 1, 0)], progress)
    else:  # a replaced item's neighbours only count when it is replaced
        nearest = [r if t else _NO_ROWS for r, t in zip(nearest, rnd.todo.tolist())]
    summary = _summary(index, new, rnd, retired)
    if changed:
        event = {"version": new.version, "event": "assign", "at": _now(), "new": summary["new"], "replaced": summary["replaced"]}
        new.history = (new.history + [event])[-_HISTORY_KEEP:]
    return new, rnd, nearest, summary


def lookup_columns(sid_length: int) -> list[str]:
    """The columns of the cold start's lookup rows (``lookup_arrow``), in order."""
    return ["item_id", *(f"code_{lv}" for lv in range(sid_length)), "sid", "status", "collided", "moved", "nearest"]


def lookup_arrow(table: list[dict[str, Any]], sid_length: int, id_type=None):
    """The cold start's lookup rows as an Arrow table, the output of ``assign`` with an index
    on every engine: item_id, code_0.. (the SID's codes), sid, status, collided, moved,
    nearest (ids as strings). ``id_type``: the item_id column's Arrow type (default: int64
    when every id is an integer, else string)."""
    import pyarrow as pa

    ids = [r["item_id"] for r in table]
    if id_type is None:
        id_type = pa.int64() if ids and all(isinstance(i, (int, np.integer)) for i in ids) else pa.string()
    cols = {"item_id": pa.array(ids if pa.types.is_integer(id_type) else [str(i) for i in ids], id_type)}
    for lv in range(sid_length):
        cols[f"code_{lv}"] = pa.array([r["codes"][lv] for r in table], pa.int32())
    cols["sid"] = pa.array([r["sid"] for r in table], pa.string())
    cols["status"] = pa.array([r["status"] for r in table], pa.string())
    for k in ("collided", "moved"):
        cols[k] = pa.array([r[k] for r in table], pa.bool_())
    cols["nearest"] = pa.array([[str(v) for v in r["nearest"]] for r in table], pa.list_(pa.string()))
    return pa.table(cols)
