"""The causal-LM companion: a pretrained Hugging Face causal LM with the SID tokens added, fine-tuned
on the same leave-one-out split as the small models, decoded through the same trie.

A training example is one prompt, the history's SIDs and the next item's SID::

    [bos] Items the user bought, oldest first: <a_3><b_1><c_7><d_0> ... <a_9><b_2><c_4><d_0> Next item: <a_5><b_1><c_2><d_0>

with the loss on the S target tokens only (prompts left-padded, as the ``decoder`` arch).
Training (full fine-tuning, or LoRA with the SID rows of the embeddings and output layer
trained too: :func:`tokenizer_kit.generative.lora_model`), metrics, seeds and comparisons
are the ``GenerativeRetriever``'s. Decoding is beam search under the ``TrieLogitsProcessor``
(every beam an item's SID; slots without one are dropped), in a loop that reads each prompt
once (:meth:`CausalLMRetriever._generate_batch`); ``transformers`` ``generate`` with the same
processor (:meth:`_generate_hf`, under a default generation config, so the model's own
sampling settings cannot change the beams) finds the same beams, at several times the cost.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InputError
from ._model import GenerativeRetriever, RetrievalConfig

__all__ = ["CausalLMRetriever", "PROMPT_HEAD", "PROMPT_TAIL", "make_retriever"]

logger = logging.getLogger(__name__)

PROMPT_HEAD = "Items the user bought, oldest first:"
PROMPT_TAIL = " Next item:"


def _top_beams(score: torch.Tensor, logp: torch.Tensor, K: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One beam step: ``score`` (B, beams) + ``logp`` (B * beams, V) -> the best K (B, K)
    scores, their source rows (B * K,) and their tokens (B * K,); slots past the candidates
    score -inf."""
    B, V = score.shape[0], logp.shape[1]
    total = (score.reshape(-1, 1) + logp).reshape(B, -1)  # [B, beams * V]
    top, flat = total.topk(min(K, total.shape[1]), dim=1)  # [B, <=K]
    if top.shape[1] < K:
        top = torch.cat([top, top.new_full((B, K - top.shape[1]), float("-inf"))], 1)
        flat = torch.cat([flat, flat.new_zeros((B, K - flat.shape[1]))], 1)
    src = torch.arange(B, device=score.device)[:, None] * score.shape[1] + flat // V  # [B, K]
    return top, src.reshape(-1), (flat % V).reshape(-1)


def make_retriever(index, config: RetrievalConfig, *, sids=None) -> GenerativeRetriever:
    """The companion model of ``config.arch`` for ``index``; ``sids`` (the tokenizer directory
    the index came from) gives arch causal-lm the codebooks of ``sid_init="codebook"``."""
    if config.arch == "causal-lm":
        return CausalLMRetriever(index, config, sids=sids)
    return GenerativeRetriever(index, config)


class CausalLMRetriever(GenerativeRetriever):
    """:class:`GenerativeRetriever` over a pretrained causal LM (``config.model``) with the SID tokens added.

    ``lm``: a :class:`~tokenizer_kit.generative.SIDCausalLM` to train instead of loading
    ``config.model`` (its SIDs must be ``index``'s).
    """

    def __init__(self, index, config: RetrievalConfig, *, lm=None, sids=None):
        from ..generative import lora_model

        cfg = config.validate()
        if cfg.arch != "causal-lm":
            raise InputError(f"CausalLMRetriever runs arch causal-lm, got arch {cfg.arch}")
        torch.manual_seed(cfg.seed)
        self.lm = lm if lm is not None else self._load_lm(index, cfg, sids)
        if self.lm.sids.shape != np.shape(index.sids) or not np.array_equal(self.lm.sids, index.sids):
            raise InputError("the LM's SIDs are not the index's; add the SID tokens of this index (sid_causal_lm) first")
        model = self.lm.model
        n_rows = int(model.get_input_embeddings().num_embeddings)
        if cfg.finetune == "lora":
            model = lora_model(model, self.lm.sid_token_ids, rank=cfg.lora_rank)
        super().__init__(index, cfg, model=model, vocab=self.lm.vocab)
        tok = self.lm.tokenizer
        if tok.eos_token_id is None:
            raise InputError(f"the tokenizer of {cfg.model} has no eos token; the beam search ends SIDs with it")
        self.eos_id = int(tok.eos_token_id)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        self.vocab_size = n_rows
        bos = [int(tok.bos_token_id)] if tok.bos_token_id is not None else []
        self._head = np.asarray(bos + tok(PROMPT_HEAD, add_special_tokens=False)["input_ids"], np.int64)
        self._tail = np.asarray(tok(PROMPT_TAIL, add_special_tokens=False)["input_ids"], np.int64)
        self.max_positions = len(self._head) + len(self._tail) + (cfg.max_history + 1) * self.S

    @staticmethod
    def _load_lm(index, cfg: RetrievalConfig, sids):
        from ..generative import sid_causal_lm, tokenizer_codebooks

        books = None
        if cfg.sid_init == "codebook":
            books = tokenizer_codebooks(sids)
        return sid_causal_lm(index, cfg.model, sid_init=cfg.sid_init, seed=cfg.seed, codebooks=books)

    @property
    def n_trainable(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters() if p.requires_grad))

    def _prompt(self, hist: np.ndarray) -> np.ndarray:
        hist = np.asarray(hist, np.int64)[-self.config.max_history :]
        return np.concatenate([self._head, self.item_tokens[hist].reshape(-1), self._tail])

    def _batch(self, hists: list[np.ndarray], targets: np.ndarray | None) -> dict[str, torch.Tensor]:
        """The ``decoder`` batch, with the output layer run on the last S + 1 positions only
        (``logits_to_keep``): the loss needs no logits over the prompt, and the LM's vocabulary
        makes those most of the output layer's cost."""
        b = super()._batch(hists, targets)
        if targets is not None:
            b["labels"] = b["labels"][:, -(self.S + 1) :]  # [B, S+1]: -100, then the S target tokens
            b["logits_to_keep"] = self.S + 1
        return b

    @torch.no_grad()
    def _generate_batch(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search, (B, beam, S) token ids and (B, beam) scores, best first.

        The beams ``generate`` (:meth:`_generate_hf`) finds, without its cost: ``generate``
        copies every prompt once per beam before reading it; here the prompt is read once per
        user, its key/value cache is then repeated once per beam and reordered as beams move
        (the t5 arch's loop). Scores are sums of log-softmax over the vocabulary, masked to
        the trie's children; slots the trie cannot fill score -inf and are dropped. The
        model's generation config is never read.
        """
        from transformers import DynamicCache

        from ..indexer import TrieLogitsProcessor

        K, S = self.config.beam_size, self.S
        b = self._batch(hists, None)
        mask, pos = b["attention_mask"], b["position_ids"][:, -1:]  # [B, P], [B, 1]
        B, dev = mask.shape[0], mask.device
        proc = TrieLogitsProcessor(self.trie, self.vocab, prompt_length=0, eos_token_id=None)
        cache = DynamicCache()
        out = self.model(**b, past_key_values=cache, use_cache=True, logits_to_keep=1)
        gen = torch.zeros((B, 0), dtype=torch.long, device=dev)  # [rows, t]
        score = torch.zeros(B, 1, device=dev)  # [B, beams so far]
        for t in range(S):
            logp = proc(gen, torch.log_softmax(out.logits[:, -1].float(), -1))  # [rows, V], -inf off the trie
            score, src, tok = _top_beams(score, logp, K)
            if t == 0:  # B rows -> B * K: the cache and the masks repeat once per beam
                cache.batch_repeat_interleave(K)
                mask, pos = mask.repeat_interleave(K, 0), pos.repeat_interleave(K, 0)
            else:
                cache.reorder_cache(src)
            gen = torch.cat([gen[src], tok[:, None]], 1)
            if t + 1 < S:
                mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], 1), pos + 1
                out = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True)
        return self._drop_dead_beams(gen.reshape(B, K, S).cpu().numpy(), score.float().cpu().numpy())

    def plain_model(self):
        """The trained LM as a plain transformers model (LoRA merged into its weights; this
        retriever then runs the merged model)."""
        if hasattr(self.model, "merge_and_unload"):
            self.model = self.model.merge_and_unload()
        return self.model

    def save(self, path: str | os.PathLike, *, lock_timeout: float | None = None) -> Path:
        """A ``save_pretrained`` directory of the trained LM (LoRA merged) and its tokenizer, with
        ``sid_items.json`` (the items' SIDs and this companion's config): loads with
        ``AutoModelForCausalLM.from_pretrained`` or ``SIDCausalLM.load``."""
        from ..generative import SIDCausalLM

        lm = SIDCausalLM(self.plain_model(), self.lm.tokenizer, self.vocab, self.index.item_ids, self.index.sids)
        return lm.save(path, extra={"companion": {"config": self.config.to_dict()}})

    @classmethod
    def load(cls, path: str | os.PathLike, index) -> "CausalLMRetriever":
        """A directory :meth:`save` wrote, for ``index`` (the SIDs it was trained on)."""
        from ..generative import SIDCausalLM

        lm = SIDCausalLM.load(path)
        stored: dict[str, Any] = (lm.extra.get("companion") or {}).get("config") or {}
        cfg = RetrievalConfig.from_dict({**stored, "arch": "causal-lm", "model": str(path), "finetune": "full"})
        return cls(index, cfg, lm=lm)
