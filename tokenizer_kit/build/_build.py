"""``build(source, config)``: build a tokenizer from any source, in memory or streamed.

The route follows from the method (the class of ``config``) and the kind of ``source``:

* vectors in memory (an array or torch tensor (n, d), or :class:`~tokenizer_kit.io.Embeddings`):
  :meth:`SemanticTokenizer.build`, whatever the method;
* anything the streaming reader opens (a path or URI of ``.npy`` / Parquet / a saved HF
  dataset, a list of Parquet files, an :class:`~tokenizer_kit.io.EmbeddingSource`, an
  :class:`~tokenizer_kit.io.EmbeddingStream`), with a
  method that streams (``STREAMING_METHODS``: RQ-Kmeans): :func:`build_streaming`, in bounded
  memory, writing ``out`` as it encodes;
* a path, with a method that trains on the whole input (RQ-VAE): loaded into memory
  (:func:`~tokenizer_kit.io.load_embeddings`), then :meth:`SemanticTokenizer.build`;
* an ``EmbeddingStream``, with such a method: refused, naming the fix (pass the path).

The streaming build samples, trains and encodes as the in-memory build does, so both routes
give the same codes for the same input and seed.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np

from .._progress import Progress
from ..errors import InputError
from ..io import Embeddings, EmbeddingSource, EmbeddingStream, as_float32_vectors
from ._streaming import STREAMING_METHODS, build_streaming
from ._tokenizer import SemanticTokenizer, method_of

__all__ = ["build"]


def build(
    source,
    config: Any,
    *,
    out: str | os.PathLike | None = None,
    ids=None,
    normalize: bool = False,
    categories: Mapping[str, str | None] | None = None,
    fingerprints: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
    **open_kw: Any,
) -> SemanticTokenizer:
    """A tokenizer of the items of ``source``, quantized by the method of ``config`` (see the
    module doc for the route taken); codes only, no SID index (``SIDIndex.for_tokenizer``, or
    build-codebook, adds one).

    ``config``: a quantizer config (``RQKMeansConfig``, ``RQVAEConfig``, ...). ``out``: the
    tokenizer directory to write (required by the streaming route; the streamed tokenizer
    returned holds no SIDs in memory, load them with ``from_pretrained(out)``). ``ids``: the
    item ids of vectors in memory (default: row numbers); a path's ids come with it, or from
    ``ids_path``. ``categories`` maps ``str(item_id)`` to a top category (level-1 NMI).
    ``fingerprints``: ``tok.emb_hash`` (n,) uint64, each item's embedding fingerprint in the
    order of the tokenizer's items. ``open_kw``: how to read a path (``ids_path``,
    ``id_column``, ``vector_column``, ``split``, ``row_ids``; the fields of
    :class:`~tokenizer_kit.io.EmbeddingSource`, which can be passed as ``source`` instead).
    """
    method = method_of(config)
    kw = dict(out=out, normalize=normalize, categories=categories, fingerprints=fingerprints, overwrite=overwrite, progress=progress)
    if _in_memory(source):
        if open_kw:
            raise InputError(f"{sorted(open_kw)} say how to read a path; the vectors are already in memory, leave them out")
        return _build_in_memory(source, config, ids=ids, **kw)
    if ids is not None:
        raise InputError("`ids` goes with vectors in memory; a path's item ids come from the input itself or from `ids_path`")
    if method in STREAMING_METHODS:
        if out is None:
            raise InputError(f"a streaming build ({method}) writes the tokenizer directory as it goes; pass `out`")
        stream = source if isinstance(source, EmbeddingStream) else _source(source, open_kw).open()
        return build_streaming(stream, out, config=config, normalize=normalize, categories=categories, overwrite=overwrite,
                               progress=progress, fingerprints=fingerprints)
    if isinstance(source, EmbeddingStream):
        raise InputError(f"{source.source}: method {method!r} trains on the whole input in memory and cannot read a stream; "
                         "pass the path (or the vectors) instead")
    return _build_in_memory(_source(source, open_kw).load(), config, ids=None, **kw)


def _source(source, open_kw: dict[str, Any]) -> EmbeddingSource:
    """The input to read: ``source`` itself when it is an ``EmbeddingSource`` (then ``open_kw``
    is refused: the source already says how to read it), else the path read as ``open_kw`` says."""
    if isinstance(source, EmbeddingSource):
        if open_kw:
            raise InputError(f"{sorted(open_kw)} say how to read a path; the EmbeddingSource already says it, set them there")
        return source
    return EmbeddingSource(source, **open_kw)


def _in_memory(source) -> bool:
    return isinstance(source, (np.ndarray, Embeddings)) or hasattr(source, "detach")  # detach: a torch tensor


def _build_in_memory(x, config, *, ids, out, normalize: bool, categories, fingerprints: bool, overwrite: bool,
                     progress) -> SemanticTokenizer:
    """:meth:`SemanticTokenizer.build` (codes only), with the categories by item id, the
    fingerprints of the vectors as given, and the directory written when ``out`` is given."""
    if hasattr(x, "detach"):  # a torch tensor (bfloat16 welcome)
        x = as_float32_vectors(x, "embeddings")
    vectors = x.vectors if isinstance(x, Embeddings) else x
    cats = None
    if categories is not None:
        item_ids = ids if ids is not None else (x.ids if isinstance(x, Embeddings) else np.arange(len(vectors)))
        cats = [categories.get(str(i)) for i in np.asarray(item_ids).tolist()]
    tok = SemanticTokenizer.build(x, ids=ids, config=config, normalize=normalize, categories=cats, progress=progress, index=False)
    if fingerprints:
        from ..io import embedding_hash

        tok.emb_hash = embedding_hash(vectors)
    if out is not None:
        tok.save_pretrained(out, overwrite=overwrite)
    return tok
