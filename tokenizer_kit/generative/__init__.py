"""Generative side: SIDs into any Hugging Face causal LM (tokens added and initialised, items <-> text).

>>> from tokenizer_kit.generative import sid_causal_lm
>>> lm = sid_causal_lm("tok/", model="smollm2", sid_init="mean")
>>> lm.save("smollm2-sids/")   # AutoModelForCausalLM / AutoTokenizer.from_pretrained load it anywhere
>>> lm.text_to_items("<a_3> <b_1> <c_7> <d_0>")

The causal-LM companion (``evaluate-retrieval --arch causal-lm``) trains such a model on
users' histories: :mod:`tokenizer_kit.companion`.
"""

from .._exports import lazy_exports
from ._sid_lm import INITS, MAPPING_NAME, SIDCausalLM, SIDLMConfig, sid_causal_lm, tokenizer_codebooks

# the embedding initialisation and LoRA import torch: they load on first use
_LAZY = {"codebook_vectors": "._init", "init_sid_rows": "._init", "lora_model": "._lora"}

__all__ = ["INITS", "MAPPING_NAME", "SIDCausalLM", "SIDLMConfig", "codebook_vectors", "init_sid_rows", "lora_model", "sid_causal_lm",
           "tokenizer_codebooks"]


__getattr__ = lazy_exports(__name__, _LAZY)
