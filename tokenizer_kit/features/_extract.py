"""Catalogue -> token feature store: text fields and images through an encoder, resumably.

Per item, the tokens of its image fields (each image: CLS then patches) and then of its
text fields are concatenated in the order of ``image_fields + text_fields``; each token
carries a segment id (index into the manifest's ``segments``: which field it came from).

Items are processed in catalogue order in shards of ``shard_size`` rows. Each shard is
written whole (see ``FeatureStoreWriter``) with the number of catalogue rows it covers, so
a killed run resumes at the first row no complete shard covers; a store made with another
config (or from another catalogue) is refused. Images that are missing or fail to decode
are skipped with a per-item record (``strict`` raises instead).

Every catalogue item gets a SID, or a named reason: an item with no content in any field
(empty or missing text, no image that loads) is counted and named (a WARNING with the count
and the first ids, the store manifest's ``empty_items``, the result) and handled by
``empty_items``: ``"embed"`` (default) encodes the empty text in its place (the encoder's
special tokens only, under the first text field's segment), so the item keeps its row and
gets a SID downstream; ``"skip"`` leaves it out of the store (recorded); ``"fail"`` refuses
the catalogue before any model loads.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np

from .._config import ValidatedConfig, config_error, setting
from .._progress import Progress, ProgressTask, as_progress
from ..errors import InputError
from ._store import FeatureStoreWriter

__all__ = ["ExtractConfig", "ExtractResult", "extract_features", "empty_items_summary", "prepare_store"]

logger = logging.getLogger(__name__)

BACKENDS = ("open_clip", "hf")
EMPTY_ITEMS = ("embed", "skip", "fail")
_SHOW_IDS = 20  # ids of items without content named in the manifest and the result


@dataclass
class ExtractConfig(ValidatedConfig):
    """What to extract and how. ``validate()`` reports every problem at once.

    backend: ``open_clip`` or ``hf`` (transformers). model: open_clip model name or config
    JSON; for ``hf`` a model directory (default: the offline all-MiniLM-L6-v2).
    max_tokens_per_field: cap on each text field's tokens. max_tokens: cap on an item's
    tokens after concatenation (None: no cap). image_pool: average-pool each image's patch
    grid to ``image_pool x image_pool`` (CLS kept). layer: hidden-state index (hf only;
    None: last layer).
    """

    label: ClassVar[str] = "extract"
    error_type: ClassVar[type[InputError]] = InputError

    backend: str = setting("hf", help="open_clip or hf (transformers).", choices=BACKENDS)
    model: str | None = setting(None, help="open_clip model name or config JSON, or a transformers model dir (hf default: offline all-MiniLM-L6-v2).")
    pretrained: str | None = setting(None, help="open_clip weights: a local checkpoint or a tag (downloads only where the machine can).")
    random_init: bool = setting(False, help="open_clip with random weights (tests, throughput): the features are random.")
    text_fields: tuple[str, ...] = setting(("title", "caption", "tags", "ocr", "asr"), help="Text columns, in order.")
    image_fields: tuple[str, ...] = setting((), help="Image columns (paths or bytes, one or many per item).")
    max_tokens_per_field: int = setting(64, help="Cap on each text field's tokens.", bounds=(1, None))
    max_tokens: int | None = setting(None, help="Cap on an item's tokens after concatenation (truncate; none: no cap).", bounds=(1, None))
    image_pool: int | None = setting(None, help="Average-pool each image's patch grid to N x N (CLS kept).", bounds=(1, None))
    layer: int | None = setting(None, help="hf: hidden-state index to keep (default: the last layer).")
    batch_size: int = setting(32, help="Items per forward batch.", bounds=(1, None))
    shard_size: int = setting(4096, help="Items per store shard (the resume unit).", bounds=(1, None))
    num_workers: int = setting(2, help="DataLoader workers decoding images (0: in process; unused without image fields).", bounds=(0, None))
    strict: bool = setting(False, help="Fail on a missing or corrupt image instead of skipping it.")
    device: str = setting("cpu", help="torch device, e.g. cpu or cuda.")
    seed: int = setting(0, help="Seed (random-init weights).", bounds=(0, 2**30))
    bf16: bool = setting(False, help="Run the encoder under bf16 autocast where the device computes bf16 natively (CUDA, CPUs "
                         "with AVX512-BF16 or AMX; float32 elsewhere): faster, with token vectors close to float32's but not "
                         "bit-identical.")
    cpu_threads: int = setting(0, help="torch CPU threads while encoding on CPU (0: leave torch's setting).", bounds=(0, None))
    empty_items: str = setting("embed", choices=EMPTY_ITEMS, help="Items with no content in any field: embed the empty "
                               "text in their place (every item keeps its row and gets a SID), skip them (recorded), or "
                               "fail. Each run names their count and first ids.")

    def __post_init__(self):
        self.text_fields = tuple(self.text_fields)
        self.image_fields = tuple(self.image_fields)

    def errors(self) -> list[str]:
        e = []
        if not self.text_fields and not self.image_fields:
            e.append("give at least one field: set text_fields and/or image_fields")
        both = sorted(set(self.text_fields) & set(self.image_fields))
        if both:
            e.append(f"field(s) {both} are listed as both text and image fields")
        for name, fs in (("text", self.text_fields), ("image", self.image_fields)):
            if len(set(fs)) != len(fs):
                e.append(f"duplicate {name} field in {list(fs)}")
        if self.backend == "open_clip":
            if self.random_init and self.pretrained:
                e.append("set either pretrained or random_init, not both")
            if not self.random_init and not self.pretrained:
                e.append("open_clip needs weights: set pretrained to a checkpoint or tag (or random_init for tests)")
            if self.layer is not None:
                e.append("layer applies to the hf backend only; unset it for open_clip")
        if self.backend == "hf":
            if self.pretrained:
                e.append("pretrained applies to open_clip; for hf set model to the model directory")
            if self.random_init:
                e.append("random_init applies to open_clip only; unset it for hf")
        return e

    def store_config(self) -> dict[str, Any]:
        """The part that defines the store's content (a resume must match it exactly)."""
        keys = ("backend", "model", "pretrained", "random_init", "text_fields", "image_fields",
                "max_tokens_per_field", "max_tokens", "image_pool", "layer", "seed")
        d = {k: getattr(self, k) for k in keys}
        if self.backend == "open_clip" and not self.model:
            d["model"] = "ViT-B-32"  # the backend's default; hf's None means the offline MiniLM
        d["text_fields"] = list(self.text_fields)
        d["image_fields"] = list(self.image_fields)
        if self.bf16:  # only when set: stores written before the setting existed still resume
            d["bf16"] = True
        if self.empty_items != "skip":  # "skip" is what stores written before the setting did
            d["empty_items"] = self.empty_items
        return d


@dataclass
class ExtractResult:
    path: Path
    n_rows: int
    n_items: int
    n_tokens: int
    dim: int
    n_image_errors: int
    n_skipped_items: int
    rows_resumed: int
    rows_this_run: int
    seconds: float
    items_per_s: float
    tokens_per_s: float
    random_init: bool
    errors: list[dict] = field(default_factory=list)
    empty_items: str = "skip"  # how items without content were handled (embed, skip)
    n_empty_items: int = 0  # items without content (embedded or skipped)
    empty_item_ids: list[str] = field(default_factory=list)  # the first of them

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["errors"] = self.errors[:20]
        return d


def empty_items_summary(manifest: dict[str, Any]) -> dict[str, Any]:
    """``ExtractResult`` fields on items without content, from a finished store's manifest."""
    e = manifest.get("empty_items") or {}
    return {"empty_items": str(e.get("policy", "skip")), "n_empty_items": int(e.get("n", manifest.get("n_skipped_items", 0))),
            "empty_item_ids": list(e.get("first_ids", []))}


def _text_value(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        v = ", ".join(str(x) for x in v if x is not None)
    s = str(v).strip()
    return s or None


def catalog_record(table, item_ids: Sequence[str]) -> dict:
    """The store config's ``catalog`` entry: rows, ids' fingerprint and, for integer ids, their
    type (so embeddings made from the store write int64 ids, as the catalogue has them)."""
    import pyarrow as pa

    rec = {"n_rows": len(item_ids), "item_ids_sha256": _catalog_fingerprint(item_ids)}
    if pa.types.is_integer(table.column("item_id").type):
        rec["id_type"] = "int64"
    return rec


def _catalog_fingerprint(item_ids: Sequence[str]) -> str:
    h = hashlib.sha256()
    for i in item_ids:
        h.update(str(i).encode())
        h.update(b"\n")
    return h.hexdigest()


@contextlib.contextmanager
def _compute(config: ExtractConfig) -> Iterator[None]:
    """The encoder's CPU threads and, with ``bf16``, bf16 autocast where the device has it natively."""
    import torch

    from .._torch_utils import cpu_threads, native_bf16, resolve_device

    dev = resolve_device(config.device)
    with cpu_threads(config.cpu_threads, dev), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.bf16 and native_bf16(dev)):
        yield


def _rows_done(writer: FeatureStoreWriter) -> int:
    return sum(int(writer.shard_extra(name).get("n_rows", 0)) for name in writer.manifest["shards"])


def prepare_store(catalog, out, config: ExtractConfig, *, base_dir=None, overwrite: bool = False):
    """The catalogue (table, image base directory, item ids) and the store config it gives,
    with the output store checked (:meth:`FeatureStoreWriter.preflight`) before any model loads."""
    config.validate()
    table, base = _open_catalog(catalog, base_dir, config)
    item_ids = [str(i) for i in table.column("item_id").to_pylist()]
    _report_empty(table, item_ids, config)
    store_cfg = config.store_config()
    store_cfg["catalog"] = catalog_record(table, item_ids)
    FeatureStoreWriter.preflight(out, store_cfg, overwrite=overwrite)
    if config.random_init:
        logger.warning("open_clip %s runs with random weights: the features are random (no CLIP weights ship offline)", config.model)
    return table, base, item_ids, store_cfg


def extract_features(
    catalog,
    out: str | os.PathLike,
    config: ExtractConfig,
    *,
    overwrite: bool = False,
    base_dir: str | os.PathLike | None = None,
    progress: Progress | None = None,
    backend=None,
) -> ExtractResult:
    """Extract token features of every item of ``catalog`` into the store at ``out``.

    ``catalog``: a path (anything ``read_catalog`` reads) or a ``pyarrow.Table`` with
    ``item_id``. ``base_dir``: where relative image paths start (default: the catalogue's
    directory). ``progress`` gets one task over the catalogue's rows, advanced per batch.
    Resumes an unfinished store at ``out`` made with the same config.

    Steps: :func:`_open_catalog`, the backend and :class:`FeatureStoreWriter` (which refuses
    a store of another config), :func:`_encode_shard` per shard not yet written, then
    :func:`_finish` (the manifest) and the result.
    """
    table, base, item_ids, store_cfg = prepare_store(catalog, out, config, base_dir=base_dir, overwrite=overwrite)
    n_rows = len(item_ids)
    if backend is None:
        from ._backends import build_backend

        backend = build_backend(config)
    segments = [*config.image_fields, *config.text_fields]
    # the writer holds the store's lock until the with block ends (finish, error or interrupt)
    with FeatureStoreWriter(out, dim=backend.dim, config=store_cfg, segments=segments, overwrite=overwrite) as writer:
        start_row = _rows_done(writer)
        if start_row:
            logger.info("resuming %s at row %d of %d (%d complete shards)", out, start_row, n_rows, len(writer.manifest["shards"]))

        t0 = time.perf_counter()
        n_tokens_run = 0
        seg_id = {f: i for i, f in enumerate(segments)}
        with as_progress(progress).task("extract", total=n_rows, unit="item", completed=start_row) as task, _compute(config):
            for s in range(start_row, n_rows, config.shard_size):
                rows = table.slice(s, min(config.shard_size, n_rows - s)).select(segments).to_pylist()
                ids, toks, segs, errors, skipped, embedded = _encode_shard(rows, item_ids[s : s + len(rows)], config, backend, seg_id, base, task)
                writer.write_shard(ids, toks, segs, extra={"n_rows": len(rows), "first_row": s, "errors": errors, "skipped": skipped,
                                                           "embedded_empty": embedded})
                n_tokens_run += int(sum(len(t) for t in toks))
        seconds = time.perf_counter() - t0

        all_errors, n_skipped = _finish(writer, config, backend)
        m = writer.manifest
    return ExtractResult(**empty_items_summary(m),
        path=Path(out),
        n_rows=n_rows,
        n_items=int(m["n_items"]),
        n_tokens=int(m["n_tokens"]),
        dim=int(backend.dim),
        n_image_errors=len(all_errors),
        n_skipped_items=n_skipped,
        rows_resumed=start_row,
        rows_this_run=n_rows - start_row,
        seconds=seconds,
        items_per_s=(n_rows - start_row) / seconds if seconds > 0 else 0.0,
        tokens_per_s=n_tokens_run / seconds if seconds > 0 else 0.0,
        random_init=bool(config.random_init),
        errors=all_errors,
    )


def _open_catalog(catalog, base_dir, config: ExtractConfig):
    """The catalogue as a Table and the directory relative image paths start from; every
    field the config names must be a column."""
    from ..io import read_catalog

    if isinstance(catalog, (str, os.PathLike)):
        if base_dir is None:
            base_dir = Path(catalog).parent
        table = read_catalog(catalog, keep_id_type=True)
    else:
        table = catalog
    cols = set(table.column_names)
    absent = [f for f in (*config.text_fields, *config.image_fields) if f not in cols]
    if absent:
        raise InputError(f"catalogue has no column(s) {absent} (columns: {sorted(cols)}); fix `text_fields` / `image_fields`")
    return table, Path(base_dir) if base_dir is not None else None


def _has_content(col, *, image: bool) -> np.ndarray:
    """(n,) bool: cells of one catalogue column with something to encode. Strings and lists are
    checked in Arrow (a 10M-row catalogue in seconds); other types cell by cell."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    t = col.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        has = pc.utf8_length(col if image else pc.utf8_trim_whitespace(col))
    elif image and (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        has = pc.binary_length(col)
    elif image and (pa.types.is_list(t) or pa.types.is_large_list(t)):
        has = pc.list_value_length(col)
    elif image:
        return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), bool)
    else:
        return np.fromiter((_text_value(v) is not None for v in col.to_pylist()), bool, len(col))
    return np.asarray(pc.fill_null(pc.greater(has, 0), False).to_numpy(zero_copy_only=False), bool)


def _report_empty(table, item_ids: Sequence[str], config: ExtractConfig) -> None:
    """Name the items with no text and no image before any model loads: a WARNING with their
    count and first ids, or with ``empty_items="fail"`` an error. (An item whose images all
    fail to load is found while encoding, and handled the same way.)"""
    has = np.zeros(len(item_ids), bool)
    for f in config.text_fields:
        has |= _has_content(table.column(f), image=False)
    for f in config.image_fields:
        has |= _has_content(table.column(f), image=True)
    empty = np.flatnonzero(~has)
    if not len(empty):
        return
    first = [item_ids[k] for k in empty[:5]]
    what = f"{len(empty)} of {len(item_ids)} items have no content in any of the fields {[*config.image_fields, *config.text_fields]} (first: {', '.join(first)})"
    if config.empty_items == "fail":
        raise config_error(f"{what}; fill them, or set `empty_items` to embed (the empty text in their place) or skip (leave them out)",
                           "empty_items", error_type=InputError)
    how = "each gets the embedding of the empty text, so it keeps its row and gets a SID" if config.empty_items == "embed" else \
        "they are left out of the store and get no SID (set `empty_items` to embed to keep them)"
    logger.warning("%s: %s", what, how)


def _finish(writer: FeatureStoreWriter, config: ExtractConfig, backend) -> tuple[list[dict], int]:
    """Gather every shard's image errors and items without content, and write the final manifest
    (``empty_items``: the policy, how many, the first ids)."""
    all_errors, n_skipped = [], 0
    empty: list[str] = []
    n_empty = 0
    for name in writer.manifest["shards"]:
        extra = writer.shard_extra(name)
        all_errors.extend(extra.get("errors", []))
        n_skipped += len(extra.get("skipped", []))
        recs = [*extra.get("skipped", []), *extra.get("embedded_empty", [])]
        n_empty += len(recs)
        empty += [str(r.get("item_id")) for r in recs][: max(0, _SHOW_IDS - len(empty))]
    if n_empty:
        how = "embedded as the empty text" if config.empty_items == "embed" else "left out of the store"
        logger.info("%s: %d items without content %s (first: %s)", writer.target, n_empty, how, ", ".join(empty[:5]))
    writer.finish(
        backend_info=backend.describe(),
        random_init=bool(config.random_init),
        token_budget={
            "max_tokens_per_field": config.max_tokens_per_field,
            "max_tokens": config.max_tokens,
            "image_pool": config.image_pool,
        },
        n_image_errors=len(all_errors),
        n_skipped_items=n_skipped,
        empty_items={"policy": config.empty_items, "n": n_empty, "first_ids": empty},
    )
    return all_errors, n_skipped


def _batches(rows, order, config: ExtractConfig, backend, base: Path | None):
    """Yield lists of ``(k, images, errors)`` over ``order`` (indices into ``rows``);
    images are decoded in DataLoader workers."""
    if not config.image_fields:
        for s in range(0, len(order), config.batch_size):
            yield [(int(k), [], []) for k in order[s : s + config.batch_size]]
        return
    from torch.utils.data import DataLoader, Subset

    from ._images import ImageItems, collate_items

    ds = Subset(ImageItems(rows, fields=config.image_fields, transform=backend.image_transform, base_dir=base), [int(k) for k in order])
    yield from DataLoader(ds, batch_size=config.batch_size, shuffle=False, num_workers=config.num_workers, collate_fn=collate_items)


def _encode_shard(rows, ids, config: ExtractConfig, backend, seg_id, base, task: ProgressTask):
    import torch

    # length-sorted batches pad little; the order depends only on the shard's rows, so a
    # resumed run batches (and computes) exactly as an uninterrupted one
    text_len = [sum(len(_text_value(r.get(f)) or "") for f in config.text_fields) for r in rows]
    order = np.argsort(text_len, kind="stable")
    parts: dict[int, list[tuple[int, np.ndarray]]] = {k: [] for k in range(len(rows))}
    errors: list[dict] = []
    embedded: list[int] = []  # rows without content, given the empty text's tokens
    for batch in _batches(rows, order, config, backend, base):
        ks = [k for k, _, _ in batch]
        # images: one forward over every image of the batch, in sub-batches of batch_size
        flat = [(k, f, img) for k, imgs, _ in batch for f, _, img in imgs]
        for s in range(0, len(flat), config.batch_size):
            chunk = flat[s : s + config.batch_size]
            x = backend.encode_images(torch.stack([img for _, _, img in chunk]))  # [n, 1+P, d]
            for (k, f, _), t in zip(chunk, x):
                parts[k].append((seg_id[f], t))
        for k, _, errs in batch:
            for e in errs:
                if config.strict:
                    raise InputError(
                        f"item {ids[k]!r}: image {e['field']}[{e['index']}] {e['source']} failed ({e['error']}); "
                        "fix the catalogue, or unset `strict` to skip it"
                    )
                logger.warning("item %s: skipping image %s[%d]: %s", ids[k], e["field"], e["index"], e["error"])
                errors.append((k, {"item_id": ids[k], **e}))
        for f in config.text_fields:
            have = [(k, v) for k in ks if (v := _text_value(rows[k].get(f))) is not None]
            if not have:
                continue
            states = backend.encode_texts([v for _, v in have], config.max_tokens_per_field)
            for (k, _), t in zip(have, states):
                parts[k].append((seg_id[f], t))
        _empty_in_batch(ks, parts, ids, config, backend, seg_id, embedded)
        task.advance(len(ks))
    toks: list[np.ndarray] = []
    segs: list[np.ndarray] = []
    out_ids: list[str] = []
    skipped: list[dict] = []
    for k in range(len(rows)):  # catalogue order
        if not parts[k]:
            skipped.append({"item_id": ids[k], "error": "no content in any field"})
            continue
        # image fields then text fields, each in the order listed (parts arrive that way)
        t = np.concatenate([p for _, p in parts[k]]).astype(np.float16)
        sg = np.concatenate([np.full(len(p), sid, np.int16) for sid, p in parts[k]])
        if config.max_tokens is not None:
            t, sg = t[: config.max_tokens], sg[: config.max_tokens]
        out_ids.append(ids[k])
        toks.append(t)
        segs.append(sg)
    errors.sort(key=lambda ke: (ke[0], ke[1]["field"], ke[1]["index"]))
    return out_ids, toks, segs, [e for _, e in errors], skipped, [{"item_id": ids[k], "error": "no content in any field; embedded "
                                                                   "the empty text"} for k in sorted(embedded)]


def _empty_in_batch(ks, parts, ids, config: ExtractConfig, backend, seg_id, embedded: list[int]) -> None:
    """Items of one batch left without content (no text, no image that loaded), by
    ``empty_items``: embed the empty text in their place, raise, or leave them (skipped later)."""
    empty = [k for k in ks if not parts[k]]
    if not empty or config.empty_items == "skip":
        return
    if config.empty_items == "fail":
        raise InputError(f"item {ids[empty[0]]!r} has no content in any of the fields {[*config.image_fields, *config.text_fields]} "
                         f"(its images failed to load, or it has none); fix it, or set `empty_items` to embed or skip")
    seg = seg_id[(config.text_fields or config.image_fields)[0]]
    for k, t in zip(empty, backend.encode_texts([""] * len(empty), config.max_tokens_per_field)):
        parts[k].append((seg, t))
    embedded.extend(empty)
