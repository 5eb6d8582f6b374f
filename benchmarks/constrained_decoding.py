"""Constrained vs unconstrained beam search over Office SIDs with a random-init causal LM.

Builds (or reads) an indexed Office tokenizer, makes a random-init Llama over the SID
vocabulary (+ pad/bos/eos), and times ``generate`` at beam 8 and 32 three ways:
unconstrained, ``TrieLogitsProcessor`` (batched torch mask) and ``prefix_allowed_tokens_fn``
(Python per beam). Every constrained output is checked to be a real item. Writes
``benchmarks/results/constrained_decoding.json``.

    python benchmarks/constrained_decoding.py [--tokenizer DIR] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from _machine import machine_info as machine  # benchmarks/ is on sys.path when run as a script

import numpy as np

_DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tokenizer_kit import SemanticTokenizer  # noqa: E402
from tokenizer_kit.indexer import IndexConfig, SIDIndex, TrieLogitsProcessor, prefix_allowed_tokens_fn  # noqa: E402


def office_index(tok_dir: str | None):
    if tok_dir:
        tok = SemanticTokenizer.from_pretrained(tok_dir)
        idx = SIDIndex.from_tokenizer(tok)
        return idx
    x = np.load(_DATA / "office_minilm_f16.npy").astype(np.float32)
    ids = [l.strip() for l in open(_DATA / "office_minilm_f16.ids.txt")]
    tok = SemanticTokenizer.build(x, ids=ids, codebook_sizes=[256] * 3, seed=1234)
    return SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"), x=x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: stable timings on a shared machine)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "constrained_decoding.json"))
    args = ap.parse_args()
    from transformers import LlamaConfig, LlamaForCausalLM, LogitsProcessorList

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    idx = office_index(args.tokenizer)
    trie = idx.trie
    vocab = idx.vocab(base=3)
    V = 3 + len(vocab)
    real = {tuple(r) for r in idx.sids.tolist()}
    S = idx.sid_length
    results = {"machine": machine(), "items": len(idx), "sid_length": S, "level_sizes": idx.level_sizes, "vocab": V,
               "prompts": args.prompts, "prompt_len": args.prompt_len, "repeats": args.repeats, "runs": []}
    rng = np.random.default_rng(0)
    prompts = torch.tensor(rng.integers(3, V, (args.prompts, args.prompt_len)), dtype=torch.long, device=args.device)
    for model_name, hidden, layers in (("tiny-2x64", 64, 2), ("small-4x256", 256, 4)):
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=V, hidden_size=hidden, intermediate_size=hidden * 4, num_hidden_layers=layers,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                          pad_token_id=0, bos_token_id=1, eos_token_id=2)
        model = LlamaForCausalLM(cfg).eval().to(args.device)
        for beam in (8, 32):
            kw = dict(max_new_tokens=S, num_beams=beam, num_return_sequences=beam, do_sample=False,
                      pad_token_id=0, eos_token_id=2)

            # built once and reused across generate calls, as a serving process would
            proc = TrieLogitsProcessor(trie, vocab, eos_token_id=2, device=args.device)  # the SID start is found per generate
            fn = prefix_allowed_tokens_fn(trie, vocab, prompt_length=args.prompt_len, eos_token_id=2)

            def run(mode):
                with torch.no_grad():
                    if mode == "unconstrained":
                        return model.generate(prompts, **kw)
                    if mode == "processor":
                        return model.generate(prompts, logits_processor=LogitsProcessorList([proc]), **kw)
                    return model.generate(prompts, prefix_allowed_tokens_fn=fn, **kw)

            modes = ("unconstrained", "processor", "prefix_fn")
            times = {m: [] for m in modes}
            valid = {}
            for m in modes:
                out = run(m)  # warm-up; also the validity check
                gen = out[:, args.prompt_len :].tolist()
                ok = 0
                for g in gen:
                    try:
                        ok += tuple(vocab.decode_codes(g)) in real
                    except Exception:
                        pass
                valid[m] = ok / len(gen)
            for _ in range(args.repeats):
                for m in modes:  # interleaved so machine noise hits all modes alike
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    run(m)
                    if args.device == "cuda":
                        torch.cuda.synchronize()
                    times[m].append(time.perf_counter() - t0)
            med = {m: statistics.median(v) for m, v in times.items()}
            row = {
                "model": model_name, "beam": beam, "device": args.device,
                "median_seconds": med,
                "ratio_processor": med["processor"] / med["unconstrained"],
                "ratio_prefix_fn": med["prefix_fn"] / med["unconstrained"],
                "valid_rate": valid,
                "sequences": args.prompts * beam,
            }
            print(json.dumps(row), flush=True)
            results["runs"].append(row)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
