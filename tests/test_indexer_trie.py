"""SIDTrie, SIDVocab and constrained decoding over the trie."""

import numpy as np
import pytest
import torch

from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import SIDTrie, SIDVocab, TrieLogitsProcessor, prefix_allowed_tokens_fn


def _random_sids(n, sizes, seed=0, unique=True):
    rng = np.random.default_rng(seed)
    sids = np.stack([rng.integers(0, k, n) for k in sizes], 1)
    if unique:
        sids = np.unique(sids, axis=0)
        sids = sids[rng.permutation(len(sids))]
    return sids


def test_trie_matches_reference_lookups():
    sids = _random_sids(500, [5, 6, 7], seed=1, unique=False)
    trie = SIDTrie.build(sids)
    assert trie.n_items == len(sids)
    assert trie.sid_length == 3
    # leaves are exactly the distinct SIDs
    np.testing.assert_array_equal(trie.leaf_sids(), np.unique(sids, axis=0))
    rows = [tuple(r) for r in sids.tolist()]
    for prefix_len in range(0, 3):
        for p in {r[:prefix_len] for r in rows}:
            ref_next = sorted({r[prefix_len] for r in rows if r[:prefix_len] == p})
            assert trie.allowed_next(list(p)).tolist() == ref_next
            ref_items = sorted(i for i, r in enumerate(rows) if r[:prefix_len] == p)
            assert sorted(trie.items_under(list(p)).tolist()) == ref_items
            assert trie.count_under(list(p)) == len(ref_items)
    for i, r in enumerate(rows[:50]):
        j = trie.item_of(r)
        assert rows[j] == r
    assert trie.allowed_next([4, 5, 6]).size == 0  # full SID: no continuation
    assert trie.count_under([99]) == 0 and trie.item_of([99, 0, 0]) == -1


def test_trie_roundtrip_arrays_and_empty():
    sids = _random_sids(300, [4, 4, 4], seed=2)
    trie = SIDTrie.build(sids)
    back = SIDTrie.from_arrays({k: v.copy() for k, v in trie.state_arrays().items()})
    np.testing.assert_array_equal(back.leaf_sids(), trie.leaf_sids())
    assert SIDTrie.build(np.zeros((0, 3), np.int64)).n_leaves == 0
    with pytest.raises(InputError):
        SIDTrie.build(np.array([[1, -1]]))


def test_vocab_roundtrip_and_offsets(tmp_path):
    v = SIDVocab([4, 5, 3], base=3)
    assert v.offsets == [3, 7, 12]
    assert len(v.tokens()) == 12 and v.tokens()[0] == "<a_0>" and v.tokens()[-1] == "<c_2>"
    ids = v.encode("<a_1><b_2><c_0>")
    assert ids == [4, 9, 12]
    assert v.decode(ids) == "<a_1><b_2><c_0>"
    assert v.decode_codes([0, 4, 9, 12, 2]) == [1, 2, 0]  # specials skipped
    np.testing.assert_array_equal(v.encode_batch(np.array([[1, 2, 0], [3, 4, 2]])), [[4, 9, 12], [6, 11, 14]])
    v.save(tmp_path / "vocab.json")
    w = SIDVocab.load(tmp_path / "vocab.json")
    np.testing.assert_array_equal(w.table, v.table)
    with pytest.raises(InputError):
        v.encode([4, 0, 0])


def test_vocab_from_hf_tokenizer():
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    tk = Tokenizer(models.WordLevel({"[UNK]": 0, "hello": 1}, unk_token="[UNK]"))
    hf = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]")
    v = SIDVocab([3, 2])
    hf.add_tokens(v.tokens())
    w = SIDVocab.from_tokenizer(hf, [3, 2])
    assert w.encode([2, 1]) == hf.convert_tokens_to_ids(["<a_2>", "<b_1>"])
    assert hf.convert_ids_to_tokens(w.encode("<a_0><b_1>")) == ["<a_0>", "<b_1>"]


def _processor_reference(trie, vocab, prefix_ids, V, eos):
    """Allowed ids for one beam the slow way."""
    fn = prefix_allowed_tokens_fn(trie, vocab, prompt_length=0, eos_token_id=eos)
    return sorted(fn(0, torch.tensor(prefix_ids, dtype=torch.long)))


def test_logits_processor_equals_prefix_fn():
    sizes = [6, 5, 4]
    sids = _random_sids(60, sizes, seed=3)
    trie = SIDTrie.build(sids)
    vocab = SIDVocab(sizes, base=3)
    V = 3 + sum(sizes) + 2
    eos = 2
    rng = np.random.default_rng(0)
    for t in range(4):
        # half the beams follow real SIDs, half are random (may leave the trie)
        real = vocab.encode_batch(sids[rng.integers(0, len(sids), 8)])[:, :t]
        rand = rng.integers(0, V, (8, t))
        gen = np.concatenate([real, rand]) if t else np.zeros((16, 0), np.int64)
        prompt = np.full((16, 2), 1)
        ids = torch.tensor(np.concatenate([prompt, gen], 1), dtype=torch.long)
        scores = torch.randn(16, V)
        proc = TrieLogitsProcessor(trie, vocab, prompt_length=2, eos_token_id=eos)
        out = proc(ids, scores.clone())
        for b in range(16):
            allowed = torch.isfinite(out[b]).nonzero().flatten().tolist()
            assert allowed == _processor_reference(trie, vocab, gen[b].tolist(), V, eos)
            assert torch.equal(out[b, allowed], scores[b, allowed])


def _tiny_model(V, seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("mode", ["processor", "prefix_fn"])
def test_generate_emits_only_real_sids(mode):
    from transformers import LogitsProcessorList

    sizes = [8, 8, 8]
    sids = _random_sids(40, sizes, seed=4)  # sparse: 40 of 512 possible SIDs
    trie = SIDTrie.build(sids)
    vocab = SIDVocab(sizes, base=3)
    V = 3 + sum(sizes)
    model = _tiny_model(V)
    real = {tuple(r) for r in sids.tolist()}
    prompts = torch.tensor(np.random.default_rng(5).integers(3, V, (6, 4)), dtype=torch.long)
    kw = dict(max_new_tokens=3, num_beams=8, num_return_sequences=8, do_sample=False, pad_token_id=0, eos_token_id=2)
    with torch.no_grad():
        if mode == "processor":
            proc = TrieLogitsProcessor(trie, vocab, prompt_length=4, eos_token_id=2)
            out = model.generate(prompts, logits_processor=LogitsProcessorList([proc]), **kw)
        else:
            fn = prefix_allowed_tokens_fn(trie, vocab, prompt_length=4, eos_token_id=2)
            out = model.generate(prompts, prefix_allowed_tokens_fn=fn, **kw)
        free = model.generate(prompts, **kw)
    gen = out[:, 4:].tolist()
    assert len(gen) == 48
    for g in gen:
        assert tuple(vocab.decode_codes(g)) in real
    # distinct beams per prompt are distinct items
    for p in range(6):
        assert len({tuple(g) for g in gen[p * 8 : (p + 1) * 8]}) == 8
    # and the unconstrained model does produce invalid ones (the mask does real work)
    assert sum(not _is_valid(vocab, real, g) for g in free[:, 4:].tolist()) > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_under_processor_is_always_valid(seed):
    """Property: over random tries, models and hot sampling, every generated SID is a real item."""
    from transformers import LogitsProcessorList

    rng = np.random.default_rng(seed)
    sizes = [int(k) for k in rng.integers(3, 9, 4)]
    sids = _random_sids(int(rng.integers(10, 60)), sizes, seed=seed + 7)
    trie = SIDTrie.build(sids)
    vocab = SIDVocab(sizes, base=3)
    V = 3 + sum(sizes)
    model = _tiny_model(V, seed=seed)
    real = {tuple(r) for r in sids.tolist()}
    torch.manual_seed(seed)
    prompts = torch.ones((64, 1), dtype=torch.long)
    proc = TrieLogitsProcessor(trie, vocab, eos_token_id=2)
    with torch.no_grad():
        out = model.generate(prompts, logits_processor=LogitsProcessorList([proc]), max_new_tokens=4, do_sample=True,
                             temperature=2.0, pad_token_id=0, eos_token_id=2)
    seen = [tuple(vocab.decode_codes(g)) for g in out[:, 1:].tolist()]
    assert set(seen) <= real and len(set(seen)) > 3 and len(seen) == 64


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_logits_processor_on_cuda_matches_cpu():
    sizes = [16, 16, 8]
    sids = _random_sids(300, sizes, seed=8)
    trie = SIDTrie.build(sids)
    vocab = SIDVocab(sizes, base=3)
    V = 3 + sum(sizes)
    rng = np.random.default_rng(1)
    gen = vocab.encode_batch(sids[rng.integers(0, len(sids), 64)])[:, :2]
    ids = torch.tensor(np.concatenate([np.ones((64, 3), np.int64), gen], 1))
    scores = torch.randn(64, V)
    proc = TrieLogitsProcessor(trie, vocab, prompt_length=3, eos_token_id=2)
    cpu = proc(ids, scores.clone())
    gpu = proc(ids.cuda(), scores.cuda()).cpu()
    assert torch.equal(torch.isfinite(cpu), torch.isfinite(gpu))
    assert torch.isfinite(cpu).sum(1).min() >= 1


def _setup(sizes, n, seed):
    """(sids, trie, vocab with pad/bos/eos before it, vocabulary size, set of real SIDs)."""
    sids = _random_sids(n, sizes, seed=seed)
    return sids, SIDTrie.build(sids), SIDVocab(sizes, base=3), 3 + sum(sizes), {tuple(r) for r in sids.tolist()}


def _is_valid(vocab, real, g) -> bool:
    try:
        return tuple(vocab.decode_codes(g)) in real
    except InputError:
        return False


def _tiny_t5(V, seed=0):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_decoder_layers=1, num_heads=4,
                   pad_token_id=0, eos_token_id=2, decoder_start_token_id=0)
    return T5ForConditionalGeneration(cfg).eval()


def test_processor_finds_the_sid_start_for_t5_without_prompt_length():
    """An encoder-decoder model passes the processor its decoder tokens (start token + SID), never the
    encoder input: the processor needs no prompt_length, and a wrong one says how to fix it."""
    from transformers import LogitsProcessorList

    sids, trie, vocab, V, real = _setup([6, 6, 4], 30, seed=11)
    model = _tiny_t5(V)
    enc = torch.tensor(np.random.default_rng(1).integers(3, V, (4, 6)), dtype=torch.long)
    proc = TrieLogitsProcessor(trie, vocab, eos_token_id=2)
    kw = dict(max_new_tokens=3, num_beams=5, num_return_sequences=5, do_sample=False)
    with torch.no_grad():
        out = model.generate(enc, logits_processor=LogitsProcessorList([proc]), **kw)
        again = model.generate(enc[:2, :3], logits_processor=LogitsProcessorList([proc]), **kw)  # reused, other shapes
        free = model.generate(enc, **kw)
    for o in (out, again):
        assert all(_is_valid(vocab, real, g) for g in o[:, 1:4].tolist())  # after the decoder start token
    assert len(out) == 20 and len(again) == 10
    assert sum(not _is_valid(vocab, real, g) for g in free[:, 1:4].tolist()) > 0
    wrong = TrieLogitsProcessor(trie, vocab, prompt_length=enc.shape[1], eos_token_id=2)  # the encoder's length
    with pytest.raises(InputError, match="leave prompt_length out"), torch.no_grad():
        model.generate(enc, logits_processor=LogitsProcessorList([wrong]), **kw)


def test_reused_processor_follows_prompts_of_any_length():
    """Decoder-only: one processor over generate calls whose prompts get shorter and longer."""
    from transformers import LogitsProcessorList

    sids, trie, vocab, V, real = _setup([8, 8, 8], 40, seed=12)
    model = _tiny_model(V, seed=3)
    proc = TrieLogitsProcessor(trie, vocab, eos_token_id=2)
    rng = np.random.default_rng(2)
    for p in (5, 3, 9, 4):
        prompts = torch.tensor(rng.integers(3, V, (3, p)), dtype=torch.long)
        with torch.no_grad():
            out = model.generate(prompts, logits_processor=LogitsProcessorList([proc]), max_new_tokens=3, num_beams=4,
                                 num_return_sequences=4, do_sample=False, pad_token_id=0, eos_token_id=2)
        assert all(_is_valid(vocab, real, g) for g in out[:, p : p + 3].tolist()), p


def test_add_sid_tokens_extends_tokenizer_and_embeddings():
    from tokenizers import Tokenizer, models
    from transformers import LogitsProcessorList, PreTrainedTokenizerFast

    from tokenizer_kit.indexer import add_sid_tokens

    words = {"[PAD]": 0, "[BOS]": 1, "[EOS]": 2, "hello": 3, "<a_1>": 4}  # one SID token already there
    hf = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel(words, unk_token="[PAD]")), unk_token="[PAD]",
                                 pad_token="[PAD]", eos_token="[EOS]")
    model = _tiny_model(len(words))
    sids = _random_sids(30, [4, 4, 3], seed=13)

    class _Idx:  # what add_sid_tokens reads of a SIDIndex
        level_sizes = [4, 4, 3]

    vocab = add_sid_tokens(hf, _Idx(), model)
    assert len(hf) == 5 + 4 + 4 + 3 - 1 and model.get_input_embeddings().weight.shape[0] == len(hf)
    assert vocab.encode([1, 2, 0]) == hf.convert_tokens_to_ids(["<a_1>", "<b_2>", "<c_0>"]) and vocab.encode([1, 0, 0])[0] == 4
    assert add_sid_tokens(hf, [4, 4, 3], model).encode([3, 3, 2]) == vocab.encode([3, 3, 2])  # idempotent
    proc = TrieLogitsProcessor(SIDTrie.build(sids), vocab, eos_token_id=2)
    prompt = torch.tensor([hf.convert_tokens_to_ids(["[BOS]", "hello"])])
    with torch.no_grad():
        out = model.generate(prompt, logits_processor=LogitsProcessorList([proc]), max_new_tokens=3, num_beams=3,
                             num_return_sequences=3, do_sample=False, pad_token_id=0, eos_token_id=2)
    assert all(tuple(vocab.decode_codes(g)) in {tuple(r) for r in sids.tolist()} for g in out[:, 2:].tolist())
