"""LoRA on a causal LM whose new SID tokens must train too (peft).

LoRA alone never trains the rows of tokens added to the vocabulary (the embeddings are not
a LoRA target), so the SID tokens would keep their initial embeddings. Here the SID rows
are peft ``trainable_token_indices`` (only those rows of the input embeddings train, the
others stay as they were), and the output layer's SID rows train with them: peft shares
the trained rows with a tied output layer, and an untied one gets the same token indices.
"""

from __future__ import annotations

import logging
from typing import Sequence

from ..errors import InputError

__all__ = ["lora_model", "tied_embeddings"]

logger = logging.getLogger(__name__)


def tied_embeddings(model) -> bool:
    out = model.get_output_embeddings()
    return out is None or out.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()


def _module_name(model, module) -> str:
    for name, m in model.named_modules():
        if m is module:
            return name.rsplit(".", 1)[-1]
    raise InputError(f"{type(model).__name__} has no named module for its embeddings; use full fine-tuning")


def lora_model(model, token_ids: Sequence[int], *, rank: int = 8, alpha: float | None = None, dropout: float = 0.0):
    """``model`` wrapped by peft: LoRA (``rank``, ``alpha`` = 2 * rank by default) on every
    linear layer but the output head, plus the ``token_ids`` rows of the input and output
    embeddings. Only those train; ``merge_and_unload()`` gives a plain model back."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise InputError("LoRA needs the peft package: pip install peft (or use finetune 'full')") from None
    ids = sorted(int(i) for i in token_ids)
    emb = _module_name(model, model.get_input_embeddings())
    tied = tied_embeddings(model)
    tokens = {emb: ids} if tied else {emb: ids, _module_name(model, model.get_output_embeddings()): ids}
    cfg = LoraConfig(r=int(rank), lora_alpha=float(alpha if alpha is not None else 2 * rank), lora_dropout=float(dropout),
                     target_modules="all-linear", trainable_token_indices=tokens, task_type="CAUSAL_LM")
    peft = get_peft_model(model, cfg)
    n_train = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    logger.info("LoRA rank %d on %s: %d trainable parameters (SID rows: %d tokens, tied head: %s)", rank, type(model).__name__, n_train,
                len(ids), tied)
    return peft
