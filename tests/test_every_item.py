"""Every catalogue item gets a SID, or a named reason (issue 21, item 6).

``extract`` names the items without content (count and first ids, in the log, the result and
the store manifest) and handles them by ``empty_items`` (embed by default, skip, fail); a
retrieval comparison of sets that scored different users pairs on the users they share and
says how many each set left out.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.features import FeatureStore


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """10 items; i3 (blank title) and i7 (no title) have no content in any text field."""
    d = tmp_path_factory.mktemp("cat")
    titles = [f"blue office stapler model {k}" for k in range(10)]
    titles[3], titles[7] = "   ", None
    pq.write_table(pa.table({"item_id": [f"i{k}" for k in range(10)], "title": titles, "tags": pa.array([None] * 10, pa.string())}),
                   d / "catalog.parquet")
    return d / "catalog.parquet"


def _extract(catalog, out, *extra):
    return CliRunner().invoke(app, ["extract", str(catalog), "--out", str(out), "--text-fields", "title,tags", "--format", "json", *extra])


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_extract_embeds_items_without_content_by_default_and_names_them(tmp_path, catalog):
    r = _extract(catalog, tmp_path / "f")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n_items"] == 10 and d["n_empty_items"] == 2 and d["empty_item_ids"] == ["i3", "i7"] and d["empty_items"] == "embed"
    assert "2 of 10 items have no content" in r.stderr and "i3, i7" in r.stderr  # the warning names count and ids
    st = FeatureStore.open(tmp_path / "f")
    assert st.item_ids == [f"i{k}" for k in range(10)]  # every item keeps its row, in catalogue order
    assert st.manifest["empty_items"] == {"policy": "embed", "n": 2, "first_ids": ["i3", "i7"]}
    assert [r["item_id"] for r in st.records()["embedded_empty"]] == ["i3", "i7"] and st.records()["skipped"] == []
    t3, s3 = st.get("i3")
    t7, _ = st.get("i7")
    assert len(t3) >= 1 and (s3 == 0).all()  # the empty text's tokens, under the first text field
    np.testing.assert_array_equal(t3, t7)  # the same placeholder for every empty item
    assert not np.array_equal(st.get("i0")[0][: len(t3)], t3)


def test_extract_skip_leaves_them_out_with_a_record(tmp_path, catalog):
    r = _extract(catalog, tmp_path / "f", "--empty-items", "skip")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["n_items"] == 8 and d["n_empty_items"] == 2 and d["empty_items"] == "skip" and d["n_skipped_items"] == 2
    assert "left out of the store" in r.stderr
    st = FeatureStore.open(tmp_path / "f")
    assert "i3" not in st.item_ids and st.manifest["empty_items"]["first_ids"] == ["i3", "i7"]


def test_extract_fail_refuses_before_any_compute(tmp_path, catalog):
    before = sorted(p.name for p in tmp_path.iterdir())
    r = _extract(catalog, tmp_path / "f", "--empty-items", "fail")
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and "2 of 10 items have no content" in lines[0] and "i3, i7" in lines[0] and "--empty-items" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no store, no lock, nothing written


def test_empty_items_is_one_setting_for_cli_pipeline_and_python():
    from tokenizer_kit.features import ExtractConfig
    from tokenizer_kit.pipeline import load_config

    assert ExtractConfig().empty_items == "embed"
    with pytest.raises(ValueError, match="empty_items"):
        ExtractConfig(empty_items="drop").validate()
    r = CliRunner().invoke(app, ["extract", "--help"])
    assert "--empty-items" in r.output
    with pytest.raises(ValueError, match="empty_items"):
        load_config({"data": {"catalog": __file__, "interactions": __file__}, "extract": {"empty_items": "drop"}})


# ---- comparison of sets that scored different users ----------------------------------------------
TINY = ["--d-model", "32", "--d-ff", "64", "--n-layers", "1", "--n-heads", "2", "--batch-size", "32", "--epochs", "1"]


def _ring(n_users=60, n_items=40, seed=0):
    """Users walk the item ring (the companion tests' table)."""
    from tests.test_companion_eval import _ring_table

    return _ring_table(n_users, n_items, seed)


def _lcrec(path, item_ids, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 4, (len(item_ids), 3))
    path.write_text(json.dumps({i: [f"<{'abc'[l]}_{c}>" for l, c in enumerate(row)] for i, row in zip(item_ids, codes.tolist())}))
    return path


def test_compare_pairs_on_shared_users_and_says_how_many_were_left_out(tmp_path):
    inter = tmp_path / "inter.parquet"
    pq.write_table(_ring(), inter)
    full = _lcrec(tmp_path / "full.index.json", [f"i{k}" for k in range(40)], 0)
    # another tool's index without 3 items: their interactions, and so some test users, drop out
    part = _lcrec(tmp_path / "part.index.json", [f"i{k}" for k in range(40) if k not in (5, 17, 30)], 1)
    out = tmp_path / "cmp.json"
    r = CliRunner().invoke(app, ["evaluate-retrieval", "-t", f"full={full}", "-t", f"part={part}", "-i", str(inter), *TINY,
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    runs = data["runs"]
    n_full, n_part = runs["full"][0]["test"]["users"], runs["part"][0]["test"]["users"]
    shared = set(zip(runs["full"][0]["test_users"]["users"], runs["full"][0]["test_users"]["targets"])) & set(
        zip(runs["part"][0]["test_users"]["users"], runs["part"][0]["test_users"]["targets"]))
    assert data["users"] == len(shared) > 0
    assert data["users_left_out"] == {"full": n_full - len(shared), "part": n_part - len(shared)}
    assert data["users_left_out"]["full"] > 0  # the case: the full index scored users the other could not
    assert f"paired on the {len(shared)} test users every set scored" in r.output
    assert "full" in data["comparisons"]["item_hit@10"] or "part" in data["comparisons"]["item_hit@10"]


def test_same_users_pair_as_before_and_unnamed_unpaired_runs_are_refused():
    from tokenizer_kit.companion import UserRanks, summarize_runs
    from tokenizer_kit.errors import InputError

    n = 50

    def run(seed, hits, fp, users=None):
        ur = UserRanks(np.where(hits, 0, -1).astype(np.int64), np.zeros(n, np.int64), np.ones(n, np.int64))
        tu = {"fingerprint": fp, **ur.to_json()}
        if users is not None:
            tu.update(users=users, targets=["t"] * n)
        return {"config": {"seed": seed}, "test_users": tu, "test": ur.metrics((5, 10)), "seconds": {"train": 1.0}}

    rng = np.random.default_rng(0)
    a = [run(0, rng.random(n) < 0.3, "f")]
    b = [run(0, rng.random(n) < 0.3, "f")]
    assert summarize_runs({"a": a, "b": b}, n_boot=50)["users_left_out"] == {"a": 0, "b": 0}
    with pytest.raises(InputError, match="run them again"):
        summarize_runs({"a": a, "b": [run(0, rng.random(n) < 0.3, "g")]}, n_boot=50)
    ua = [f"u{k}" for k in range(n)]
    ub = [f"u{k}" for k in range(10, n + 10)]
    out = summarize_runs({"a": [run(0, rng.random(n) < 0.3, "f", ua)], "b": [run(0, rng.random(n) < 0.3, "g", ub)]}, n_boot=50)
    assert out["users"] == 40 and out["users_left_out"] == {"a": 10, "b": 10}
    with pytest.raises(InputError, match="share no test user"):
        summarize_runs({"a": [run(0, rng.random(n) < 0.3, "f", ua)], "b": [run(0, rng.random(n) < 0.3, "g", [f"x{k}" for k in range(n)])]})
