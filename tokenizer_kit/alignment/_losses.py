"""Alignment losses: item-to-item InfoNCE (OneRec eq. 3) and the caption loss (eq. 4).

Similarity on M~ (documented choice): each of the N_q query vectors is L2-normalised and
sim(M~_a, M~_b) = (1/N_q) * sum_q <m_a,q, m_b,q>, i.e. the dot product of the flattened,
per-query-normalised vectors divided by N_q; it lies in [-1, 1]. ``item_vectors`` gives that
flattened vector (unit norm), so cosine retrieval on ``embed``'s "flatten" output ranks items
exactly as the training similarity does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["item_vectors", "pair_similarity", "info_nce", "info_nce_reference", "Temperature"]


def item_vectors(m: torch.Tensor) -> torch.Tensor:
    """(b, n_q, d) -> (b, n_q * d): per-query L2-normalised, scaled by 1/sqrt(n_q) (unit norm)."""
    b, nq, d = m.shape
    return (F.normalize(m.float(), dim=-1) / math.sqrt(nq)).reshape(b, nq * d)


def pair_similarity(ma: torch.Tensor, mb: torch.Tensor) -> torch.Tensor:
    """All-pairs similarity (b_a, b_b) of two batches of M~ (see the module docstring)."""
    return item_vectors(ma) @ item_vectors(mb).T


def info_nce(ma: torch.Tensor, mb: torch.Tensor, temperature: torch.Tensor | float, *, same_a: torch.Tensor | None = None, same_b: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric in-batch InfoNCE over pairs (ma[i], mb[i]) (eq. 3).

    ``same_b`` (b, b) bool marks off-diagonal columns holding the same item as the row's
    positive (duplicates in the batch); those false negatives are removed from the softmax
    (``same_a`` likewise for the b -> a direction).
    """
    logits = pair_similarity(ma, mb) / temperature  # [b, b]
    target = torch.arange(logits.shape[0], device=logits.device)
    la, lb = logits, logits.T
    if same_b is not None:
        la = la.masked_fill(same_b, float("-inf"))
    if same_a is not None:
        lb = lb.masked_fill(same_a, float("-inf"))
    return 0.5 * (F.cross_entropy(la, target) + F.cross_entropy(lb, target))


def info_nce_reference(ma, mb, temperature: float) -> float:
    """Plain loop version of :func:`info_nce` without masking (tests)."""
    import numpy as np

    va = item_vectors(torch.as_tensor(ma)).double().numpy()
    vb = item_vectors(torch.as_tensor(mb)).double().numpy()
    b = len(va)
    tot = 0.0
    for i in range(b):
        s_ab = np.array([va[i] @ vb[j] for j in range(b)]) / temperature
        s_ba = np.array([vb[i] @ va[j] for j in range(b)]) / temperature
        tot += -(s_ab[i] - np.log(np.exp(s_ab).sum())) - (s_ba[i] - np.log(np.exp(s_ba).sum()))
    return tot / (2 * b)


class Temperature(nn.Module):
    """InfoNCE temperature tau, fixed or learned (as log tau, clamped to [0.01, 1])."""

    def __init__(self, init: float = 0.07, *, learn: bool = False):
        super().__init__()
        t = torch.tensor(math.log(init))
        if learn:
            self.log_tau = nn.Parameter(t)
        else:
            self.register_buffer("log_tau", t)

    def forward(self) -> torch.Tensor:
        return self.log_tau.exp().clamp(0.01, 1.0)
