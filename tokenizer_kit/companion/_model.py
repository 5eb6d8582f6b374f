"""A small generative retriever over SID tokens: history SIDs -> the next item's SID.

Token ids: 0 pad, 1 eos, 2 bos (the T5 decoder start), 3 sep, then the SID tokens of the
index's ``SIDVocab`` (one block per level, from id 4). A history of m items is the m SIDs
flattened, m * S tokens.

* ``t5`` (TIGER's choice): a randomly initialised ``T5ForConditionalGeneration``; the
  encoder reads ``history + eos``, the decoder writes ``bos`` then the S target tokens.
* ``decoder``: a randomly initialised ``LlamaForCausalLM`` reading ``history + sep`` and
  continuing with the S target tokens (prompts left-padded, so every row's SID starts at
  the same position, as the trie processor wants).

Inference is beam search under the indexer's ``TrieLogitsProcessor`` (its own loop for t5,
``transformers`` ``generate`` for the decoder), so every returned SID is an item's; beams
come back best first.

SIDs shared by several items (another tool's index without zero-collision reassignment, or
policy ``none``) stay in the trie once, so the beam search can generate them. A generated
SID stands for all of its items:

* scoring (``user_ranks``): collision-corrected, as CollisionGenRec defines it: the items of
  a beam SID take the next G item positions in a uniformly random order, so each item
  metric is the expectation over that order (``_metrics``); the SID-level Recall/NDCG are
  reported beside them, as the literature computes them;
* ranked item lists (``rank``, ``recommend``): every item of a beam SID at that SID's rank,
  in index order, until k items are listed.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from .._progress import Progress, ProgressTask, as_progress
from .._torch_utils import cpu_threads, decay_groups, warmup_decay
from ..errors import ArtifactError, InputError
from ..io import ArtifactKind
from ._config import RetrievalConfig, list_retrieval_presets

if TYPE_CHECKING:
    from ._metrics import UserRanks

__all__ = ["COMPANION", "RetrievalConfig", "GenerativeRetriever", "list_retrieval_presets", "PAD_ID", "EOS_ID", "BOS_ID", "SEP_ID", "SPECIAL_TOKENS"]

logger = logging.getLogger(__name__)

# the saved model's directory (``GenerativeRetriever.save``/``load``): manifest.json and model.safetensors
COMPANION = ArtifactKind(
    name="companion",
    legacy_manifest_names=("config.json",),
    # 1: "format": "tokenizer-kit-companion", no package version or checksums; 2: sealed
    format_version=2,
    sealed_since=2,
    what="companion model directory",
    fix="save it again with GenerativeRetriever.save (or rerun evaluate-retrieval with `model_out`)",
    required=lambda fv, data: {"model.safetensors"},
    legacy_formats=("tokenizer-kit-companion",),
    legacy_files=lambda fv, data: {"model.safetensors": None},
)

PAD_ID, EOS_ID, BOS_ID, SEP_ID = 0, 1, 2, 3
SPECIAL_TOKENS = 4


@contextlib.contextmanager
def _plain_generation_config(model):
    """Within the block ``model.generation_config`` is a default ``GenerationConfig`` (its
    special token ids kept): sampling, top-k/top-p, penalties or forced tokens that a
    pretrained model's config sets cannot reach a ``generate`` call (values left unset in
    a call fall back to the model's config)."""
    from transformers import GenerationConfig

    model = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft: generate runs the base model's
    old = getattr(model, "generation_config", None)
    if old is None:
        yield
        return
    keep = {k: getattr(old, k, None) for k in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")}
    model.generation_config = GenerationConfig(**{k: v for k, v in keep.items() if v is not None})
    try:
        yield
    finally:
        model.generation_config = old


def _build_model(cfg: RetrievalConfig, vocab_size: int, max_positions: int):
    from transformers import LlamaConfig, LlamaForCausalLM, T5Config, T5ForConditionalGeneration

    if cfg.arch == "t5":
        mc = T5Config(
            vocab_size=vocab_size,
            d_model=cfg.d_model,
            d_kv=cfg.d_kv or cfg.d_model // cfg.n_heads,
            d_ff=cfg.d_ff,
            num_layers=cfg.n_layers,
            num_decoder_layers=cfg.n_layers,
            num_heads=cfg.n_heads,
            dropout_rate=cfg.dropout,
            feed_forward_proj="relu",
            pad_token_id=PAD_ID,
            eos_token_id=EOS_ID,
            bos_token_id=BOS_ID,
            decoder_start_token_id=BOS_ID,
            tie_word_embeddings=True,
        )
        return T5ForConditionalGeneration(mc)
    mc = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=2 * cfg.n_layers,  # as deep as the t5 model's encoder + decoder
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_heads,
        max_position_embeddings=max_positions,
        attention_dropout=cfg.dropout,
        pad_token_id=PAD_ID,
        eos_token_id=EOS_ID,
        bos_token_id=BOS_ID,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(mc)


class GenerativeRetriever:
    """The model plus what maps items to tokens and back (an ``SIDIndex``'s SIDs, vocabulary and trie).

    >>> r = GenerativeRetriever(index, RetrievalConfig(epochs=5))
    >>> r.fit(split.train_hist, split.train_target)          # per-epoch mean losses
    >>> ranked = r.rank(split.test_hist)                     # (n, beam) item rows, -1 = empty
    """

    def __init__(self, index, config: RetrievalConfig | None = None, *, model=None, vocab=None):
        self.config = (config or RetrievalConfig()).validate()
        self.index = index
        # the token ids of the SID tokens: after the 4 special ids, or where an LM's tokenizer put them
        self.vocab = vocab if vocab is not None else index.vocab(base=SPECIAL_TOKENS)
        self.pad_id, self.eos_id = PAD_ID, EOS_ID
        self.trie = index.trie
        self.S = int(index.sid_length)
        self.item_tokens = self.vocab.encode_batch(index.sids)  # [n_items, S] token ids
        self.vocab_size = int(self.vocab.vocab_end)
        # SIDs -> item rows: mixed-radix keys of every item's codes, sorted, for a searchsorted lookup
        self._radix = np.asarray(self.vocab.level_sizes[: self.S], np.int64)
        keys = self._keys(self.item_tokens)
        self._key_order = np.argsort(keys, kind="stable")
        self._sorted_keys = keys[self._key_order]
        # distinct SIDs ("groups"): the group of each item and the items per group
        self._group_keys, self.item_group, self.group_size = np.unique(keys, return_inverse=True, return_counts=True)
        self.device = self.config.torch_device()
        self.max_positions = self.config.max_history * self.S + self.S + 2
        if model is None:
            torch.manual_seed(self.config.seed)
            model = _build_model(self.config, self.vocab_size, self.max_positions)
        self.model = model.to(self.device)
        self.history: list[dict[str, Any]] = []

    # ---- sizes ----------------------------------------------------------------------------
    @property
    def n_parameters(self) -> int:
        return int(sum(p.numel() for p in self.model.parameters()))

    def _keys(self, tok: np.ndarray) -> np.ndarray:
        """SID token ids (n, S) -> one int64 key per row (from the codes: an LM's large token ids never overflow it)."""
        key = np.zeros(len(tok), np.int64)
        code = self.vocab.id_code[np.clip(tok, 0, len(self.vocab.id_code) - 1)]  # [n, S], -1 for non-SID ids
        for l in range(self.S):
            key = key * self._radix[l] + np.maximum(code[:, l], 0)
        return key

    # ---- batches ----------------------------------------------------------------------------
    def _prompt(self, hist: np.ndarray) -> np.ndarray:
        hist = np.asarray(hist, np.int64)[-self.config.max_history :]
        toks = self.item_tokens[hist].reshape(-1)  # [m * S]
        end = EOS_ID if self.config.arch == "t5" else SEP_ID
        return np.append(toks, end)

    def _batch(self, hists: list[np.ndarray], targets: np.ndarray | None) -> dict[str, torch.Tensor]:
        prompts = [self._prompt(h) for h in hists]
        B = len(prompts)
        P = max(len(p) for p in prompts)
        ids = np.full((B, P), self.pad_id, np.int64)
        mask = np.zeros((B, P), np.int64)
        left = self.config.arch != "t5"
        for i, p in enumerate(prompts):
            if left:
                ids[i, P - len(p) :], mask[i, P - len(p) :] = p, 1
            else:
                ids[i, : len(p)], mask[i, : len(p)] = p, 1
        out = {"input_ids": ids, "attention_mask": mask}
        if targets is not None:
            tgt = self.item_tokens[np.asarray(targets, np.int64)]  # [B, S]
            if self.config.arch == "t5":
                out["labels"] = np.concatenate([tgt, np.full((B, 1), EOS_ID, np.int64)], 1)  # [B, S+1]
            else:
                out["input_ids"] = np.concatenate([ids, tgt], 1)  # [B, P+S]
                out["attention_mask"] = np.concatenate([mask, np.ones_like(tgt)], 1)
                labels = np.full(out["input_ids"].shape, -100, np.int64)
                labels[:, P:] = tgt
                out["labels"] = labels
        if left:
            m = out["attention_mask"]
            out["position_ids"] = np.maximum(np.cumsum(m, 1) - 1, 0)
        return {k: torch.as_tensor(v, device=self.device) for k, v in out.items()}

    # ---- training ----------------------------------------------------------------------------
    def fit(
        self,
        hists: list[np.ndarray],
        targets: np.ndarray,
        *,
        valid: tuple[list[np.ndarray], np.ndarray] | None = None,
        on_epoch: Callable[[dict[str, Any]], None] | None = None,
        progress: Progress | None = None,
    ) -> list[dict[str, Any]]:
        """Train on (history, target) examples; returns one record per epoch (mean loss,
        seconds, step, validation metrics when ``eval_every`` scores ``valid``).

        AdamW (the package's parameter groups) with linear warmup and linear decay; with
        ``eval_every`` the weights of the best validation epoch (NDCG at the largest cut-off)
        are kept. ``on_epoch(record)`` is called after each epoch; ``progress`` gets one
        task advanced per step with the loss.
        """
        with cpu_threads(self.config.cpu_threads, self.device):
            return self._fit(hists, targets, valid=valid, on_epoch=on_epoch, progress=progress)

    def _fit(self, hists, targets, *, valid, on_epoch, progress) -> list[dict[str, Any]]:
        cfg = self.config
        if len(targets) == 0:
            raise InputError("no training examples; users need at least 2 interactions with SIDs for a training target under leave-one-out")
        targets = np.asarray(targets, np.int64)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        total = max(1, math.ceil(len(targets) / cfg.batch_size) * cfg.epochs)
        total = min(total, cfg.max_steps) if cfg.max_steps else total
        opt, sched = self._optimizer(total)
        lengths = np.asarray([min(len(h), cfg.max_history) for h in hists], np.int64)
        best: tuple[float, dict | None] = (-1.0, None)
        step, stale = 0, 0
        with as_progress(progress).task("retrieval train", total=total, unit="step") as task:
            for epoch in range(1, cfg.epochs + 1):
                t0 = time.perf_counter()
                loss, step = self._train_epoch(hists, targets, lengths, gen, opt, sched, step, task, last=total)
                rec: dict[str, Any] = {"epoch": epoch, "loss": loss, "seconds": time.perf_counter() - t0, "step": step}
                done = epoch == cfg.epochs or step >= total
                if valid is not None and cfg.eval_every and (epoch % cfg.eval_every == 0 or done):
                    best = self._validate_epoch(valid, rec, best)
                    stale = 0 if rec.get("best") else stale + 1
                logger.info("epoch %d/%d loss %.4f (%.1fs)%s", epoch, cfg.epochs, rec["loss"], rec["seconds"],
                            f" valid {rec['valid']}" if "valid" in rec else "")
                self.history.append(rec)
                if on_epoch is not None:
                    on_epoch(rec)
                if cfg.patience and stale >= cfg.patience:
                    rec["early_stop"] = True
                    logger.info("early stop after epoch %d: no better validation NDCG in %d scorings", epoch, stale)
                    break
                if done:
                    break
        if best[1] is not None:
            self.model.load_state_dict(best[1])
        return self.history

    def _optimizer(self, total: int):
        """The optimizer over the package's parameter groups and its LR schedule over ``total`` steps.

        ``linear``: linear warmup (``warmup_steps``, or ``warmup_ratio`` of the steps), then
        linear decay to 0. ``inverse_sqrt`` (T5, TIGER): constant for ``warmup_steps``
        (or ``warmup_ratio`` of the steps), then ``lr * sqrt(warmup_steps / step)``.
        """
        cfg = self.config
        groups = decay_groups(self.model.named_parameters(), cfg.weight_decay)
        if cfg.optimizer == "adafactor":
            opt = torch.optim.Adafactor(groups, lr=cfg.lr)
        else:
            opt = torch.optim.AdamW(groups, lr=cfg.lr)
        warm = cfg.warmup_steps or max(1, int(cfg.warmup_ratio * total))
        if cfg.lr_schedule == "inverse_sqrt":
            return opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda step: math.sqrt(warm / max(step + 1, warm)))
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, warmup_decay(total, warm, shape="linear"))

    def _train_epoch(self, hists, targets, lengths, gen, opt, sched, step: int, task: ProgressTask, *, last: int) -> tuple[float, int]:
        """One pass over the examples in length-bucketed shuffled batches, stopping at step
        ``last``: (mean loss, step)."""
        cfg = self.config
        self.model.train()
        loss_sum, seen = 0.0, 0
        for sel in self._epoch_batches(lengths, gen):
            if step >= last:
                break
            batch = self._batch([hists[i] for i in sel], targets[sel])
            loss = self.model(**batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            loss_sum += float(loss.detach()) * len(sel)
            seen += len(sel)
            task.advance(1, loss=float(loss.detach()))
        return loss_sum / seen, step

    def _validate_epoch(self, valid, rec: dict[str, Any], best: tuple[float, dict | None]) -> tuple[float, dict | None]:
        """Score the validation users into ``rec["valid"]``; returns the best (score, weights) so far."""
        cfg = self.config
        vh, vt = valid
        toks, _ = self.generate_sids(vh)
        rec["valid"] = self.user_ranks(toks, vt).metrics(cfg.ks)
        score = rec["valid"][f"item_ndcg@{max(cfg.ks)}"]
        if score > best[0]:
            rec["best"] = True
            return score, {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return best

    def _epoch_batches(self, lengths: np.ndarray, gen: torch.Generator) -> list[np.ndarray]:
        """Shuffled batches of similar history length (sorted within pools of 50 batches: less padding), in shuffled order."""
        bs = self.config.batch_size
        perm = torch.randperm(len(lengths), generator=gen).numpy()
        pool = 50 * bs
        batches = []
        for s in range(0, len(perm), pool):
            chunk = perm[s : s + pool]
            chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + bs] for i in range(0, len(chunk), bs))
        order = torch.randperm(len(batches), generator=gen).tolist()
        return [batches[i] for i in order]

    @torch.no_grad()
    def loss(self, hists: list[np.ndarray], targets: np.ndarray) -> float:
        """Mean loss (eval mode) of the examples."""
        with cpu_threads(self.config.cpu_threads, self.device):
            return self._loss(hists, targets)

    def _loss(self, hists: list[np.ndarray], targets: np.ndarray) -> float:
        self.model.eval()
        tot, cnt = 0.0, 0
        for s in range(0, len(targets), self.config.eval_batch_size):
            sl = slice(s, s + self.config.eval_batch_size)
            b = self._batch(hists[sl], np.asarray(targets)[sl])
            tot += float(self.model(**b).loss) * len(b["input_ids"])
            cnt += len(b["input_ids"])
        return tot / max(cnt, 1)

    # ---- inference -----------------------------------------------------------------------------
    @torch.no_grad()
    def generate_sids(self, hists: list[np.ndarray], *, progress: Progress | None = None, description: str = "decode") -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search: SID token ids (n, beam, S) best first, and their
        scores (n, beam). ``progress`` gets one task (``description``) advanced per batch."""
        with cpu_threads(self.config.cpu_threads, self.device), as_progress(progress).task(description, total=len(hists), unit="user") as task:
            cfg = self.config
            self.model.eval()
            out_tok = np.zeros((len(hists), cfg.beam_size, self.S), np.int64)
            out_score = np.zeros((len(hists), cfg.beam_size), np.float32)
            # batches of similar history length: far less padding (most histories are short)
            order = np.argsort([min(len(h), cfg.max_history) for h in hists], kind="stable")
            for s in range(0, len(hists), cfg.eval_batch_size):
                sel = order[s : s + cfg.eval_batch_size]
                out_tok[sel], out_score[sel] = self._generate_batch([hists[i] for i in sel])
                task.advance(len(sel))
        return out_tok, out_score

    @torch.no_grad()
    def _generate_batch(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """One batch of :meth:`generate_sids`: (B, beam, S) token ids and (B, beam) scores.

        t5 runs :meth:`_beam_search_t5`; the decoder-only model runs ``transformers``'
        ``generate``. Both return the beam search's result (sum of token log-probabilities,
        best first); slots the trie cannot fill (fewer valid SIDs than beams) score -inf.
        """
        if self.config.arch == "t5":
            return self._beam_search_t5(self._batch(hists, None))
        return self._generate_hf(hists)

    @torch.no_grad()
    def _beam_search_t5(self, b: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
        """Trie-constrained beam search with the encoder run once per user.

        What ``generate`` does, minus its per-step copies: the first decoder step runs on the B
        users (not B * beam rows), and the cross-attention cache is then repeated once per
        beam and never reordered again, because beams only ever move within their own user
        (``generate`` reorders it every step: most of its time at these sizes). Scores are
        sums of log-softmax over the full vocabulary, masked to the trie's children, as
        ``generate`` with :class:`~tokenizer_kit.indexer.TrieLogitsProcessor` and
        ``length_penalty=0``.
        """
        from transformers import DynamicCache, EncoderDecoderCache
        from transformers.modeling_outputs import BaseModelOutput

        from ..indexer import TrieLogitsProcessor

        K, S = self.config.beam_size, self.S
        ids, mask = b["input_ids"], b["attention_mask"]
        B = ids.shape[0]
        proc = TrieLogitsProcessor(self.trie, self.vocab, prompt_length=1, eos_token_id=None)
        enc = self.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state  # [B, T, d]
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        gen = torch.full((B, 1), BOS_ID, dtype=torch.long, device=ids.device)  # [B, 1+t]
        score = torch.zeros(B, 1, device=ids.device)  # [B, beams so far]
        for t in range(S):
            out = self.model(encoder_outputs=BaseModelOutput(last_hidden_state=enc), attention_mask=mask,
                             decoder_input_ids=gen[:, -1:], past_key_values=cache, use_cache=True)
            logp = proc(gen, torch.log_softmax(out.logits[:, -1].float(), -1))  # [rows, V], -inf off the trie
            V = logp.shape[1]
            total = (score.reshape(-1, 1) + logp).reshape(B, -1)  # [B, beams * V]
            score, flat = total.topk(min(K, total.shape[1]), dim=1)  # [B, K]
            if score.shape[1] < K:  # a vocabulary smaller than the beam: empty slots
                pad = K - score.shape[1]
                score = torch.cat([score, score.new_full((B, pad), float("-inf"))], 1)
                flat = torch.cat([flat, flat.new_zeros((B, pad))], 1)
            src = torch.arange(B, device=ids.device)[:, None] * (total.shape[1] // V) + flat // V  # [B, K] source rows
            if t == 0:  # B rows -> B * K: the caches and encoder states repeat once per beam
                cache.self_attention_cache.batch_repeat_interleave(K)
                cache.cross_attention_cache.batch_repeat_interleave(K)
                enc, mask = enc.repeat_interleave(K, 0), mask.repeat_interleave(K, 0)
                src = torch.arange(B, device=ids.device).repeat_interleave(K)
            else:
                src = src.reshape(-1)
                cache.self_attention_cache.reorder_cache(src)
            gen = torch.cat([gen[src], (flat % V).reshape(-1, 1)], 1)
        toks = gen[:, 1:].reshape(B, K, S)
        toks = torch.where(torch.isinf(score)[..., None], torch.full_like(toks, PAD_ID), toks)  # empty slots: no SID
        return toks.cpu().numpy(), score.float().cpu().numpy()

    @torch.no_grad()
    def _generate_hf(self, hists: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """``transformers`` ``generate`` under the trie processor (the decoder-only model)."""
        from transformers import LogitsProcessorList

        from ..indexer import TrieLogitsProcessor

        cfg = self.config
        beam = cfg.beam_size
        b = self._batch(hists, None)
        B = b["input_ids"].shape[0]
        # t5: the SID follows the decoder start token; decoder: it follows the whole prompt
        prompt_len = 1 if cfg.arch == "t5" else b["input_ids"].shape[1]
        # a beam whose prefix has no continuation may only end (eos); its score is then -inf
        proc = TrieLogitsProcessor(self.trie, self.vocab, prompt_length=prompt_len, eos_token_id=self.eos_id)
        with _plain_generation_config(self.model):
            res = self.model.generate(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"], logits_processor=LogitsProcessorList([proc]),
                **self._beam_settings(), return_dict_in_generate=True, output_scores=False,
            )
        seq = res.sequences[:, prompt_len : prompt_len + self.S]  # [B*beam, <=S]
        if seq.shape[1] < self.S:
            seq = torch.nn.functional.pad(seq, (0, self.S - seq.shape[1]), value=self.pad_id)
        sc = getattr(res, "sequences_scores", None)  # None: generate returns them only with every step's scores
        scores = sc.reshape(B, beam).float().cpu().numpy() if sc is not None else np.zeros((B, beam), np.float32)
        return self._drop_dead_beams(seq.reshape(B, beam, self.S).cpu().numpy(), scores)

    def _drop_dead_beams(self, seq: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beams (B, beam, S) that are no item's SID, or repeat a better beam's, become -1 tokens at
        score -inf. ``generate`` fills beams it cannot extend (fewer SIDs than beams under a
        prefix) with tokens of -inf (or -1e9) score, which may leave the trie or copy a live beam."""
        groups = self.sid_groups(seq)  # [B, beam]
        dead = (groups < 0) | ~np.isfinite(scores)
        for i, row in enumerate(groups):
            _, first = np.unique(row, return_index=True)
            repeat = np.ones(len(row), bool)
            repeat[first] = False
            dead[i] |= repeat
        seq = np.where(dead[..., None], -1, seq)
        return seq, np.where(dead, -np.inf, scores).astype(np.float32)

    def _beam_settings(self) -> dict[str, Any]:
        """Every ``generate`` setting of the beam search, explicit: greedy beams over exactly S
        tokens, nothing sampled, reweighted or penalised, whatever the model's generation config says."""
        beam = self.config.beam_size
        return dict(
            num_beams=beam, num_return_sequences=beam, max_new_tokens=self.S, min_new_tokens=self.S, do_sample=False,
            early_stopping=True, length_penalty=0.0, temperature=1.0, top_k=None, top_p=None, repetition_penalty=1.0,
            no_repeat_ngram_size=0, pad_token_id=self.pad_id, eos_token_id=self.eos_id,
            decoder_start_token_id=BOS_ID if self.config.arch == "t5" else None,
        )

    def _is_sid(self, flat: np.ndarray) -> np.ndarray:
        """Rows (n,) of token ids (n, S) that are SID tokens of levels 0..S-1 in order."""
        V = len(self.vocab.id_level)
        level = self.vocab.id_level[np.clip(flat, 0, V - 1)]  # [n, S]
        return ((flat >= 0) & (flat < V) & (level == np.arange(self.S)[None, :])).all(1)

    def items_of_sids(self, sid_tokens: np.ndarray) -> np.ndarray:
        """Token ids (..., S) -> item row (...) of that SID (first in index order under a collision), -1 if none."""
        flat = np.asarray(sid_tokens, np.int64).reshape(-1, self.S)
        ok = self._is_sid(flat)
        keys = self._keys(np.where(ok[:, None], flat, 0))
        pos = np.searchsorted(self._sorted_keys, keys)
        posc = np.minimum(pos, len(self._sorted_keys) - 1)
        hit = ok & (pos < len(self._sorted_keys)) & (self._sorted_keys[posc] == keys)
        return np.where(hit, self._key_order[posc], -1).reshape(np.shape(sid_tokens)[:-1])

    def sid_groups(self, sid_tokens: np.ndarray) -> np.ndarray:
        """Token ids (..., S) -> id of that SID among the index's distinct SIDs (...), -1 if none.

        ``group_size[g]`` items share SID ``g`` (1 everywhere for a collision-free index)."""
        flat = np.asarray(sid_tokens, np.int64).reshape(-1, self.S)
        ok = self._is_sid(flat)
        keys = self._keys(np.where(ok[:, None], flat, 0))
        pos = np.minimum(np.searchsorted(self._group_keys, keys), len(self._group_keys) - 1)
        hit = ok & (self._group_keys[pos] == keys)
        return np.where(hit, pos, -1).reshape(np.shape(sid_tokens)[:-1])

    def user_ranks(self, sid_tokens: np.ndarray, targets: np.ndarray) -> "UserRanks":
        """Where each target item's SID landed among the generated beams (n, beam, S): the
        :class:`~tokenizer_kit.companion.UserRanks` the standard and collision-corrected
        metrics are computed from."""
        from ._metrics import user_ranks

        return user_ranks(self.sid_groups(sid_tokens), self.item_group[np.asarray(targets, np.int64)], self.group_size)

    def rank(self, hists: list[np.ndarray], *, k: int | None = None, progress: Progress | None = None) -> np.ndarray:
        """Ranked item rows (n, k) for each history (k = beam size by default); -1 fills empty slots."""
        toks, _ = self.generate_sids(hists, progress=progress)
        return self.rank_sids(toks, k=k)

    def rank_sids(self, toks: np.ndarray, *, k: int | None = None) -> np.ndarray:
        """Generated SID token ids (n, beam, S), best first -> ranked item rows (n, k); -1 fills empty slots."""
        k = self.config.beam_size if k is None else int(k)
        first = self.items_of_sids(toks)  # [n, beam]
        n = len(toks)
        out = np.full((n, k), -1, np.int64)
        dup = len(self._sorted_keys) != len(np.unique(self._sorted_keys))
        for i in range(n):
            rows: list[int] = []
            for j, r in enumerate(first[i].tolist()):
                if r < 0:
                    continue
                if dup:  # every item of a shared SID takes the SID's rank
                    key = self._keys(toks[i, j][None, :])[0]
                    lo, hi = np.searchsorted(self._sorted_keys, [key, key + 1])
                    cand = sorted(self._key_order[lo:hi].tolist())
                else:
                    cand = [r]
                for c in cand:
                    if c not in rows:
                        rows.append(c)
                if len(rows) >= k:
                    break
            rows = rows[:k]
            out[i, : len(rows)] = rows
        return out

    def recommend(self, histories: list[list], *, k: int = 10) -> list[list]:
        """Item ids in -> top-k item ids out (unknown history items are ignored)."""
        hist_rows = [np.asarray([r for r in (self.index.row_of(i) for i in h) if r >= 0], np.int64) for h in histories]
        ranked = self.rank(hist_rows, k=k)
        ids = self.index.item_ids
        return [[ids[r].item() if hasattr(ids[r], "item") else ids[r] for r in row if r >= 0] for row in ranked.tolist()]

    # ---- persistence -----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike, *, lock_timeout: float | None = None) -> Path:
        """Directory with ``manifest.json`` (kind ``COMPANION``: retrieval config, vocab
        layout, versions, checksums) and ``model.safetensors``, switched in atomically."""
        from safetensors.torch import save_model

        from ..io import write_artifact

        path = Path(path)
        with write_artifact(path, COMPANION, overwrite=True, lock_timeout=lock_timeout) as w:
            save_model(self.model, str(w.dir / "model.safetensors"))
            w.fields.update(
                config=self.config.to_dict(),
                sid_length=self.S,
                level_sizes=self.vocab.level_sizes,
                vocab_size=self.vocab_size,
                n_items=int(len(self.index)),
            )
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, index) -> "GenerativeRetriever":
        """Load a saved model for ``index`` (the SIDs it was trained on); strict, never unpickles."""
        from ..io import read_artifact

        return read_artifact(path, COMPANION, lambda m: cls._load(m, index))

    @classmethod
    def _load(cls, m, index) -> "GenerativeRetriever":
        from safetensors import SafetensorError
        from safetensors.torch import load_model

        path = m.path
        meta = m.data
        try:
            r = cls(index, RetrievalConfig.from_dict(meta["config"], legacy=True))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ArtifactError(f"{path}: the retrieval config in its manifest is missing or ill-typed ({' '.join(str(e).split())[:160]})") from None
        if r.vocab.level_sizes != meta.get("level_sizes") or r.S != meta.get("sid_length"):
            raise ArtifactError(
                f"{path}: model was trained on SIDs with level sizes {meta.get('level_sizes')}, this index has {r.vocab.level_sizes}; "
                "load it with the index it was trained on"
            )
        try:
            load_model(r.model, str(m.file("model.safetensors")), strict=True, device=str(r.device))
        except (SafetensorError, OSError, RuntimeError, ValueError) as e:
            raise ArtifactError(f"{path}/model.safetensors does not load into the model ({' '.join(str(e).split())[:160]})") from None
        return r
