"""import-index --policy ... --out DIR: another tool's SIDs as a collision-free index where
lookups, constrained decoding and cold start (new items with their codes) work."""

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.cli.app import app
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import IndexConfig, SIDIndex, TrieLogitsProcessor, import_sid_index

runner = CliRunner()


def _write_lcrec(path, ids, sids):
    path.write_text(json.dumps({str(i): [f"<{'abcd'[l]}_{c}>" for l, c in enumerate(r)] for i, r in zip(ids, sids.tolist())}))
    return path


@pytest.fixture
def other_tool(tmp_path):
    rng = np.random.default_rng(0)
    sids = rng.integers(0, 5, (400, 3))
    sids[:, 0] = np.minimum(sids[:, 0], 3)  # skewed: more collisions
    return _write_lcrec(tmp_path / "other.index.json", [f"p{k}" for k in range(400)], sids), sids


@pytest.mark.parametrize("policy", ["suffix", "reassign"])
def test_import_makes_a_collision_free_index(tmp_path, other_tool, policy):
    path, sids = other_tool
    tok, idx = import_sid_index(path, config=IndexConfig(policy=policy), codebook_sizes=[4, 5, 40] if policy == "reassign" else None)
    assert idx.stats["collision_rate_codes"] > 0.3 and idx.stats["duplicate_sids"] == 0
    assert idx.sid_length == (4 if policy == "suffix" else 3)
    idx.check()
    same = (idx.sids[:, :3] == sids).all(1)
    _, inv, cnt = np.unique(sids, axis=0, return_inverse=True, return_counts=True)
    alone = cnt[inv.ravel()] == 1
    assert same.all() if policy == "suffix" else (same[alone].all() and alone.any())  # reassign keeps items alone on their code
    idx.save(tok, tmp_path / "imp")
    t = SemanticTokenizer.from_pretrained(tmp_path / "imp")
    back = SIDIndex.from_tokenizer(t)
    np.testing.assert_array_equal(back.sids, idx.sids)
    assert back.item_of(back.sid_of("p7")) == "p7"
    # cold start: new items come with their codes; nothing existing moves; no SID repeats
    new, table, summary = back.assign(t, ["n1", "n2", "n3"], codes=np.array([[0, 0, 0], [0, 0, 0], [3, 4, 4]]))
    assert summary["new"] == 3 and len({tuple(r["codes"]) for r in table}) == 3
    np.testing.assert_array_equal(new.sids[:400], back.sids)
    new.save(t)
    again = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "imp"))
    assert len(again) == 403 and len(again.segments) == 1
    again.check()
    # constrained decoding over the imported index: only its SIDs are reachable
    vocab = again.vocab(base=3)
    proc = TrieLogitsProcessor(again.trie, vocab, eos_token_id=2)
    first = proc(torch.zeros((1, 1), dtype=torch.long), torch.zeros((1, vocab.vocab_end)))
    allowed = sorted(int(vocab.id_code[i]) for i in torch.isfinite(first[0]).nonzero().flatten().tolist())
    assert allowed == sorted(set(again.sids[:, 0].tolist()))
    with pytest.raises(InputError, match="no model to encode embeddings"):
        t.encode(np.zeros((1, 1), np.float32))
    with pytest.raises(InputError, match="outside"):
        back.assign(t, ["n9"], codes=np.array([[0, 0, 99]]))


def test_import_index_cli_out_then_lookup_and_assign(tmp_path, other_tool):
    path, sids = other_tool
    res = runner.invoke(app, ["import-index", str(path), "--format", "json"])  # report only, as before
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["duplicate_sids"] > 0 and "out" not in rep
    out = tmp_path / "imp"
    res = runner.invoke(app, ["import-index", str(path), "--policy", "suffix", "--out", str(out), "--format", "json"])
    assert res.exit_code == 0, res.output
    rep = json.loads(res.stdout)
    assert rep["index"]["duplicate_sids"] == 0 and rep["index"]["sid_length"] == 4 and rep["out"] == str(out)
    res = runner.invoke(app, ["lookup", str(out), "--item", "p3", "--format", "json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["item"]["codes"][:3] == sids[3].tolist()
    new = _write_lcrec(tmp_path / "new.index.json", ["n1", "n2"], np.array([[1, 1, 1], [2, 2, 2]]))
    res = runner.invoke(app, ["assign", str(new), "--tokenizer", str(out), "--update", "--format", "json", "--print-items"])
    assert res.exit_code == 0, res.output
    up = json.loads(res.stdout)
    assert up["updated"] and up["index_items"] == 402 and [r["codes"][:3] for r in up["lookup"]] == [[1, 1, 1], [2, 2, 2]]
    res = runner.invoke(app, ["import-index", str(path), "--out", str(out)])
    assert res.exit_code != 0 and "overwrite" in res.output
    res = runner.invoke(app, ["import-index", str(path), "--levels", "0", "--out", str(tmp_path / "x")])
    assert res.exit_code != 0 and "levels" in res.output and not (tmp_path / "x").exists()
