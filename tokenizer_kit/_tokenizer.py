"""``SemanticTokenizer``: a quantizer + preprocessing + the catalogue's SIDs, as one artifact.

Directory layout (format version 1)::

    tokenizer.json          manifest: format/package version, method, config, input dim,
                            preprocessing, codebook sizes, per-file sha256, metrics, sections
    quantizer.safetensors   the quantizer's weights (codebooks, prices / network weights)
    sids.parquet            item_id, code_0..code_{L-1}, sid ("<a_3><b_4><c_1>"); an index built
                            with the ``suffix`` collision policy adds code_L (``<d_k>``)
    <name>.safetensors      attachments added by later stages (e.g. the indexer's trie)

``save_pretrained`` writes a staging directory and swaps it in (atomic); ``from_pretrained``
checks every file's checksum and refuses newer formats. Nothing is unpickled.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._metrics import tokenizer_metrics
from ._progress import Progress
from ._version import __version__
from .errors import ArtifactError, InputError, TokenizerKitError
from .io import Embeddings, atomic_directory, atomic_write_json, sha256_file, validate_ids, validate_vectors
from .quantizers import get_quantizer_class

__all__ = [
    "SemanticTokenizer",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "level_token",
    "sid_string",
    "parse_sid_string",
]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_NAME = "tokenizer.json"
WEIGHTS_NAME = "quantizer.safetensors"
SIDS_NAME = "sids.parquet"


def level_token(level: int, code: int) -> str:
    """``<a_3>`` for level 0 code 3; levels beyond z continue as ``<l26_3>``."""
    prefix = chr(ord("a") + level) if level < 26 else f"l{level}"
    return f"<{prefix}_{int(code)}>"


def sid_string(codes: Sequence[int]) -> str:
    return "".join(level_token(l, c) for l, c in enumerate(codes))


def parse_sid_string(sid: str) -> list[int]:
    """``"<a_3><b_4><c_1>"`` -> [3, 4, 1]; levels must come in order a, b, c, ..."""
    s = sid.strip()
    if not (s.startswith("<") and s.endswith(">")):
        raise InputError(f"SID {sid!r} is not of the form <a_3><b_4><c_1>")
    out = []
    for level, tok in enumerate(s[1:-1].split("><")):
        name, _, code = tok.rpartition("_")
        expect = level_token(level, 0)[1:].rpartition("_")[0]
        if name != expect or not code.isdigit():
            raise InputError(f"SID {sid!r}: token {level} is <{tok}>, expected <{expect}_N>")
        out.append(int(code))
    return out


def _sha256_map(directory: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != MANIFEST_NAME}


def _version_tuple(v: str) -> tuple[int, ...]:
    out = []
    for part in str(v).split("."):
        digits = "".join(ch for ch in part if ch.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out)


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
        method: str = "rq-kmeans",
        normalize: bool = False,
        categories: Sequence[str | None] | None = None,
        progress: Progress | None = None,
        **quantizer_config: Any,
    ) -> "SemanticTokenizer":
        """Fit a quantizer on ``x`` (n, d) and assign every item its codes.

        ``quantizer_config`` goes to the method's config (e.g. ``codebook_sizes``, ``balanced``,
        ``beam_size``, ``seed``, ``device`` for RQ-Kmeans). The whole config is validated
        before any compute. ``progress`` reaches the quantizer's ``fit`` where it takes one
        (RQ-VAE: one task over its epochs).
        """
        if isinstance(progress, bool):  # RQ-VAE's former config flag of that name
            progress = None
        source = ""
        if isinstance(x, Embeddings):
            ids = x.ids if ids is None else ids
            source = x.source
            x = x.vectors
        qcls = get_quantizer_class(method)
        quantizer = qcls(**quantizer_config)
        validate_vectors(x, source or "embeddings")
        n = x.shape[0]
        ids_arr = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
        if ids_arr.dtype.kind not in "iu":
            ids_arr = ids_arr.astype(str).astype(object)
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
        tok.info = {
            "source": str(source),
            "n_items": int(n),
            "fit_seconds": fit_s,
            "encode_seconds": enc_s,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
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
        out = np.ascontiguousarray(x, dtype=np.float32)
        if self.normalize:
            out = out.copy() if out is x else out
            for s in range(0, out.shape[0], batch):
                blk = out[s : s + batch]
                norms = np.linalg.norm(blk, axis=1, keepdims=True)
                if (norms == 0).any():
                    row = s + int(np.argmax(norms[:, 0] == 0))
                    raise InputError(f"{what}: row {row} is all zeros and cannot be L2-normalised; drop that item or build without --normalize")
                blk /= norms
        return out

    def encode(self, x: np.ndarray, *, batch_size: int | None = None, **kwargs) -> np.ndarray:
        """Codes (n, L) int64 for raw embeddings ``x`` (n, d), with this tokenizer's preprocessing."""
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
    def manifest(self, files: dict[str, str]) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "package": "tokenizer-kit",
            "package_version": __version__,
            "method": self.method,
            "config": self.quantizer.config_dict(),
            "input_dim": self.dim,
            "levels": self.levels,
            "codebook_sizes": self.codebook_sizes,
            "preprocessing": {"normalize": self.normalize, "dtype": "float32"},
            "n_items": len(self),
            "token_format": "<a_{code}><b_{code}>...",
            "files": files,
            "metrics": self.metrics,
            "training": self.quantizer.summary(),
            "build": self.info,
            "sections": self.sections,
        }

    def write_files(self, directory: Path) -> None:
        """Write every file but the manifest into ``directory``."""
        import pyarrow.parquet as pq
        from safetensors.numpy import save_file

        from .io import sids_table

        save_file({k: np.ascontiguousarray(v) for k, v in self.quantizer.state_tensors().items()}, str(directory / WEIGHTS_NAME))
        for name, tensors in self.attachments.items():
            save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(directory / f"{name}.safetensors"))
        if self.item_ids is not None and self.codes is not None:
            pq.write_table(sids_table(self.item_ids, self.sids, self.sid_strings()), directory / SIDS_NAME)

    def save_pretrained(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the tokenizer directory atomically; an existing one is kept unless ``overwrite``."""
        path = Path(path)
        with atomic_directory(path, overwrite=overwrite) as staging:
            self.write_files(staging)
            atomic_write_json(staging / MANIFEST_NAME, self.manifest(_sha256_map(staging)))
        self.path = path
        logger.info("saved tokenizer to %s", path)
        return path

    @staticmethod
    def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
        path = Path(path)
        if not path.exists():
            raise ArtifactError(f"tokenizer directory {path} does not exist; build one with `tokenizer-kit build-codebook`")
        if not path.is_dir():
            raise ArtifactError(f"{path} is not a tokenizer directory (expected a directory with {MANIFEST_NAME})")
        mpath = path / MANIFEST_NAME
        if not mpath.exists():
            raise ArtifactError(f"{path} has no {MANIFEST_NAME}; it is not a tokenizer directory or it is incomplete")
        try:
            manifest = json.loads(mpath.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{mpath} is corrupt ({e}); rebuild the tokenizer or restore it") from None
        if not isinstance(manifest, dict) or "format_version" not in manifest:
            raise ArtifactError(f"{mpath} is not a tokenizer-kit manifest (no format_version)")
        fv = manifest["format_version"]
        if not isinstance(fv, int) or fv > FORMAT_VERSION:
            raise ArtifactError(
                f"{path} was written in tokenizer format {fv}, newer than this tokenizer-kit {__version__} reads "
                f"({FORMAT_VERSION}); upgrade tokenizer-kit"
            )
        pv = manifest.get("package_version", "0")
        if _version_tuple(pv) > _version_tuple(__version__):
            logger.warning("%s was written by tokenizer-kit %s, newer than this %s", path, pv, __version__)
        return manifest

    @staticmethod
    def verify_files(path: Path, manifest: dict[str, Any]) -> None:
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise ArtifactError(f"{path}/{MANIFEST_NAME} lists no files; the tokenizer directory is corrupt")
        for name, digest in files.items():
            fp = path / name
            if not fp.exists():
                raise ArtifactError(f"{fp} is missing; the tokenizer directory is incomplete, rebuild or restore it")
            got = sha256_file(fp)
            if got != digest:
                raise ArtifactError(
                    f"{fp} fails its checksum (sha256 {got[:12]}..., manifest says {digest[:12]}...); "
                    "the file is corrupt or was changed, rebuild or restore it"
                )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, verify: bool = True) -> "SemanticTokenizer":
        """Load a tokenizer directory (checksums verified unless ``verify=False``)."""
        import pyarrow.parquet as pq
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        path = Path(path)
        manifest = cls.read_manifest(path)
        if verify:
            cls.verify_files(path, manifest)
        qcls = get_quantizer_class(manifest["method"])
        try:
            tensors = load_file(str(path / WEIGHTS_NAME))
        except (SafetensorError, OSError, ValueError) as e:
            raise ArtifactError(f"{path / WEIGHTS_NAME} cannot be read ({e}); rebuild or restore the tokenizer") from None
        try:
            quantizer = qcls.from_state(manifest["config"], tensors)
        except TokenizerKitError as e:
            raise ArtifactError(f"{path}: {e}") from None
        tok = cls(
            quantizer,
            normalize=bool(manifest.get("preprocessing", {}).get("normalize", False)),
            metrics=manifest.get("metrics", {}),
            info=manifest.get("build", {}),
        )
        tok.sections = dict(manifest.get("sections", {}))
        for name in manifest.get("files", {}):
            if name.endswith(".safetensors") and name != WEIGHTS_NAME:
                tok.attachments[name[: -len(".safetensors")]] = load_file(str(path / name))
        sp = path / SIDS_NAME
        if sp.exists():
            try:
                table = pq.read_table(sp)
            except Exception as e:
                raise ArtifactError(f"{sp} cannot be read ({type(e).__name__}); rebuild or restore the tokenizer") from None
            ids = table.column("item_id").to_numpy(zero_copy_only=False)
            tok.item_ids = ids.astype(np.int64) if ids.dtype.kind in "iu" else ids.astype(str).astype(object)
            tok.codes = np.stack([table.column(f"code_{l}").to_numpy().astype(np.int64) for l in range(tok.levels)], 1)
            if f"code_{tok.levels}" in table.column_names:
                tok.sid_suffix = table.column(f"code_{tok.levels}").to_numpy().astype(np.int64)
        tok.path = path
        return tok
