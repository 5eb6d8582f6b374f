"""Collision policies are objects chosen from a registry: a new policy is one class."""

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import InputError
from tokenizer_kit.indexer import POLICIES, CollisionPolicy, IndexConfig, SIDIndex, get_policy, register_policy
from tokenizer_kit.indexer.policies import Placement, Resolution


def _data(n, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


class ProbePolicy(CollisionPolicy):
    """Length L; a taken SID moves to the next free last-level code of its prefix (cyclic)."""

    name = "probe-test"

    @staticmethod
    def _probe(code, used, K):
        for step in range(K):
            c = (code + step) % K
            if c not in used:
                return c
        raise InputError("prefix full")

    def build(self, codes, *, sizes, x, decode, err, retired, suffix_reserve):
        out = codes.copy()
        used: dict[tuple, set] = {}
        for r in [] if retired is None else retired.tolist():
            used.setdefault(tuple(r[:-1]), set()).add(r[-1])
        for i in range(len(codes)):
            u = used.setdefault(tuple(codes[i, :-1].tolist()), set())
            out[i, -1] = self._probe(int(codes[i, -1]), u, sizes[-1])
            u.add(int(out[i, -1]))
        moved = (out != codes).any(1)
        return Resolution(sids=out, moved=moved, extra=np.zeros(len(codes)))

    def place_new(self, codes, *, view, retired, sizes, x, decode):
        out = codes.copy()
        used: dict[tuple, set] = {}
        for i in range(len(codes)):
            p = tuple(codes[i, :-1].tolist())
            if p not in used:
                used[p] = set(view.allowed_next(list(p)).tolist()) | {r[-1] for r in retired.tolist() if tuple(r[:-1]) == p}
            out[i, -1] = self._probe(int(codes[i, -1]), used[p], sizes[-1])
            used[p].add(int(out[i, -1]))
        moved = (out != codes).any(1)
        return Placement(sids=out, collided=moved, moved=moved)


@pytest.fixture
def probe():
    register_policy(ProbePolicy)
    yield ProbePolicy.name
    POLICIES.pop(ProbePolicy.name)


def test_a_new_policy_is_one_class(tmp_path, probe):
    x = _data(400, seed=3)
    ids = np.asarray([f"i{k}" for k in range(400)], dtype=object)
    tok = SemanticTokenizer.build(x[:300], ids=ids[:300], codebook_sizes=[8, 8, 16], seed=0)
    assert len(np.unique(tok.codes, axis=0)) < 300  # the codes collide
    idx = SIDIndex.for_tokenizer(tok, config=IndexConfig(policy=probe), x=x[:300])
    assert idx.sid_length == 3 and idx.stats["duplicate_sids"] == 0 and idx.stats["moved_items"] > 0
    idx.save(tok, tmp_path / "tok")
    tok = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    back = SIDIndex.from_tokenizer(tok)
    assert back.policy == probe
    new, table, summary = back.assign(tok, ids[300:], x[300:], replace=False)
    assert summary["new"] == 100 and summary["collided"] > 0
    np.testing.assert_array_equal(new.sids[:300], idx.sids)  # nothing moved
    assert len(np.unique(new.sids, axis=0)) == 400
    new.check()


def test_registry_lookup_and_sid_lengths():
    assert list(POLICIES)[:3] == ["suffix", "reassign", "none"]
    assert [get_policy(p).sid_length(3) for p in ("suffix", "reassign", "none")] == [4, 3, 3]
    assert get_policy("suffix").level_sizes([8, 8], 5) == [8, 8, 5]
    with pytest.raises(InputError, match="unknown collision policy 'nope'"):
        get_policy("nope")
    with pytest.raises(InputError, match="policy must be one of"):
        IndexConfig(policy="nope").validate()
