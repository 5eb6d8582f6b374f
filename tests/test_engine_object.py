"""Engines map, the domain works: one engine object per run, no engine test in the stages,
one suffix numbering (the indexer's policies), the feature store's shard API."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

PKG = Path(__file__).resolve().parents[1] / "tokenizer_kit"


def _imports(path: Path) -> list[str]:
    """The modules ``path`` imports from, relative ones resolved against the package."""
    mod = path.relative_to(PKG.parent).with_suffix("").parts
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(mod[: len(mod) - node.level]) if node.level else []
            out.append(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            out.extend(a.name for a in node.names)
    return out


def test_pipeline_never_tests_the_engine_kind():
    hits = [f"{p.name}:{i}" for p in sorted((PKG / "pipeline").glob("*.py")) for i, line in enumerate(p.read_text().splitlines(), 1)
            if "is_ray" in line]
    assert hits == []


def test_one_suffix_numbering():
    defs = [p.relative_to(PKG).as_posix() for p in PKG.rglob("*.py") for node in ast.walk(ast.parse(p.read_text()))
            if isinstance(node, ast.FunctionDef) and node.name == "_group_positions"]
    assert defs == ["indexer/policies/_suffix.py"]
    for p in sorted((PKG / "engines").glob("*.py")):
        src = p.read_text()
        assert "_POLICIES" not in src and "lexsort" not in src, p.name
        private = [m for m in _imports(p) if m.startswith("tokenizer_kit.indexer.policies._")]
        assert private == [], (p.name, private)
    assert "tokenizer_kit.indexer.policies" in _imports(PKG / "engines" / "_index.py")


def test_extract_engine_uses_only_the_feature_stores_public_api():
    private = [m for m in _imports(PKG / "engines" / "_extract.py")
               if m.startswith(("tokenizer_kit.features.", "tokenizer_kit.io."))]
    assert private == []


def test_policies_say_which_resolve_by_group():
    from tokenizer_kit.indexer.policies import POLICIES, get_policy, group_policies, sid_keys, suffix_sids

    assert set(group_policies()) == {"suffix", "none"} and set(POLICIES) - set(group_policies()) == {"reassign"}
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, (400, 2))
    rank = rng.random(400).round(1)  # ties: numbered by row
    pos = get_policy("suffix").group_positions(sid_keys(codes, [3, 3]), rank)
    assert np.array_equal(pos, suffix_sids(codes, rank=rank)[:, -1])
    assert get_policy("none").group_positions(sid_keys(codes, [3, 3]), rank) is None
    with pytest.raises(NotImplementedError):
        get_policy("reassign").group_positions(sid_keys(codes, [3, 3]), rank)


def test_index_shards_refuses_a_policy_that_needs_every_item(tmp_path):
    from tokenizer_kit.engines import index_shards
    from tokenizer_kit.errors import InputError

    with pytest.raises(InputError, match=r"reassign policy .* not resolved shard by shard; index with one of \['suffix', 'none'\]"):
        index_shards(tmp_path / "none", tmp_path / "out", codebook_sizes=[4, 4], policy="reassign")


def test_engine_is_chosen_once_from_the_config():
    from tokenizer_kit.engines import EngineConfig, LocalEngine, RayEngine, engine_for

    local, ray = engine_for(EngineConfig()), engine_for(EngineConfig(engine="ray", workers=3))
    assert isinstance(local, LocalEngine) and isinstance(ray, RayEngine) and engine_for(None).name == "local"
    assert (local.workers, local.sharded_output, ray.workers, ray.sharded_output) == (1, False, 3, True)
    assert engine_for(ray) is ray


@dataclass
class _Square:
    setups: int = 0
    name: str = "square"

    def setup(self, threads):
        self.setups += 1

    def run(self, shard, out_dir):
        return {"info": {"index": shard.index, "sq": shard.rows ** 2, "out": out_dir}, "stats": None}


def test_local_engine_maps_a_job_over_shards():
    from tokenizer_kit.engines import LocalEngine, plan_rows

    job = _Square()
    res = list(LocalEngine().map(job, plan_rows(10, 4), "d"))
    assert job.setups == 1 and [r["info"]["sq"] for r in res] == [16, 16, 4] and all(r["info"]["out"] == "d" for r in res)
    assert list(LocalEngine().map(_Square(), [], "d")) == []
