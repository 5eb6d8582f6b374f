"""``SemanticTokenizer``: a quantizer + preprocessing + the catalogue's SIDs, as one artifact.

Directory layout (format version 2; ``build._artifact.TOKENIZER``)::

    manifest.json           manifest (``tokenizer.json`` before): format/package version, method, config, input dim,
                            preprocessing, codebook sizes, per-file sha256 and size, metrics,
                            sections, and the manifest's own checksum
    quantizer.safetensors   the quantizer's weights (codebooks, prices / network weights)
    sids.parquet            item_id, code_0..code_{L-1}, sid ("<a_3><b_4><c_1>"); an index built
                            with the ``suffix`` collision policy adds code_L (``<d_k>``)
    <name>.safetensors      attachments added by later stages (e.g. the indexer's trie)

``save_pretrained`` writes a staging directory and switches it in with one atomic step
under the directory's writer lock (``io.write_artifact``); ``from_pretrained`` checks the
manifest, every file's checksum and the content (finite codebooks, codes inside their
codebooks, one row per item) and refuses newer formats. Nothing is unpickled. Directories
written in format 1 still load.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .._progress import Progress
from ..errors import ArtifactError, InputError, TokenizerKitError
from ..io import (
    Embeddings,
    Manifest,
    as_float32_vectors,
    normalise_ids,
    read_artifact,
    read_manifest,
    validate_ids,
    validate_vectors,
    write_artifact,
)
from ..quantizers import get_config_class, get_quantizer_class, list_methods
from ._artifact import READ_IN_PART, TOKENIZER
from ._metrics import tokenizer_metrics

__all__ = [
    "SemanticTokenizer",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "level_token",
    "sid_string",
    "parse_sid_string",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = TOKENIZER.format_version
MANIFEST_NAME = TOKENIZER.manifest_name
WEIGHTS_NAME = "quantizer.safetensors"

# The SID index is the indexer's (``tokenizer_kit.indexer``, a layer above this module: it
# imports this one), so ``SemanticTokenizer.build`` reaches it through the builder the indexer
# registers when imported (``tokenizer_kit.SemanticTokenizer`` imports it): (tok, raw x (n, d)) -> None,
# attaching the default index to ``tok``.
_INDEX_BUILDER: Callable[["SemanticTokenizer", np.ndarray], None] | None = None


def register_index_builder(builder: Callable[["SemanticTokenizer", np.ndarray], None]) -> None:
    """Set what ``SemanticTokenizer.build(index=True)`` calls (the indexer, on import)."""
    global _INDEX_BUILDER
    _INDEX_BUILDER = builder
SIDS_NAME = "sids.parquet"
DEFAULT_METHOD = "rq-kmeans"


def method_of(config: Any) -> str:
    """The quantizer method whose config ``config`` is (``RQKMeansConfig`` -> ``rq-kmeans``)."""
    methods = list_methods()
    for method in methods:
        if isinstance(config, get_config_class(method)):
            return method
    raise InputError(f"config is a {type(config).__name__}, not the config of a quantizer method; pass the config of one of "
                     f"{methods} (RQKMeansConfig, RQVAEConfig, ...)")


def resolve_method(method: str | None, config: Any) -> str:
    """``method``, else the method of ``config``'s class, else rq-kmeans; a ``method`` and a
    ``config`` of another method are refused."""
    if config is None:
        return method or DEFAULT_METHOD
    own = method_of(config)
    if method is not None and method != own:
        raise InputError(f"method {method!r} does not match the config given ({type(config).__name__}, method {own!r}); "
                         "pass the config of that method, or leave `method` out")
    return own


def make_quantizer(method: str, config: Any = None, overrides: dict[str, Any] | None = None):
    """An unfitted quantizer of ``method`` from its typed ``config`` (None: the defaults) with
    ``overrides`` (config field names) on top; the whole config is validated here."""
    qcls = get_quantizer_class(method)
    overrides = overrides or {}
    return qcls(**overrides) if config is None else qcls(config=config, **overrides)


def level_token(level: int, code: int) -> str:
    """``<a_3>`` for level 0 code 3; levels beyond z continue as ``<l26_3>``."""
    prefix = chr(ord("a") + level) if level < 26 else f"l{level}"
    return f"<{prefix}_{int(code)}>"


def sid_string(codes: Sequence[int]) -> str:
    return "".join(level_token(l, c) for l, c in enumerate(codes))


_SID_TOKENS = re.compile(r"\s*<([^<>\s]*)>\s*")


def parse_sid_string(sid: str) -> list[int]:
    """``"<a_3><b_4><c_1>"`` -> [3, 4, 1]: one string of level tokens, levels in order a, b, c, ...

    The one accepted form is the tokens written one after another (as ``sid_string`` writes
    them and an LLM emits them); whitespace between tokens is ignored. Anything else (codes
    alone, other separators, a token out of level order) raises, naming the accepted form.
    """
    if not isinstance(sid, str):
        raise InputError(f"SID {sid!r} must be a string such as <a_3><b_4><c_1>")
    s = sid.strip()
    pos, toks = 0, []
    while pos < len(s):
        m = _SID_TOKENS.match(s, pos)
        if m is None:
            raise InputError(f"SID {sid[:60]!r} is not of the form <a_3><b_4><c_1> (level tokens one after another, "
                             f"unexpected {s[pos:pos + 12]!r} at character {pos})")
        toks.append(m.group(1))
        pos = m.end()
    if not toks:
        raise InputError(f"SID {sid!r} is not of the form <a_3><b_4><c_1> (no token)")
    out = []
    for level, tok in enumerate(toks):
        name, _, code = tok.rpartition("_")
        expect = level_token(level, 0)[1:].rpartition("_")[0]
        if name != expect or not (code.isascii() and code.isdigit()):
            raise InputError(f"SID {sid[:60]!r}: token {level} is <{tok}>, expected <{expect}_N> (the form is <a_3><b_4><c_1>)")
        if int(code) >= 2**63:
            raise InputError(f"SID {sid[:40]!r}: code {code[:24]} at level {level} is too large (codes are below 2^63)")
        out.append(int(code))
    return out


class SemanticTokenizer:
    """Maps item embeddings to semantic IDs and back; saves and loads as a directory.

    >>> tok = SemanticTokenizer.build(x, ids=ids, method="rq-kmeans", codebook_sizes=[256] * 3)
    >>> tok.save_pretrained("tok/")
    >>> tok = SemanticTokenizer.from_pretrained("tok/")
    >>> codes = tok.encode(x_new)          # (n, L) int64
    >>> tok.sid_strings(codes)[0]          # '<a_3><b_4><c_1>'
    """

    def __init__(
        self,
        quantizer,
        *,
        normalize: bool = False,
        item_ids: np.ndarray | None = None,
        codes: np.ndarray | None = None,
        metrics: dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ):
        self.quantizer = quantizer
        self.normalize = bool(normalize)
        self.item_ids = item_ids
        self.codes = codes
        # the indexer's disambiguation level (n,), or None: SIDs are then codes + [suffix]
        self.sid_suffix: np.ndarray | None = None
        self.metrics = metrics or {}
        self.info = info or {}
        # later stages add manifest sections (JSON) and weight files (safetensors) here
        self.sections: dict[str, Any] = {}
        self.attachments: dict[str, dict[str, np.ndarray]] = {}
        self.path: Path | None = None
        self._id_index: dict[str, int] | None = None

    # ---- properties ---------------------------------------------------------------------
    @property
    def method(self) -> str:
        return self.quantizer.method

    @property
    def codebook_sizes(self) -> list[int]:
        return list(self.quantizer.codebook_sizes)

    @property
    def levels(self) -> int:
        return len(self.codebook_sizes)

    @property
    def dim(self) -> int:
        return int(self.quantizer.dim)

    def __len__(self) -> int:
        return 0 if self.item_ids is None else len(self.item_ids)

    def __repr__(self) -> str:
        return (
            f"SemanticTokenizer(method={self.method!r}, codebook_sizes={self.codebook_sizes}, "
            f"dim={self.dim}, items={len(self)}, normalize={self.normalize})"
        )

    # ---- building -----------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        x: np.ndarray | Embeddings,
        *,
        ids: Sequence | np.ndarray | None = None,
        method: str | None = None,
        config: Any = None,
        normalize: bool = False,
        categories: Sequence[str | None] | None = None,
        progress: Progress | None = None,
        index: bool = True,
        **quantizer_config: Any,
    ) -> "SemanticTokenizer":
        """Fit a quantizer on ``x`` (n, d) and assign every item its codes.

        ``config``: the method's typed config (``RQKMeansConfig``, ``RQVAEConfig``, ...); its
        class names the method when ``method`` is left out (else rq-kmeans). ``quantizer_config``:
        settings of the method's config by field name (e.g. ``codebook_sizes``, ``balanced``,
        ``beam_size``, ``seed``, ``device`` for RQ-Kmeans), over ``config``'s or the defaults
        (every default, the seed included, is the config class's, as for ``build-codebook``).
        The whole config is validated before any compute. ``progress`` reaches the quantizer's ``fit`` where it takes one
        (RQ-VAE: one task over its epochs).

        ``index`` (default, as ``build-codebook``): also build the SID index under the default
        policy (``IndexConfig()``: suffix, one item per SID) with the items' embedding
        fingerprints, so ``sids`` are the indexed SIDs ``build-codebook`` writes for the same
        data and seed, and ``SIDIndex.from_tokenizer`` and ``save_pretrained`` carry the
        index. ``index=False`` (``build-codebook --no-index``): codes only.
        """
        if isinstance(progress, bool):  # RQ-VAE's former config flag of that name
            progress = None
        source = ""
        if isinstance(x, Embeddings):
            ids = x.ids if ids is None else ids
            source = x.source
            x = x.vectors
        quantizer = make_quantizer(resolve_method(method, config), config, quantizer_config)
        if not isinstance(x, np.ndarray) and hasattr(x, "detach"):  # a torch tensor (bfloat16 welcome)
            x = as_float32_vectors(x, source or "embeddings")
        validate_vectors(x, source or "embeddings")
        n = x.shape[0]
        ids_arr = np.arange(n, dtype=np.int64) if ids is None else normalise_ids(ids, source or "item ids")
        validate_ids(ids_arr, n, source or "embeddings")
        tok = cls(quantizer, normalize=normalize)
        xp = tok.preprocess(x, what=source or "embeddings")
        t0 = time.perf_counter()
        if progress is not None and "progress" in inspect.signature(quantizer.fit).parameters:
            quantizer.fit(xp, progress=progress)
        else:
            quantizer.fit(xp)
        fit_s = time.perf_counter() - t0
        codes = getattr(quantizer, "fit_codes_", None)
        beam = getattr(getattr(quantizer, "config", None), "beam_size", 1)
        t1 = time.perf_counter()
        if codes is None or beam != 1:
            codes = quantizer.encode(xp)
        enc_s = time.perf_counter() - t1
        tok.item_ids = ids_arr
        tok.codes = np.asarray(codes, dtype=np.int64)
        tok.metrics = tok.evaluate(xp, preprocessed=True, codes=tok.codes, categories=categories)
        if getattr(quantizer, "warn_balance", None) is not None and quantizer.config.balanced:
            counts = [np.bincount(tok.codes[:, l], minlength=k) for l, k in enumerate(quantizer.codebook_sizes)]
            tok.metrics["balance_misses"] = quantizer.warn_balance(counts)
        tok.info = {
            "source": str(source),
            "n_items": int(n),
            "fit_seconds": fit_s,
            "encode_seconds": enc_s,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if index:
            if _INDEX_BUILDER is None:
                raise TokenizerKitError("no SID indexer is registered (import tokenizer_kit.indexer), or build with index=False")
            _INDEX_BUILDER(tok, x)
        return tok

    # ---- encode / decode ----------------------------------------------------------------
    def preprocess(self, x: np.ndarray, *, what: str = "input", batch: int = 65536) -> np.ndarray:
        """float32, C-contiguous, L2-normalised rows when the tokenizer normalises."""
        if not isinstance(x, np.ndarray) or x.ndim != 2:
            raise InputError(f"{what}: expected an array of shape (n, d), got {getattr(x, 'shape', type(x).__name__)}")
        if getattr(self.quantizer, "_dim", None) is not None and x.shape[1] != self.dim:
            raise InputError(
                f"{what}: vectors have dimension {x.shape[1]} but this tokenizer expects {self.dim}; "
                "embed with the model the tokenizer was built on"
            )
        out = np.ascontiguousarray(as_float32_vectors(x, what))
        if self.normalize:
            out = out.copy() if out is x else out
            for s in range(0, out.shape[0], batch):
                blk = out[s : s + batch]
                norms = np.linalg.norm(blk, axis=1, keepdims=True)
                if (norms == 0).any():
                    row = s + int(np.argmax(norms[:, 0] == 0))
                    raise InputError(f"{what}: row {row} is all zeros and cannot be L2-normalised; drop that item or build without `normalize`")
                blk /= norms
        return out

    def encode(self, x: np.ndarray, *, batch_size: int | None = None, **kwargs) -> np.ndarray:
        """Codes (n, L) int64 for raw embeddings ``x`` (n, d), with this tokenizer's preprocessing."""
        if not isinstance(x, np.ndarray) and hasattr(x, "detach"):  # a torch tensor (bfloat16 welcome)
            x = as_float32_vectors(x, "encode input")
        validate_vectors(x, "encode input")
        xp = self.preprocess(x, what="encode input")
        return np.asarray(self.quantizer.encode(xp, batch_size=batch_size, **kwargs), dtype=np.int64)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Reconstructions (n, d) in the preprocessed space (normalised if ``normalize``)."""
        return self.quantizer.decode(np.asarray(codes, dtype=np.int64))

    @property
    def sids(self) -> np.ndarray | None:
        """Full SIDs (n, L) or (n, L + 1) with the indexer's suffix level; None if no items."""
        if self.codes is None:
            return None
        if self.sid_suffix is None:
            return self.codes
        full = self.codes.base  # loaded codes and suffix are views of one (n, L + 1) array: no copy
        if full is not None and self.sid_suffix.base is full and getattr(full, "shape", None) == (len(self.codes), self.levels + 1):
            return full
        return np.concatenate([self.codes, np.asarray(self.sid_suffix, np.int64)[:, None]], 1)

    def sid_strings(self, codes: np.ndarray | None = None) -> list[str]:
        codes = self.sids if codes is None else codes
        if codes is None:
            return []
        return [sid_string(row) for row in np.asarray(codes).tolist()]

    def evaluate(
        self,
        x: np.ndarray | None = None,
        *,
        codes: np.ndarray | None = None,
        categories: Sequence[str | None] | None = None,
        preprocessed: bool = False,
        batch: int = 65536,
    ) -> dict[str, Any]:
        """Metrics of ``codes`` (default: the indexed items); reconstruction needs ``x``."""
        codes = self.codes if codes is None else codes
        if codes is None:
            raise TokenizerKitError("no codes to evaluate: build the tokenizer or pass codes")
        x_hat = None
        xp = None
        if x is not None:
            xp = x if preprocessed else self.preprocess(x)
            x_hat = np.concatenate([self.decode(codes[s : s + batch]) for s in range(0, len(codes), batch)]) if len(codes) else None
        return tokenizer_metrics(codes, self.codebook_sizes, x=xp, x_hat=x_hat, categories=categories)

    # ---- lookups ------------------------------------------------------------------------
    def codes_of(self, item_id) -> np.ndarray:
        if self.item_ids is None or self.codes is None:
            raise TokenizerKitError("this tokenizer holds no indexed items")
        if self._id_index is None:
            self._id_index = {str(i): r for r, i in enumerate(self.item_ids.tolist())}
        r = self._id_index.get(str(item_id))
        if r is None:
            raise InputError(f"item {item_id!r} is not in the tokenizer's index")
        return self.codes[r]

    # ---- persistence --------------------------------------------------------------------
    def manifest_fields(self) -> dict[str, Any]:
        """The tokenizer's own manifest fields (``io.write_artifact`` adds the envelope:
        format, versions, file checksums, the manifest's checksum)."""
        return {
            "method": self.method,
            "config": self.quantizer.config_dict(),
            "input_dim": self.dim,
            "levels": self.levels,
            "codebook_sizes": self.codebook_sizes,
            "preprocessing": {"normalize": self.normalize, "dtype": "float32"},
            "n_items": len(self),
            "token_format": "<a_{code}><b_{code}>...",
            "metrics": self.metrics,
            "training": self.quantizer.summary(),
            "build": self.info,
            "sections": self.sections,
        }

    def write_files(self, directory: Path) -> None:
        """Write every file but the manifest into ``directory``."""
        import pyarrow.parquet as pq
        from safetensors.numpy import save_file

        from ..io import sids_table

        save_file({k: np.ascontiguousarray(v) for k, v in self.quantizer.state_tensors().items()}, str(directory / WEIGHTS_NAME))
        for name, tensors in self.attachments.items():
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(directory / f"{name}.safetensors"))
        if self.item_ids is not None and self.codes is not None:
            pq.write_table(sids_table(self.item_ids, self.sids), directory / SIDS_NAME)

    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False, lock_timeout: float | None = None) -> Path:
        """Write the tokenizer directory atomically; an existing one is kept unless ``overwrite``.

        Goes through ``io.write_artifact``: the new directory is switched in with one atomic
        step under the directory's writer lock (waiting up to ``lock_timeout`` seconds for
        another writer); a failure or a kill leaves the previous directory whole.
        """
        path = Path(path)
        with write_artifact(path, TOKENIZER, overwrite=overwrite, lock_timeout=lock_timeout) as w:
            self.write_files(w.dir)
            w.fields.update(self.manifest_fields())
        self.path = path
        logger.info("saved tokenizer to %s", path)
        return path

    @staticmethod
    def read_manifest(path: str | os.PathLike, *, verify: Any = False) -> dict[str, Any]:
        """The checked manifest of a tokenizer directory as a dict (files verified if ``verify``)."""
        m = read_manifest(path, TOKENIZER, verify=verify)
        _check_fields(m)
        return m.data

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, verify: bool | str = True, load_sids: bool | str = True) -> "SemanticTokenizer":
        """Load a tokenizer directory (checksums verified unless ``verify=False``).

        ``verify``: True or "sha256" (every file's checksum), "read" (each file the load reads
        whole by its checksum, the ones it memory-maps or reads in part, ``READ_IN_PART``, by
        their size: with ``load_sids`` "ids" or False a load reads O(1) of a large index),
        False or "none" (presence only).

        Reads a consistent snapshot even while another process commits a new version
        (``io.read_artifact``). Besides checksums, the content is checked: codebooks finite,
        every code inside its codebook, one row per item id and no null ids. Directories in
        format 1 load too; saving rewrites them in the current format.
        ``load_sids=False`` leaves the indexed items on disk (``item_ids`` and ``codes`` stay
        None): enough to encode, without 32 bytes per indexed item in memory. ``load_sids="ids"``
        reads the item ids alone (``codes`` None): what a cold start into a stored SID index
        needs, whose SIDs it reads from the index's trie (``SIDIndex.stored``). Attachments
        (index, trie, segments) are memory-mapped read-only, not read.
        """
        if load_sids not in (True, False, "ids"):
            raise InputError(f"load_sids must be True, False or 'ids', got {load_sids!r}")
        path = Path(path)
        if verify not in (True, False, "sha256", "read", "none"):
            raise InputError(f"verify must be True, False, 'sha256', 'read' or 'none', got {verify!r}")
        level = verify if isinstance(verify, str) else ("sha256" if verify else "none")
        tok = read_artifact(path, TOKENIZER, lambda m: cls._load(m, load_sids=load_sids), verify=level)
        tok.path = path
        return tok

    @classmethod
    def _load(cls, m: Manifest, *, load_sids: bool = True) -> "SemanticTokenizer":
        from safetensors.numpy import load_file

        _check_fields(m)
        where = m.path
        qcls = get_quantizer_class(m["method"])
        for name in m.files:  # under verify="read": the files read whole, by their checksum (inside the snapshot)
            if name not in READ_IN_PART:
                m.check(name)
        tensors = _load_safetensors(m.file(WEIGHTS_NAME), load_file)
        for key, t in tensors.items():
            if t.dtype.kind != "f":  # every quantizer's weights are floating point (an int codebook was edited in)
                raise ArtifactError(f"{m.file(WEIGHTS_NAME)}: tensor {key!r} is {t.dtype}, expected floating-point weights; "
                                    f"the quantizer is corrupt, {TOKENIZER.fix}")
            if not np.isfinite(t).all():
                raise ArtifactError(f"{m.file(WEIGHTS_NAME)}: tensor {key!r} holds NaN or infinite values; the quantizer is corrupt, {TOKENIZER.fix}")
        try:
            quantizer = qcls.from_state(m["config"], tensors)
        except (TokenizerKitError, TypeError, ValueError, KeyError, AttributeError) as e:
            raise ArtifactError(f"{where}: the quantizer's config and weights do not fit ({' '.join(str(e).split())}); {TOKENIZER.fix}") from None
        sizes = m.get("codebook_sizes")
        if sizes is not None and list(sizes) != list(quantizer.codebook_sizes):
            raise ArtifactError(f"{where}: manifest codebook_sizes {sizes} differ from the quantizer's {list(quantizer.codebook_sizes)}; {TOKENIZER.fix}")
        tok = cls(
            quantizer,
            normalize=bool(m.get("preprocessing", {}).get("normalize", False)),
            metrics=m.get("metrics", {}),
            info=m.get("build", {}),
        )
        tok.sections = dict(m.get("sections", {}))
        training = m.get("training")
        if isinstance(training, dict) and hasattr(quantizer, "_summary") and not quantizer._summary:
            quantizer._summary = dict(training)  # a loaded tokenizer saved again keeps its training record
        for name in m.files:
            if name.endswith(".safetensors") and name != WEIGHTS_NAME:
                tok.attachments[name[: -len(".safetensors")]] = _map_safetensors(m.file(name), load_file)
        if SIDS_NAME in m.files:
            stored_ids = tok.attachments.get("index", {}).get("item_ids")
            if load_sids == "ids":  # codes stay on disk: their range is checked from the file's statistics
                _check_code_stats(m, tok)
            if load_sids == "ids" and stored_ids is not None:  # an SID index keeps integer ids memory-mapped
                tok.item_ids = _check_stored_ids(stored_ids, m)
            elif load_sids:
                tok.item_ids, tok.codes, tok.sid_suffix = _read_sids(m, tok, ids_only=load_sids == "ids")
        elif _int(m.get("n_items", 0)) > 0:
            raise ArtifactError(f"{where}: the manifest counts {m['n_items']} items but lists no {SIDS_NAME}; {TOKENIZER.fix}")
        return tok


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else -1


def _check_fields(m: Manifest) -> None:
    """The tokenizer's fields have the types the loader relies on (one line per problem)."""
    where = TOKENIZER.manifest_path(m.path)
    types = {"method": str, "config": dict, "preprocessing": dict, "metrics": dict, "build": dict, "sections": dict,
             "codebook_sizes": list, "n_items": int}
    for key, typ in types.items():
        required = key in ("method", "config")
        if key not in m.data:
            if required:
                raise ArtifactError(f"{where} has no {key!r}; the manifest is incomplete, {TOKENIZER.fix}")
            continue
        v = m.data[key]
        if not isinstance(v, typ) or isinstance(v, bool):
            raise ArtifactError(f"{where}: {key!r} is {type(v).__name__} {str(v)[:40]!r}, expected {typ.__name__}; {TOKENIZER.fix}")
    sizes = m.data.get("codebook_sizes")
    if sizes is not None and not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in sizes):
        raise ArtifactError(f"{where}: codebook_sizes {sizes!r} must be positive integers; {TOKENIZER.fix}")
    if "n_items" in m.data and m.data["n_items"] < 0:
        raise ArtifactError(f"{where}: n_items {m.data['n_items']} is negative; {TOKENIZER.fix}")
    index = (m.data.get("sections") or {}).get("index")
    if index is not None:
        _check_index_section(index, where)


def _is_int(v: Any, lo: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= lo


# sections.index: key -> (check, what it must be); optional keys are checked when present
_INDEX_FIELDS: dict[str, tuple[Any, str]] = {
    "policy": (lambda v: isinstance(v, str) and v != "", "a policy name"),
    "version": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "format": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "sid_length": (lambda v: _is_int(v, 1), "an integer >= 1"),
    "suffix_size": (_is_int, "an integer >= 0"),
    "n_items": (_is_int, "an integer >= 0"),
    "base_items": (_is_int, "an integer >= 0"),
    "n_retired": (_is_int, "an integer >= 0"),
    "codebook_sizes": (lambda v: isinstance(v, list) and all(_is_int(k, 1) for k in v), "a list of positive integers"),
    "level_sizes": (lambda v: isinstance(v, list) and all(_is_int(k, 0) for k in v), "a list of integers >= 0"),
    "stats": (lambda v: isinstance(v, dict), "a table"),
    "history": (lambda v: isinstance(v, list), "a list"),
    "segments": (lambda v: isinstance(v, list) and all(isinstance(g, dict) and _is_int(g.get("version"), 1)
                                                        and _is_int(g.get("appended"), 0) and isinstance(g.get("name"), str) for g in v),
                 "a list of {name, version, appended} tables"),
}


def _check_index_section(sec: Any, where: Path) -> None:
    """The manifest's SID index section has the types and ranges its readers rely on (a
    resealed manifest passes the checksum; its content must still make sense)."""
    if not isinstance(sec, dict):
        raise ArtifactError(f"{where}: sections.index is {type(sec).__name__}, expected a table; {TOKENIZER.fix}")
    for key, (ok, what) in _INDEX_FIELDS.items():
        if key in ("policy", "version"):
            if key not in sec:
                raise ArtifactError(f"{where}: sections.index has no {key!r}; {TOKENIZER.fix}")
        elif key not in sec:
            continue
        if not ok(sec[key]):
            raise ArtifactError(f"{where}: sections.index.{key} is {str(sec[key])[:40]!r}, expected {what}; {TOKENIZER.fix}")


def _load_safetensors(path: Path, load_file) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError

    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise ArtifactError(f"{path} cannot be read ({' '.join(str(e).split())[:200]}); {TOKENIZER.fix}") from None


_ST_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "I16": np.int16,
              "I8": np.int8, "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_}


def _map_safetensors(path: Path, load_file) -> dict[str, np.ndarray]:
    """A safetensors file's tensors as read-only memory maps (pages read when touched: a cold
    start reads a few rows of a 10M-item index, not the whole file). The header is checked
    (dtypes, shapes, offsets inside the file, no overlap); a dtype numpy lacks is read whole."""
    import json
    import struct

    bad = f"{path} is not a valid safetensors file; {TOKENIZER.fix}"
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            hlen = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
            if hlen < 2 or 8 + hlen > size:
                raise ArtifactError(bad)
            header = json.loads(f.read(hlen))
    except (OSError, ValueError, UnicodeDecodeError):
        raise ArtifactError(bad) from None
    if not isinstance(header, dict):
        raise ArtifactError(bad)
    start = 8 + hlen
    out: dict[str, np.ndarray] = {}
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict) or info.get("dtype") not in _ST_DTYPES:
            return _load_safetensors(path, load_file)
        shape, offs = info.get("shape"), info.get("data_offsets")
        ok = (isinstance(shape, list) and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in shape)
              and isinstance(offs, list) and len(offs) == 2 and all(isinstance(o, int) and not isinstance(o, bool) for o in offs))
        dt = np.dtype(_ST_DTYPES[info["dtype"]])
        if not ok or not 0 <= offs[0] <= offs[1] or start + offs[1] > size or offs[1] - offs[0] != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
            raise ArtifactError(bad)
        spans.append((offs[0], offs[1]))
        if offs[1] == offs[0]:
            out[name] = np.zeros(shape, dt)
        else:
            out[name] = np.memmap(path, dtype=dt, mode="r", offset=start + offs[0], shape=tuple(shape) or (1,)).reshape(shape)
    spans.sort()
    if any(b[0] < a[1] for a, b in zip(spans, spans[1:])):
        raise ArtifactError(bad)
    return out


def _increasing(a: np.ndarray) -> bool:
    """Integer ids in strictly increasing order (row numbers, time-ordered ids) hold no duplicate:
    a linear check instead of hashing every id."""
    if a.dtype.kind not in "iu" or len(a) < 2:
        return False
    return bool((a[1:] > a[:-1]).all())


def _read_sids(m: Manifest, tok: "SemanticTokenizer", *, ids_only: bool = False) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """item ids (n,), codes (n, L) and the suffix level (n,) or None, checked: integer codes
    inside their codebooks, non-negative suffixes, no null and no duplicate ids.
    ``ids_only``: the item ids alone (codes and suffix None)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    sp = m.check(SIDS_NAME)  # its id column, or every column, is read: O(items) anyway
    L = tok.levels
    try:  # the columns loaded (not the SID strings, most of the file's bytes)
        names = pq.read_schema(sp).names
        want = ["item_id"] if ids_only else ["item_id"] + [f"code_{l}" for l in range(L + 1)]
        table = pq.read_table(sp, columns=[c for c in want if c in names])
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ArtifactError(f"{sp} cannot be read ({type(e).__name__}); {TOKENIZER.fix}") from None
    need = ["item_id"] + ([] if ids_only else [f"code_{l}" for l in range(L)])
    missing = [c for c in need if c not in table.column_names]
    if missing:
        raise ArtifactError(f"{sp} lacks columns {missing}; {TOKENIZER.fix}")
    n = table.num_rows
    if _int(m.get("n_items", n)) != n:
        raise ArtifactError(f"{sp} has {n} rows, the manifest counts {m.get('n_items')} items; {TOKENIZER.fix}")
    idcol = table.column("item_id")
    if idcol.null_count:
        raise ArtifactError(f"{sp}: {idcol.null_count} rows have a null item_id; {TOKENIZER.fix}")
    ids = _id_array(idcol)  # converted once (10M ids: ~0.3 s per conversion)
    if n and not _increasing(ids) and pc.count_distinct(idcol).as_py() != n:
        vc = pc.value_counts(idcol)
        dup = next(v["values"] for v in vc.to_pylist() if v["counts"] > 1)
        raise ArtifactError(f"{sp}: item {dup!r} has more than one row (duplicate item rows); {TOKENIZER.fix}")
    if ids_only:
        return ids, None, None
    sizes = list(tok.codebook_sizes)
    cols = [f"code_{l}" for l in range(L)] + ([f"code_{L}"] if f"code_{L}" in table.column_names else [])
    full = np.empty((n, len(cols)), np.int64)  # one array for all levels: codes and suffix are views of it
    for l, name in enumerate(cols):
        col = table.column(name)
        if not pa.types.is_integer(col.type) or col.null_count:
            raise ArtifactError(f"{sp}: column {name} must hold integer codes without nulls (has {col.type}, {col.null_count} nulls); {TOKENIZER.fix}")
        c = full[:, l]
        c[:] = col.to_numpy()
        hi = sizes[l] if l < L else None
        if n and (c.min() < 0 or (hi is not None and c.max() >= hi)):
            bad = (c < 0) | (c >= hi) if hi is not None else (c < 0)
            r = int(np.argmax(bad))
            rng = f"[0, {hi})" if hi is not None else ">= 0"
            raise ArtifactError(f"{sp}: row {r} has {name} = {int(c[r])}, outside {rng} (codebook size); the SIDs are corrupt, {TOKENIZER.fix}")
    codes = full[:, :L]
    suffix = full[:, L] if len(cols) > L else None
    return ids, codes, suffix


def _check_code_stats(m: Manifest, tok: "SemanticTokenizer") -> None:
    """sids.parquet checked without reading its rows (a load that leaves the codes on disk):
    readable, one row per item, the code columns present and, by the row groups' min/max
    statistics, inside their codebooks; no null item id."""
    import pyarrow.parquet as pq

    sp = m.file(SIDS_NAME)
    L = tok.levels
    try:
        with open(sp, "rb") as f:  # a file object: no filesystem layer (pyarrow.dataset, pandas) imported
            md = pq.ParquetFile(f).metadata
            names = [md.schema.column(i).name for i in range(md.num_columns)]
            need = ["item_id"] + [f"code_{l}" for l in range(L)]
            missing = [c for c in need if c not in names]
            if missing:
                raise ArtifactError(f"{sp} lacks columns {missing}; {TOKENIZER.fix}")
            if _int(m.get("n_items", md.num_rows)) != md.num_rows:
                raise ArtifactError(f"{sp} has {md.num_rows} rows, the manifest counts {m.get('n_items')} items; {TOKENIZER.fix}")
            sizes = list(tok.codebook_sizes)
            for g in range(md.num_row_groups):
                rg = md.row_group(g)
                for j, name in enumerate(names):
                    st = rg.column(j).statistics
                    if st is None:
                        continue
                    if st.null_count and name in need:
                        raise ArtifactError(f"{sp}: column {name} holds {st.null_count} nulls; {TOKENIZER.fix}")
                    if name.startswith("code_") and name in need and st.has_min_max:
                        k = sizes[int(name[5:])]
                        if not isinstance(st.min, int) or st.min < 0 or st.max >= k:
                            raise ArtifactError(f"{sp}: {name} holds codes in [{st.min}, {st.max}], outside [0, {k}) (codebook size); "
                                                f"the SIDs are corrupt, {TOKENIZER.fix}")
    except ArtifactError:
        raise
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise ArtifactError(f"{sp} cannot be read ({type(e).__name__}); {TOKENIZER.fix}") from None


def _check_stored_ids(ids: np.ndarray, m: Manifest) -> np.ndarray:
    """The index's copy of the item ids (integer ids, in sids.parquet's row order), checked
    like sids.parquet's column: one per item, no duplicate."""
    where = m.file("index.safetensors")
    ids = np.asarray(ids)
    n = len(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or _int(m.get("n_items", n)) != n:
        raise ArtifactError(f"{where}: item_ids of shape {ids.shape} for {m.get('n_items')} items; {TOKENIZER.fix}")
    # the index's writer recorded that its ids increase: under verify="read" (the file checked by
    # its size, read in part) that is trusted instead of reading every id
    trusted = m.level == "read" and ((m.get("sections") or {}).get("index") or {}).get("ids_increasing") is True
    if n > 1 and not trusted and not _increasing(ids) and len(np.unique(ids)) != n:
        raise ArtifactError(f"{where}: item_ids holds duplicate ids; {TOKENIZER.fix}")
    return ids.astype(np.int64, copy=False)


def _id_array(idcol) -> np.ndarray:
    ids = idcol.to_numpy(zero_copy_only=False)
    return ids.astype(np.int64, copy=False) if ids.dtype.kind in "iu" else ids.astype(str).astype(object)
