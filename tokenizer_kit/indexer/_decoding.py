"""Constrained decoding over the SID trie for ``transformers`` ``generate``.

Two ways to keep every generated SID a real item (OneRec's "format legality"):

* ``prefix_allowed_tokens_fn(trie, vocab, prompt_length=...)`` -> the callable that
  ``generate(prefix_allowed_tokens_fn=...)`` wants (a Python walk per beam; simple, slow
  for wide beams).
* ``TrieLogitsProcessor(trie, vocab)`` -> a batched ``LogitsProcessor``
  that masks all beams at once with torch ops on the scores' device: the trie edges are
  one sorted key array ``parent * K + code``, so walking B beams one level is a single
  ``searchsorted`` and the allowed set at depth d is B x K_d lookups. No Python loop over
  beams, no host sync, works on CUDA.

Generation is expected to produce the S SID tokens right after the prompt (all rows of a
batch share the prompt length, as with left padding); after S tokens only
``eos_token_id`` is allowed. Where the SID starts is found without being told: the first
call of a ``generate`` sees the prompt (decoder-only models) or the decoder's start token
(encoder-decoder models such as T5, whose logits processors see the decoder's tokens,
never the encoder's input). A beam whose prefix left the trie (possible only when the
beam is wider than the number of valid continuations and a -inf token was kept) gets
only ``eos_token_id``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import InputError
from ._trie import SIDTrie
from ._vocab import SIDVocab

__all__ = ["TrieLogitsProcessor", "prefix_allowed_tokens_fn"]


def _check(trie: SIDTrie, vocab: SIDVocab) -> None:
    if vocab.levels < trie.sid_length:
        raise InputError(
            f"the vocabulary has {vocab.levels} levels but SIDs have {trie.sid_length}; "
            "build the SIDVocab from the index (SIDIndex.vocab())"
        )
    S = trie.sid_length
    for d in range(S):
        lo, hi = trie.depth_start[d + 1], trie.depth_start[d + 2]
        if hi > lo and int(trie.node_token[lo:hi].max()) >= vocab.level_sizes[d]:
            raise InputError(
                f"SIDs use code {int(trie.node_token[lo:hi].max())} at level {d} but the vocabulary has "
                f"{vocab.level_sizes[d]} codes there; build the SIDVocab from the index"
            )


def prefix_allowed_tokens_fn(
    trie: SIDTrie, vocab: SIDVocab, *, prompt_length: int, eos_token_id: int | None = None
) -> Callable[[int, torch.Tensor], list[int]]:
    """A ``prefix_allowed_tokens_fn(batch_id, input_ids) -> list[int]`` for ``generate``.

    ``input_ids`` (T,) is one beam; tokens from ``prompt_length`` on are the SID so far.
    """
    _check(trie, vocab)
    S = trie.sid_length
    end = [] if eos_token_id is None else [int(eos_token_id)]
    cache: dict[int, list[int]] = {}

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        gen = input_ids[prompt_length:].tolist()
        if len(gen) >= S:
            return end
        node = 0
        for d, t in enumerate(gen):
            if t >= vocab.vocab_end or vocab.id_level[t] != d:
                return end
            node = trie.child(node, int(vocab.id_code[t]))
            if node < 0:
                return end
        out = cache.get(node)
        if out is None:
            codes = trie.children(node)[0]
            out = vocab.table[len(gen), codes].tolist()
            cache[node] = out
        return out

    return allowed


class TrieLogitsProcessor:
    """Batched trie mask for ``generate(logits_processor=LogitsProcessorList([...]))``.

    ``__call__(input_ids (B, T), scores (B, V)) -> scores (B, V)`` with every token that
    would leave the trie set to -inf. Leave ``prompt_length`` out: the SID starts where the
    first call of each ``generate`` begins, for decoder-only models (after the padded
    prompt) and for encoder-decoder models alike (after the decoder's start token). A call
    that does not continue the previous one (not one token longer, or another batch size)
    starts a new ``generate``; ``reset()`` forces that. ``prompt_length`` (decoder tokens
    before the SID) fixes the start instead. ``device`` moves the trie arrays there up
    front (else on the first call, once per device).
    """

    def __init__(
        self,
        trie: SIDTrie,
        vocab: SIDVocab,
        *,
        prompt_length: int | None = None,
        eos_token_id: int | None = None,
        device: str | torch.device | None = None,
    ):
        _check(trie, vocab)
        self.trie = trie
        self.vocab = vocab
        self.prompt_length = prompt_length
        self._auto_prompt = prompt_length is None
        self._last: tuple[int, int] | None = None  # (B, T) of the previous call
        self.eos_token_id = None if eos_token_id is None else int(eos_token_id)
        self.S = trie.sid_length
        self.kmax = int(max(max(vocab.level_sizes), int(trie.node_token.max()) + 1))
        parent = np.repeat(np.arange(len(trie.child_ptr) - 1), np.diff(trie.child_ptr))  # [N-1] parent of nodes 1..N-1
        self._np = {
            "edge_key": parent * self.kmax + trie.node_token[1:].astype(np.int64),  # [N-1] sorted
            "id_code": vocab.id_code,  # [V_sid]
            "id_level": vocab.id_level,
            "level_ids": vocab.table,  # [L, Kmax]
        }
        self._dev: dict[str, dict[str, torch.Tensor]] = {}
        if device is not None:  # move the trie arrays now, not inside the first generate step
            self._tensors(torch.device(device))

    def _tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._dev:
            self._dev[key] = {k: torch.as_tensor(v, dtype=torch.int64, device=device) for k, v in self._np.items()}
        return self._dev[key]

    def reset(self) -> None:
        """The next call starts a new ``generate``."""
        self._last = None
        if self._auto_prompt:
            self.prompt_length = None

    def _sid_start(self, B: int, T: int) -> int:
        if self._auto_prompt:
            if self._last is None or self._last != (B, T - 1):  # a new generate: its first call ends where the SID starts
                self.prompt_length = T
            self._last = (B, T)
        elif T < self.prompt_length:
            raise InputError(
                f"input has {T} tokens, fewer than prompt_length {self.prompt_length}; an encoder-decoder model (T5) passes "
                "the processor its decoder tokens, not the encoder input: leave prompt_length out and the start is found"
            )
        return self.prompt_length

    def nodes(self, generated: torch.Tensor) -> torch.Tensor:
        """Trie node (B,) of each row's SID prefix ``generated`` (B, t); -1 where it left the trie."""
        tz = self._tensors(generated.device)
        B, t = generated.shape
        node = torch.zeros(B, dtype=torch.int64, device=generated.device)
        V = tz["id_code"].shape[0]
        ek = tz["edge_key"]
        for d in range(min(t, self.S)):  # loop over SID depth (<= S), never over beams
            tok = generated[:, d].long()
            in_range = (tok >= 0) & (tok < V)
            tc = tok.clamp(0, V - 1)
            code = tz["id_code"][tc]
            ok = in_range & (tz["id_level"][tc] == d) & (node >= 0)
            key = node.clamp(min=0) * self.kmax + code.clamp(min=0)  # [B]
            pos = torch.searchsorted(ek, key)
            posc = pos.clamp(max=ek.shape[0] - 1)
            ok = ok & (pos < ek.shape[0]) & (ek[posc] == key)
            node = torch.where(ok, posc + 1, torch.full_like(node, -1))
        return node

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        B, T = input_ids.shape
        t = T - self._sid_start(B, T)
        out = torch.full_like(scores, float("-inf"))
        if t < self.S:
            tz = self._tensors(scores.device)
            node = self.nodes(input_ids[:, T - t :])  # [B]
            K = self.vocab.level_sizes[t]
            ids = tz["level_ids"][t, :K]  # [K] token ids of level t
            codes = torch.arange(K, device=scores.device)
            key = node.clamp(min=0)[:, None] * self.kmax + codes[None, :]  # [B, K]
            ek = tz["edge_key"]
            pos = torch.searchsorted(ek, key.reshape(-1)).reshape(B, K)
            allowed = (pos < ek.shape[0]) & (ek[pos.clamp(max=ek.shape[0] - 1)] == key) & (node >= 0)[:, None]  # [B, K]
            kept = scores.index_select(1, ids)
            out.index_copy_(1, ids, torch.where(allowed, kept, torch.full_like(kept, float("-inf"))))
            dead = node < 0
        else:
            dead = torch.ones(B, dtype=torch.bool, device=scores.device)
        if self.eos_token_id is not None:
            e = self.eos_token_id
            out[:, e] = torch.where(dead, scores[:, e], out[:, e])
        return out
