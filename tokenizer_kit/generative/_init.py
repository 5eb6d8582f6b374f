"""Initial embeddings of the SID tokens added to a causal LM.

* ``mean``: every new row is the mean of the LM's existing rows plus Gaussian noise of
  ``noise`` times their per-dimension standard deviation (Hewitt, "Initializing new word
  embeddings for pretrained language models", 2021: the mean keeps the new tokens' logits
  from dominating; the noise tells them apart).
* ``codebook``: the row of level ``l`` code ``c`` is that level's codebook vector, centred
  on the level's mean, through a fixed random projection to the LM's width with
  orthonormal columns (seeded, one per level), scaled so that the rows' RMS distance from
  the mean embedding equals the existing rows' (``||e - mean||`` on average); then the
  mean embedding is added. Codes close in the codebook start close in the LM. Levels
  without a codebook (the collision suffix) get the ``mean`` initialisation.

Input and output embeddings are initialised alike, each from its own existing rows; a
tied output layer shares the input rows.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError
from ._sid_lm import INITS

__all__ = ["init_sid_rows", "codebook_vectors"]

logger = logging.getLogger(__name__)


def codebook_vectors(quantizer) -> list[np.ndarray]:
    """The codebooks of a tokenizer's quantizer, one (K_l, d) float32 array per level
    (RQ-Kmeans: its centroids; RQ-VAE: its residual VQ's latent codebooks)."""
    books = getattr(quantizer, "codebooks", None)
    if books is None and getattr(quantizer, "model", None) is not None and hasattr(quantizer.model, "rvq"):
        books = quantizer.model.rvq.codebooks
    if not books:
        raise InputError(f"the {type(quantizer).__name__} quantizer exposes no codebooks; use init 'mean'")
    return [np.asarray(c.detach().cpu().numpy() if torch.is_tensor(c) else c, np.float32) for c in books]


def _projected(book: np.ndarray, width: int, gen: torch.Generator) -> torch.Tensor:
    """Centred codebook (K, d) through a random (d, width) map with orthonormal columns or rows, (K, width)."""
    c = torch.as_tensor(book, dtype=torch.float64)
    c = c - c.mean(0, keepdim=True)
    d = c.shape[1]
    q, _ = torch.linalg.qr(torch.randn(max(d, width), min(d, width), generator=gen, dtype=torch.float64))
    proj = q if d >= width else q.T  # [d, width]
    z = c @ proj  # [K, width]
    rms = z.pow(2).sum(1).mean().sqrt().clamp_min(1e-12)
    return z / rms


@torch.no_grad()
def _fill(weight: torch.Tensor, n_old: int, rows: list[tuple[np.ndarray, np.ndarray]], books: Sequence[np.ndarray | None], *,
          noise: float, gen: torch.Generator) -> None:
    """Write the rows of each level (``rows[l]``: (token ids, their codes)) into ``weight`` (V, H)."""
    old = weight[:n_old].double()  # [n_old, H]
    mean, std = old.mean(0), old.std(0)
    radius = (old - mean).pow(2).sum(1).mean().sqrt()
    H = weight.shape[1]
    for (ids, codes), book in zip(rows, books):
        idx = torch.as_tensor(ids, dtype=torch.long, device=weight.device)
        if book is None:
            new = mean + noise * std * torch.randn(len(ids), H, generator=gen, dtype=torch.float64)
        else:
            new = (mean + radius * _projected(book, H, gen))[torch.as_tensor(codes, dtype=torch.long)]
        weight[idx] = new.to(weight.dtype).to(weight.device)


def init_sid_rows(model, rows: list[tuple[np.ndarray, np.ndarray]], n_old: int, *, init: str = "mean",
                  codebooks: Sequence[np.ndarray] | None = None, noise: float = 0.1, seed: int = 0) -> None:
    """Initialise the SID rows of ``model``'s input and (untied) output embeddings in place.

    ``rows[l]``: (token ids, codes) of level ``l``'s new tokens. ``n_old``: rows before the
    SID tokens were added (the statistics come from them). ``codebooks``: (K_l, d) per
    codebook level, for ``init="codebook"`` (levels beyond them, the suffix, use ``mean``).
    """
    if init not in INITS:
        raise InputError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if init == "codebook" and not codebooks:
        raise InputError("init 'codebook' needs the tokenizer directory's codebooks; pass a tokenizer directory, or use init 'mean'")
    books: list[np.ndarray | None] = [None] * len(rows)
    if init == "codebook":
        for l, b in enumerate(list(codebooks)[: len(rows)]):
            if len(rows[l][1]) and int(np.max(rows[l][1])) >= len(b):
                raise InputError(f"codebook {l} has {len(b)} codes but the SIDs use code {int(np.max(rows[l][1]))} at that level")
            books[l] = b
    emb_in = model.get_input_embeddings().weight
    _fill(emb_in.data, n_old, rows, books, noise=noise, gen=torch.Generator().manual_seed(seed))
    out = model.get_output_embeddings()
    if out is not None and out.weight.data_ptr() != emb_in.data_ptr():
        _fill(out.weight.data, n_old, rows, books, noise=noise, gen=torch.Generator().manual_seed(seed + 1))
    logger.info("initialised %d SID token rows (%s)", sum(len(r[0]) for r in rows), init)
