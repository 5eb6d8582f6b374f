"""The causal-LM companion: a pretrained Hugging Face causal LM with the SID tokens added, fine-tuned
on the same leave-one-out split as the small models, decoded through the same trie.

A training example is one prompt, the history's SIDs and the next item's SID::

    [bos] Items the user bought, oldest first: <a_3><b_1><c_7><d_0> ... <a_9><b_2><c_4><d_0> Next item: <a_5><b_1><c_2><d_0>

with the loss on the S target tokens only (prompts left-padded, as the ``decoder`` arch).
Training (full fine-tuning, or LoRA with the SID rows of the embeddings and output layer
trained too: :func:`tokenizer_kit.generative.lora_model`), beam search under the
``TrieLogitsProcessor`` (every beam an item's SID; a beam whose prefix has no continuation
ends with eos at score -inf and is dropped; the model's generation config cannot change the
beams), metrics, seeds and comparisons are the ``GenerativeRetriever``'s.
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
