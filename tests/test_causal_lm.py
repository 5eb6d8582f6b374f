"""SIDs in a Hugging Face causal LM: tokens added and initialised, items <-> text, the causal-LM
companion (training, trie-constrained beams, generation-config overrides) and its CLI.

A randomly initialised tiny Llama (hidden 32, 2 layers) with a word-level tokenizer, both
built here, stands for the LM; SIDs are an RQ-Kmeans tokenizer of the bundled Office
embeddings (16 x 16 x 16 codes plus the collision suffix)."""

import json
import time

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.companion import CausalLMRetriever, RetrievalConfig, load_sid_index, random_sid_index
from tokenizer_kit.errors import InputError
from tokenizer_kit.generative import MAPPING_NAME, SIDCausalLM, lora_model, sid_causal_lm
from tokenizer_kit.indexer import SIDIndex

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "items", "the", "user", "bought,", "oldest", "first:", "next", "item:"]
TINY = dict(arch="causal-lm", epochs=1, batch_size=32, eval_batch_size=16, lr=1e-2, max_history=5, max_eval_users=16,
            cpu_threads=1)


def _tiny_lm(path, *, tied=True):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    t = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(WORDS), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=tied))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return _tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="module")
def tiny_lm_untied(tmp_path_factory):
    return _tiny_lm(tmp_path_factory.mktemp("tiny_lm_untied"), tied=False)


@pytest.fixture(scope="module")
def office_tok(office_emb, tmp_path_factory):
    from tokenizer_kit import SemanticTokenizer

    ids, x = office_emb
    d = tmp_path_factory.mktemp("office_tok") / "tok"
    SemanticTokenizer.build(x, ids=ids, codebook_sizes=[16, 16, 16], seed=0).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def office_split(office_dir, office_tok):
    from tokenizer_kit.companion import sequence_split

    return sequence_split(office_dir / "Office.inter.json", load_sid_index(office_tok), max_history=5, max_users=150)


# ---- SID tokens in the LM ------------------------------------------------------------------
def test_sid_tokens_added_saved_and_reloaded_by_plain_transformers(office_tok, tiny_lm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = sid_causal_lm(office_tok, tiny_lm)
    index = load_sid_index(office_tok)
    n_sid = sum(index.level_sizes)
    assert len(lm.tokenizer) == len(WORDS) + n_sid
    assert lm.model.get_input_embeddings().num_embeddings == len(WORDS) + n_sid
    assert lm.sid_token_ids == list(range(len(WORDS), len(WORDS) + n_sid))
    # each SID token is one token, whether written together or with spaces
    text = lm.items_to_text(index.item_ids[:2].tolist())
    assert lm.tokenizer(text, add_special_tokens=False)["input_ids"] == lm.item_token_ids()[:2].reshape(-1).tolist()
    lm.save(tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / MAPPING_NAME).is_file()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tok.convert_tokens_to_ids(lm.vocab.tokens()) == lm.sid_token_ids
    assert torch.equal(model.get_input_embeddings().weight, lm.model.get_input_embeddings().weight)
    back = SIDCausalLM.load(tmp_path / "out")
    assert back.text_to_items(text) == index.item_ids[:2].tolist()
    assert np.array_equal(back.sids, index.sids)


def test_init_mean_is_near_the_mean_and_codebook_keeps_the_spread(office_tok, tiny_lm):
    mean = sid_causal_lm(office_tok, tiny_lm, sid_init="mean").model.get_input_embeddings().weight.detach().double()
    code = sid_causal_lm(office_tok, tiny_lm, sid_init="codebook").model.get_input_embeddings().weight.detach().double()
    n = len(WORDS)
    old = mean[:n]
    assert torch.equal(old, code[:n])  # existing rows untouched
    mu = old.mean(0)
    old_rms = (old - mu).pow(2).sum(1).mean().sqrt()
    new_mean = (mean[n:] - mu).pow(2).sum(1).mean().sqrt()
    assert 0 < new_mean < 0.3 * old_rms  # the mean plus a little noise: distinct, close to the mean
    assert len(torch.unique(mean[n:], dim=0)) == len(mean) - n
    # codebook levels (3 x 16 tokens): as far from the mean as the existing rows, on average
    books = code[n : n + 48]
    assert torch.isclose((books - mu).pow(2).sum(1).mean().sqrt(), old_rms, rtol=1e-4)


def test_init_codebook_needs_codebooks(office_tok, tiny_lm, tmp_path):
    index = load_sid_index(office_tok)
    index.export_lcrec(tmp_path / "x.index.json")
    with pytest.raises(InputError, match="codebook"):
        sid_causal_lm(tmp_path / "x.index.json", tiny_lm, sid_init="codebook")


def test_items_to_text_and_back_with_spaces_special_tokens_and_partial_sids(office_tok, tiny_lm):
    lm = sid_causal_lm(office_tok, tiny_lm)
    ids = lm.item_ids[[0, 5, 77]].tolist()
    text = lm.items_to_text(ids)
    assert lm.text_to_items(text) == ids
    spaced = " ".join(text.replace("><", "> <").split()) + "</s><pad>"
    assert lm.text_to_items(spaced) == ids
    assert lm.token_ids_to_items(lm.tokenizer(spaced, add_special_tokens=False)["input_ids"]) == ids
    first = lm.items_to_text(ids[:1])
    assert lm.text_to_items("<a_1><b_2> " + first) == [None, ids[0]]  # a partial SID, then a whole one
    assert lm.text_to_items(first[: first.rindex("<")]) == [None]  # cut before its last level
    assert lm.text_to_items("<b_1><a_0>") == [None]  # out of level order
    # a well-formed SID no item has
    unused = next(c for c in range(16) if not ((lm.sids[:, 0] == 15) & (lm.sids[:, 1] == c)).any())
    assert lm.text_to_items(f"<a_15><b_{unused}><c_0><d_0>") == [None]
    assert lm.text_to_items("no sids here </s>") == []
    with pytest.raises(InputError, match="no SID"):
        lm.items_to_text(["not-an-item"])


# ---- the causal-LM companion -----------------------------------------------------------------
def _embedding_rows(model, ids):
    """The effective input embedding rows (peft's trainable-token deltas included)."""
    with torch.no_grad():
        return model.get_input_embeddings()(torch.as_tensor(ids)).detach().clone()


@pytest.mark.parametrize("finetune", ["full", "lora"])
def test_training_moves_the_sid_rows_and_lora_leaves_the_rest(office_tok, tiny_lm, office_split, finetune):
    index = load_sid_index(office_tok)
    r = CausalLMRetriever(index, RetrievalConfig(**TINY, model=str(tiny_lm), finetune=finetune))
    sid_ids = r.lm.sid_token_ids
    old_ids = list(range(len(WORDS)))
    before_new, before_old = _embedding_rows(r.model, sid_ids), _embedding_rows(r.model, old_ids)
    hist, tgt = office_split.train_hist[:192], office_split.train_target[:192]
    loss0 = r.loss(hist, tgt)
    r.fit(hist, tgt)
    after_new, after_old = _embedding_rows(r.model, sid_ids), _embedding_rows(r.model, old_ids)
    used = np.unique(r.item_tokens[tgt].reshape(-1))
    moved = (after_new - before_new).abs().sum(1) > 0
    assert moved[np.searchsorted(sid_ids, used)].all()  # every SID token of a training target trained
    assert r.loss(hist, tgt) < loss0
    if finetune == "lora":
        assert torch.equal(after_old, before_old)
        assert r.n_trainable < r.n_parameters / 2
    else:
        assert not torch.equal(after_old, before_old)


def test_loss_is_on_the_target_tokens_only(office_tok, tiny_lm, office_split):
    from tokenizer_kit.companion import GenerativeRetriever

    r = CausalLMRetriever(load_sid_index(office_tok), RetrievalConfig(**TINY, model=str(tiny_lm)))
    hist, tgt = office_split.train_hist[:8], office_split.train_target[:8]
    full = GenerativeRetriever._batch(r, hist, tgt)  # labels over every position
    assert ((full["labels"] != -100).sum(1) == r.S).all()
    assert (full["labels"][:, -r.S :] == torch.as_tensor(r.item_tokens[tgt])).all()
    b = r._batch(hist, tgt)  # the output layer on the last S + 1 positions only
    assert b["labels"].shape == (8, r.S + 1)
    with torch.no_grad():
        assert torch.isclose(r.model(**b).loss, r.model(**full).loss, atol=1e-5)


def test_max_steps_is_a_step_budget(office_tok, tiny_lm, office_split):
    r = CausalLMRetriever(load_sid_index(office_tok), RetrievalConfig(**{**TINY, "epochs": 3}, model=str(tiny_lm), max_steps=4))
    hist = r.fit(office_split.train_hist[:320], office_split.train_target[:320])  # 10 steps an epoch
    assert [h["step"] for h in hist] == [4]
    with pytest.raises(InputError, match="max_steps"):
        RetrievalConfig(max_steps=0).validate()


def test_lora_trains_the_sid_rows_of_an_untied_output_layer(office_tok, tiny_lm_untied):
    lm = sid_causal_lm(office_tok, tiny_lm_untied)
    peft = lora_model(lm.model, lm.sid_token_ids, rank=2)
    names = [n for n, p in peft.named_parameters() if p.requires_grad and "lora_" not in n]
    assert any("embed_tokens" in n for n in names) and any("lm_head" in n for n in names)


def test_beams_are_real_items_and_generation_config_cannot_change_them(office_tok, tiny_lm, office_split):
    index = load_sid_index(office_tok)
    r = CausalLMRetriever(index, RetrievalConfig(**TINY, model=str(tiny_lm)))
    r.fit(office_split.train_hist[:64], office_split.train_target[:64])
    hist = office_split.test_hist[:12]
    toks, scores = r.generate_sids(hist)
    assert toks.shape == (12, 10, index.sid_length)
    assert (r.sid_groups(toks) >= 0).all() and np.isfinite(scores).all()  # every beam is an item's SID
    ranked = r.rank_sids(toks)
    assert (ranked >= 0).all() and all(len(set(row)) == len(row) for row in ranked.tolist())
    via_generate = r._generate_hf(hist)[0]
    gc = r.model.generation_config
    gc.do_sample, gc.top_k, gc.top_p, gc.temperature = True, 2, 0.05, 0.01
    gc.repetition_penalty, gc.no_repeat_ngram_size, gc.num_beams = 3.0, 1, 2
    toks2, scores2 = r.generate_sids(hist)
    assert np.array_equal(toks, toks2) and np.allclose(scores, scores2)
    assert np.array_equal(r._generate_hf(hist)[0], via_generate)  # generate itself: the same beams
    assert r.model.generation_config is gc  # restored after decoding


def test_own_beam_search_finds_the_beams_of_generate(office_tok, tiny_lm, office_split):
    r = CausalLMRetriever(load_sid_index(office_tok), RetrievalConfig(**TINY, model=str(tiny_lm)))
    r.fit(office_split.train_hist[:64], office_split.train_target[:64])
    hist = office_split.test_hist[:12]
    ours, scores = r._generate_batch(hist)
    theirs, _ = r._generate_hf(hist)
    assert np.array_equal(ours, theirs)
    assert np.isfinite(scores).all() and (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_more_beams_than_items_drops_the_dead_beams(tiny_lm):
    ids = [f"i{k}" for k in range(6)]
    sids = random_sid_index(ids, [3, 3], seed=0).sids
    index = SIDIndex(item_ids=np.asarray(ids, dtype=object), sids=sids, raw_codes=sids, codebook_sizes=[3, 3], policy="none")
    r = CausalLMRetriever(index, RetrievalConfig(**{**TINY, "beam_size": 10}, model=str(tiny_lm)))
    hist = [np.asarray([0, 1], np.int64), np.asarray([2], np.int64)]
    toks, scores = r.generate_sids(hist)
    assert np.array_equal(toks, r._generate_hf(hist)[0])  # generate: no crash, the same live beams
    groups = r.sid_groups(toks)
    for row, sc in zip(groups, scores):
        live = row[row >= 0]
        assert sorted(live.tolist()) == sorted(set(live.tolist())) and len(live) == 6  # each item once
        assert np.isinf(sc[row < 0]).all() and np.isfinite(sc[row >= 0]).all()
    assert (r.rank_sids(toks)[:, :6] >= 0).all() and (r.rank_sids(toks)[:, 6:] == -1).all()


def test_causal_lm_config_errors():
    with pytest.raises(InputError, match="arch causal-lm needs"):
        RetrievalConfig(arch="causal-lm").validate()
    with pytest.raises(InputError, match="arch t5 builds its own"):
        RetrievalConfig(model="smollm2").validate()


# ---- CLI -----------------------------------------------------------------------------------
def test_cli_causal_lm_companion_end_to_end(office_tok, tiny_lm, office_dir, tmp_path):
    res = CliRunner().invoke(app, [
        "evaluate-retrieval", "-t", str(office_tok), "-i", str(office_dir / "Office.inter.json"), "--arch", "causal-lm",
        "--model", str(tiny_lm), "--finetune", "lora", "--epochs", "1", "--max-users", "120", "--max-eval-users", "16",
        "--max-history", "5", "--batch-size", "32", "--eval-batch-size", "16", "--lr", "0.01",
        "--model-out", str(tmp_path / "trained"), "--format", "json",
    ])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["config"]["arch"] == "causal-lm" and data["config"]["finetune"] == "lora"
    assert data["test"]["users"] == 16 and data["test"]["invalid_sid_rate"] == 0.0
    assert 0.0 <= data["test"]["item_hit@5"] <= data["test"]["item_hit@10"] <= 1.0
    assert data["trainable_parameters"] < data["parameters"]
    back = CausalLMRetriever.load(tmp_path / "trained", load_sid_index(office_tok))
    assert back.config.max_history == 5 and back.lm.extra["companion"]["config"]["finetune"] == "lora"


def test_cli_sid_lm_writes_a_loadable_model(office_tok, tiny_lm, tmp_path):
    res = CliRunner().invoke(app, ["sid-lm", str(office_tok), "--model", str(tiny_lm), "--sid-init", "codebook",
                                   "--out", str(tmp_path / "lm"), "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["sid_tokens"] == sum(load_sid_index(office_tok).level_sizes) and data["items"] == 2420
    assert SIDCausalLM.load(tmp_path / "lm").vocab.level_sizes == data["level_sizes"]


@pytest.mark.parametrize("argv, says", [
    (["--arch", "causal-lm", "--model", "{tmp}/nope"], "does not exist"),
    (["--arch", "causal-lm", "--model", "{tok}"], "not an HF model directory"),
    (["--arch", "causal-lm"], "needs --model"),
])
def test_cli_bad_model_is_one_line_error(office_tok, office_dir, tmp_path, argv, says):
    argv = [a.format(tmp=tmp_path, tok=office_tok) for a in argv]
    res = CliRunner().invoke(app, ["evaluate-retrieval", "-t", str(office_tok), "-i", str(office_dir / "Office.inter.json"), *argv])
    assert res.exit_code != 0
    lines = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and says in lines[0], res.output
    assert "Traceback" not in res.output


@pytest.mark.slow
def test_smollm2_gets_the_sid_tokens_offline(office_tok, tmp_path):
    t0 = time.perf_counter()
    lm = sid_causal_lm(office_tok, "smollm2")
    seconds = time.perf_counter() - t0
    n_sid = sum(load_sid_index(office_tok).level_sizes)
    assert len(lm.tokenizer) == 49152 + n_sid
    assert lm.model.get_input_embeddings().num_embeddings == 49152 + n_sid
    ids = lm.item_ids[:3].tolist()
    assert lm.text_to_items(lm.tokenizer.decode(lm.tokenizer(lm.items_to_text(ids))["input_ids"])) == ids
    print(f"SmolLM2-135M + {n_sid} SID tokens: {seconds:.1f}s")
    lm.save(tmp_path / "smol")  # loaded from a GGUF file, saved as plain safetensors
    from transformers import AutoModelForCausalLM

    back = AutoModelForCausalLM.from_pretrained(tmp_path / "smol")
    assert torch.equal(back.get_input_embeddings().weight, lm.model.get_input_embeddings().weight)
