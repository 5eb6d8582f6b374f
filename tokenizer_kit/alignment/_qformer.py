"""QFormer (OneRec eq. 1-2): N_q learnable queries read an item's token vectors.

Per layer (pre-norm residual form of the paper's equations)::

    Q <- Q + CrossAttn(RMSNorm(Q), M, M)          # eq. 1, keys/values = projected tokens M
    Q <- Q + FFN(RMSNorm(Q))                       # eq. 2

with M = RMSNorm(Linear(feature_dim -> d_model)(tokens)) and Q(0) the learned queries (plus the
masked mean of M when ``pooled_query_init``, an option outside the paper); padding tokens are masked out of
the attention, so padding never changes the output. Output M~: (b, n_queries, d_model).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from ._config import QFormerConfig

__all__ = ["QFormerConfig", "QFormer", "RMSNorm", "CrossAttention", "FeedForward"]


class RMSNorm(nn.Module):
    def __init__(self, dim: int, *, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class CrossAttention(nn.Module):
    """Multi-head attention of queries (b, q, d) over keys/values (b, t, d) with a key mask."""

    def __init__(self, *, dim: int, n_heads: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads = n_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim, bias=False)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim, bias=False)
        self.o_proj = nn.Linear(dim, dim, bias=False)

    def forward(self, q: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, nq, d = q.shape
        t = kv.shape[1]
        h = self.n_heads
        qh = self.q_proj(q).view(b, nq, h, d // h).transpose(1, 2)  # [b, h, q, dh]
        kh = self.k_proj(kv).view(b, t, h, d // h).transpose(1, 2)  # [b, h, t, dh]
        vh = self.v_proj(kv).view(b, t, h, d // h).transpose(1, 2)
        attn_mask = mask[:, None, None, :]  # [b, 1, 1, t] True = attend
        out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.o_proj(out.transpose(1, 2).reshape(b, nq, d))


class FeedForward(nn.Module):
    """SwiGLU feed-forward (d -> hidden -> d)."""

    def __init__(self, *, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.w_gate = nn.Linear(dim, hidden, bias=False)
        self.w_up = nn.Linear(dim, hidden, bias=False)
        self.w_down = nn.Linear(hidden, dim, bias=False)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.w_down(F.silu(self.w_gate(x)) * self.w_up(x)))


class _Layer(nn.Module):
    def __init__(self, cfg: QFormerConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.attn = CrossAttention(dim=cfg.d_model, n_heads=cfg.n_heads, dropout=cfg.dropout)
        self.ffn_norm = RMSNorm(cfg.d_model, eps=cfg.norm_eps)
        self.ffn = FeedForward(dim=cfg.d_model, hidden=int(round(cfg.ffn_mult * cfg.d_model)), dropout=cfg.dropout)

    def forward(self, q: torch.Tensor, m: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = q + self.attn(self.attn_norm(q), m, mask)  # eq. 1
        return q + self.ffn(self.ffn_norm(q))  # eq. 2


class QFormer(nn.Module):
    """``forward(tokens (b, t, feature_dim), mask (b, t) bool True=real) -> (b, n_queries, d_model)``."""

    def __init__(self, config: QFormerConfig):
        super().__init__()
        self.config = config.validate()
        self.input_proj = nn.Linear(config.feature_dim, config.d_model)
        self.input_norm = RMSNorm(config.d_model, eps=config.norm_eps)
        self.queries = nn.Parameter(torch.randn(config.n_queries, config.d_model) * 0.02)
        self.layers = nn.ModuleList([_Layer(config) for _ in range(config.n_layers)])
        self.out_norm = RMSNorm(config.d_model, eps=config.norm_eps)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 3 or tokens.shape[-1] != self.config.feature_dim:
            raise InputError(f"QFormer expects tokens (b, t, {self.config.feature_dim}), got {tuple(tokens.shape)}")
        mask = mask.to(torch.bool)
        # an item with no tokens attends to one zero token instead of producing NaN
        empty = ~mask.any(dim=1)
        if bool(empty.any()):
            mask = mask.clone()
            mask[empty, 0] = True
            tokens = tokens.masked_fill(empty[:, None, None] & (torch.arange(tokens.shape[1], device=tokens.device) == 0)[None, :, None], 0.0)
        m = self.input_norm(self.input_proj(tokens))  # [b, t, d]
        q = self.queries.unsqueeze(0).expand(tokens.shape[0], -1, -1).to(m.dtype)  # [b, n_q, d]
        if self.config.pooled_query_init:
            # optional (not in the paper): start every query from the masked mean of M
            w = mask.unsqueeze(-1).to(m.dtype)
            q = q + ((m * w).sum(1) / w.sum(1).clamp_min(1.0)).unsqueeze(1)
        for layer in self.layers:
            q = layer(q, m, mask)
        return self.out_norm(q)
