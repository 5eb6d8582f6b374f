"""The ray engine against the local one: the same SIDs and features bit for bit, the same
one-line errors (naming the shard and row), resume after a kill. One local Ray cluster
(2 CPUs) serves the whole test session."""

import json
import logging
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tokenizer_kit.engines import AssignParts, EngineConfig, Sharding, assign_sharded, read_shard_manifest
from tokenizer_kit.errors import InputError

RAY2 = EngineConfig(engine="ray", workers=2)
RAY1 = EngineConfig(engine="ray")  # where parallel workers are not the point: one process start less on 2 cores
LOCAL = EngineConfig()
SHARDS_8192 = Sharding(batch_size=4096, shard_size=8192)


@pytest.fixture(scope="session")
def ray_cluster():
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False, object_store_memory=256 << 20)
    yield
    ray.shutdown()


@pytest.fixture
def one_thread():
    """Torch on one thread here, as in each 1-CPU Ray worker: CPU reductions depend on the
    thread count, so the engines agree bit for bit at equal threads per process."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_parquet(path: Path, ids, x: np.ndarray, row_group_size: int | None = None) -> None:
    d = x.shape[1]
    pq.write_table(pa.table({"item_id": pa.array(list(ids)), "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), d)}),
                   path, row_group_size=row_group_size)


def _same_rows(a: pa.Table, b: pa.Table) -> bool:
    """The same columns in the same order, types, rows and schema metadata (a shard
    directory's part fingerprint aside)."""
    from tokenizer_kit.engines._output import SHARD_META_KEY

    def meta(t):
        return {k: v for k, v in (t.schema.metadata or {}).items() if k != SHARD_META_KEY}

    return a.column_names == b.column_names and meta(a) == meta(b) and \
        a.replace_schema_metadata(None).equals(b.replace_schema_metadata(None))


# ---- assign ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """30k x 32 clustered vectors in three Parquet files of odd sizes and small row groups; a
    tokenizer built on them (3 x 16 codes: many collisions, so the summaries are non-trivial)."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.io import Embeddings, make_clustered_embeddings

    d = tmp_path_factory.mktemp("gen")
    x = np.asarray(make_clustered_embeddings(30000, 32, n_topics=16, n_sub=8, seed=3), np.float32)
    ids = np.array([f"it{i}" for i in range(len(x))], dtype=object)
    (d / "emb").mkdir()
    for k, (a, b) in enumerate([(0, 13000), (13000, 13001), (13001, 30000)]):
        _write_parquet(d / "emb" / f"f{k}.parquet", ids[a:b], x[a:b], row_group_size=3000)
    tok = SemanticTokenizer.build(Embeddings(ids=ids, vectors=x), method="rq-kmeans", codebook_sizes=[16, 16, 16])
    tok.save_pretrained(d / "tok")
    return d, x, ids


def test_assign_ray_equals_local_on_generated_set(generated, ray_cluster, tmp_path):
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.build._streaming import StreamingRun, assign_streaming

    d, _, _ = generated
    tok = SemanticTokenizer.from_pretrained(d / "tok")
    ref = assign_streaming(tok, d / "emb", tmp_path / "local.parquet", run=StreamingRun(batch_size=4096))
    ray = assign_sharded(tok, d / "emb", tmp_path / "ray", engine=RAY2, sharding=SHARDS_8192)
    assert ray["shards"] == 6 and ray["shards_run"] == 6  # 13000 -> 2, 1 -> 1, 16999 -> 3: never across files
    assert _same_rows(pq.read_table(tmp_path / "local.parquet"), pq.read_table(tmp_path / "ray"))
    for k in ("n_items", "collision_rate", "unique_sids", "largest_bucket", "already_indexed_items", "sids_shared_with_index"):
        assert ray[k] == ref[k], k
    assert 0 < ref["collision_rate"] < 1 and ref["already_indexed_items"] > 0
    # a tokenizer loaded without its SIDs: the summary reads the indexed SIDs from disk
    lean = assign_sharded(SemanticTokenizer.from_pretrained(d / "tok", load_sids=False), d / "emb", tmp_path / "lean", engine=LOCAL,
                          sharding=SHARDS_8192)
    assert all(lean[k] == ref[k] for k in ("already_indexed_items", "sids_shared_with_index", "unique_sids"))
    m = read_shard_manifest(tmp_path / "ray", verify="sha256")
    assert [s["rows"] for s in m.shards] == [8192, 4808, 1, 8192, 8192, 615]


def test_index_from_shards_equals_in_memory_index(generated, ray_cluster, tmp_path):
    """The suffix policy resolved group by group across shards (buckets of 5,000 rows, so a
    group's items come from several parts and buckets) gives the in-memory index's SIDs."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.engines import index_shards, load_sharded_index
    from tokenizer_kit.indexer import IndexConfig, SIDIndex, embedding_hash

    d, x, ids = generated
    tok = SemanticTokenizer.from_pretrained(d / "tok")
    src = assign_sharded(tok, d / "emb", tmp_path / "codes", engine=LOCAL, sharding=SHARDS_8192, parts=AssignParts(hashes=True, errors=True),
                         summary=False)
    res = index_shards(tmp_path / "codes", tmp_path / "index", codebook_sizes=tok.codebook_sizes, engine=RAY1, bucket_rows=5000)
    assert res["shards"] == src["shards"] == 6 and res["buckets"] == 6 and res["numbered_by"] == "err, then input row"
    got = load_sharded_index(tmp_path / "index")
    codes = np.asarray(tok.encode(x), np.int64)
    ref = SIDIndex.build(ids, codes, codebook_sizes=tok.codebook_sizes, x=tok.preprocess(x), decode=tok.decode)
    assert list(got.item_ids) == list(ids) and np.array_equal(got.sids, ref.sids) and got.suffix_size == ref.suffix_size
    assert res["largest_group"] == ref.stats["largest_bucket_codes"] > 1 and res["max_suffix"] == ref.stats["max_suffix"]
    assert res["items_in_collisions"] == ref.stats["colliding_items_codes"]
    assert np.array_equal(got.emb_hash, embedding_hash(x))
    # without errors the groups are numbered by input row, as in memory without vectors
    assign_sharded(tok, d / "emb", tmp_path / "codes2", engine=LOCAL, sharding=SHARDS_8192, summary=False)
    index_shards(tmp_path / "codes2", tmp_path / "index2", codebook_sizes=tok.codebook_sizes, bucket_rows=7000)
    assert np.array_equal(load_sharded_index(tmp_path / "index2").sids,
                          SIDIndex.build(ids, codes, codebook_sizes=tok.codebook_sizes).sids)
    # saved into the tokenizer directory, it is the stored index (lookups, trie, cold start)
    got.save(tok, d / "tok_sharded")
    back = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(d / "tok_sharded"))
    assert np.array_equal(back.sids, ref.sids) and back.item_of(back.sids[123].tolist()) == ids[123]
    # the verb: index --from-shards writes the sharded SIDs and installs them as the tokenizer's index
    import shutil

    shutil.copytree(d / "tok", tmp_path / "tok")
    r = _cli(["index", tmp_path / "tok", "--from-shards", tmp_path / "codes2", "--shards-out", tmp_path / "sids", "--format", "json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["n_items"] == 30000
    stored = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    assert np.array_equal(stored.sids, SIDIndex.build(ids, codes, codebook_sizes=tok.codebook_sizes).sids)
    r = _cli(["index", tmp_path / "tok", "--from-shards", tmp_path / "codes2"])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "--shards-out" in r.output
    with pytest.raises(InputError, match="not resolved shard by shard"):
        index_shards(tmp_path / "codes", tmp_path / "index3", codebook_sizes=tok.codebook_sizes, policy="reassign")
    assert IndexConfig().policy == "suffix"


def test_kill_and_resume_keeps_finished_shards(generated, ray_cluster, tmp_path):
    """A run killed before its manifest: the parts of this job stay, the rest is redone."""
    from tokenizer_kit import SemanticTokenizer

    d, x, ids = generated
    tok = SemanticTokenizer.from_pretrained(d / "tok")
    out = tmp_path / "out"
    full = assign_sharded(tok, d / "emb", out, engine=LOCAL, sharding=SHARDS_8192)
    whole = pq.read_table(out)
    # the kill: no manifest, one part missing, one part left by another tokenizer, a stray temp file
    (out / "_manifest.json").unlink()
    (out / "part-00004.parquet").unlink()
    other = SemanticTokenizer.build(__import__("tokenizer_kit").io.Embeddings(ids=ids[:3000], vectors=x[:3000]), method="rq-kmeans",
                                    codebook_sizes=[8, 8, 8])
    other.save_pretrained(tmp_path / "other")
    assign_sharded(SemanticTokenizer.from_pretrained(tmp_path / "other"), d / "emb", tmp_path / "o", engine=LOCAL, sharding=SHARDS_8192)
    os.replace(tmp_path / "o" / "part-00001.parquet", out / "part-00001.parquet")
    (out / ".part-00002.parquet.abcdefgh.tmp").write_bytes(b"half")
    kept = {n: (out / n).stat().st_mtime_ns for n in ("part-00000.parquet", "part-00003.parquet", "part-00005.parquet")}
    res = assign_sharded(tok, d / "emb", out, engine=RAY1, sharding=SHARDS_8192)
    assert res["shards_run"] == 2 and res["shards_skipped"] == 4 and not res["complete_before"]
    assert {n: (out / n).stat().st_mtime_ns for n in kept} == kept  # not rewritten
    assert _same_rows(whole, pq.read_table(out)) and res["unique_sids"] == full["unique_sids"]
    again = assign_sharded(tok, d / "emb", out, engine=RAY1, sharding=SHARDS_8192)
    assert again["complete_before"] and again["shards_run"] == 0
    with pytest.raises(Exception, match="another assign"):
        assign_sharded(SemanticTokenizer.from_pretrained(tmp_path / "other"), d / "emb", out, engine=LOCAL, sharding=SHARDS_8192)


def test_ray_workers_return_freed_batch_arrays_to_the_system(ray_cluster, tmp_path):
    """A worker frees its batch's arrays (tens of MiB) after every batch; what it freed must
    leave its resident memory. The job frees one 24 MiB array (which raises glibc's default,
    dynamic mmap threshold to 24 MiB), then allocates eight 16 MiB batches and a 1 MiB array
    after them, and frees the batches: with the default threshold they sit in the heap below the
    1 MiB array and stay resident (128 MiB); the workers start with the threshold fixed."""
    from dataclasses import dataclass

    from tokenizer_kit.engines import engine_for, plan_rows

    @dataclass
    class FreedBatches:
        name: str = "freed"

        def setup(self, threads):
            pass

        def run(self, shard, out_dir):
            def anon_mib():
                with open("/proc/self/status") as f:
                    return next(int(line.split()[1]) for line in f if line.startswith("RssAnon:")) / 1024

            big = np.ones(24 << 18, np.float32)
            del big
            before = anon_mib()
            batches = [np.ones(16 << 18, np.float32) for _ in range(8)]
            pin = np.ones(1 << 18, np.float32)  # after the batches: the heap cannot shrink below it
            del batches
            held = anon_mib() - before
            return {"info": {"index": shard.index, "held_mib": held, "pin": float(pin[0])}, "stats": None}

    res = list(engine_for(RAY1).map(FreedBatches(), plan_rows(1, 1), str(tmp_path)))
    assert len(res) == 1 and res[0]["info"]["held_mib"] < 32, res[0]["info"]


def test_worker_errors_are_the_local_one_line_errors(generated, ray_cluster, tmp_path):
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.build._streaming import StreamingRun, assign_streaming

    d, x, ids = generated
    bad = x[:20000].copy()
    bad[17001, 5] = np.nan
    (tmp_path / "emb").mkdir()
    _write_parquet(tmp_path / "emb" / "a.parquet", ids[:20000], bad)
    tok = SemanticTokenizer.from_pretrained(d / "tok")
    with pytest.raises(InputError) as e0:
        assign_streaming(tok, tmp_path / "emb", tmp_path / "l.parquet", run=StreamingRun(batch_size=4096))
    with pytest.raises(InputError) as e1:
        assign_sharded(tok, tmp_path / "emb", tmp_path / "local", engine=LOCAL, sharding=SHARDS_8192)
    with pytest.raises(InputError) as e2:
        assign_sharded(tok, tmp_path / "emb", tmp_path / "ray", engine=RAY1, sharding=SHARDS_8192)
    msg = str(e2.value)
    assert msg == str(e1.value) and "\n" not in msg
    assert msg.startswith(str(e0.value)) and "row 17001 contains NaN" in msg
    assert "(shard part-00002, input rows 16384-19999)" in msg
    assert not (tmp_path / "ray" / "_manifest.json").exists()  # a failed run never looks finished


# ---- assign on Office through the command line ----------------------------------------------
@pytest.fixture(scope="module")
def office_split(tmp_path_factory):
    """Office MiniLM embeddings: 1800 items to build on, 620 new ones in two Parquet files."""
    from conftest import DATA

    d = tmp_path_factory.mktemp("office")
    x = np.load(DATA / "office_minilm_f16.npy").astype(np.float32)
    ids = (DATA / "office_minilm_f16.ids.txt").read_text().split()
    _write_parquet(d / "base.parquet", ids[:1800], x[:1800])
    (d / "new").mkdir()
    _write_parquet(d / "new" / "a.parquet", ids[1800:2100], x[1800:2100])
    _write_parquet(d / "new" / "b.parquet", ids[2100:], x[2100:])
    return d


def test_office_cold_start_ray_streamed_equals_local(office_split, ray_cluster, tmp_path):
    """Without --print-items both engines stream the cold start: the workers write each
    batch's known SIDs and lookups, the driver gathers only the items to place. Known and
    new items in two shards: the same rows as the local output file, the same summary, the
    same updated index."""
    import shutil

    from conftest import DATA
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex

    d = office_split
    x = np.load(DATA / "office_minilm_f16.npy").astype(np.float32)
    ids = (DATA / "office_minilm_f16.ids.txt").read_text().split()
    (tmp_path / "mix").mkdir()
    _write_parquet(tmp_path / "mix" / "a.parquet", ids[1500:1800], x[1500:1800])  # known
    shutil.copy(d / "new" / "a.parquet", tmp_path / "mix" / "b.parquet")  # new
    r = _cli(["build-codebook", d / "base.parquet", "-o", tmp_path / "tok", "--codebook-size", "16", "--levels", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    shutil.copytree(tmp_path / "tok", tmp_path / "tok2")
    r1 = _cli(["assign", tmp_path / "mix", "-t", tmp_path / "tok", "-o", tmp_path / "l.parquet", "--format", "json", "--update"])
    r2 = _cli(["assign", tmp_path / "mix", "-t", tmp_path / "tok2", "-o", tmp_path / "shards", "--engine", "ray", "--workers", "2",
               "--shard-size", "100", "--batch-size", "4096", "--format", "json", "--update"])
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    a, b = json.loads(r1.stdout), json.loads(r2.stdout)
    for k in ("items", "new", "known", "collided", "moved", "version_after", "index_items", "updated", "lookup_rows"):
        assert a[k] == b[k], k
    assert a["known"] == 300 and a["new"] == 300 and a["updated"] and b["shards"] == 2 and "lookup" not in b
    ta, tb = pq.read_table(tmp_path / "l.parquet"), pq.read_table(tmp_path / "shards")
    assert ta.schema.equals(tb.schema) and ta.equals(tb)
    assert ta.column("status").to_pylist() == ["known"] * 300 + ["new"] * 300
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    i1 = SIDIndex.stored(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    i2 = SIDIndex.stored(SemanticTokenizer.from_pretrained(tmp_path / "tok2"))
    assert np.array_equal(i1.sids, i2.sids) and list(i1.item_ids) == list(i2.item_ids) and i1.version == i2.version == 2


def _cli(args):
    from tokenizer_kit.cli.app import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _assert_ends_with_one_error(stderr: str, *says: str) -> None:
    """What a user piping stderr relies on, however slow the run: one error line, the last one,
    no traceback, and any line before it a progress line (whose timing depends on the load)."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    assert len(errors) == 1 and lines and lines[-1] == errors[0], stderr
    assert all(s in errors[0] for s in says), stderr
    assert "Traceback" not in stderr and all(ln.startswith("INFO tokenizer_kit.progress: ") for ln in lines[:-1]), stderr


def test_office_cold_start_ray_equals_local(office_split, ray_cluster, tmp_path):
    """assign with an index, report only and then --update: both engines map the cold start's
    per-batch function (the ray engine on its workers), so the output tables are the same
    (schema, metadata and rows, in input order), the lookups too (neighbours included), and
    the updated indexes the same."""
    import shutil

    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import SIDIndex

    d = office_split
    r = _cli(["build-codebook", d / "base.parquet", "-o", tmp_path / "tok", "--codebook-size", "16", "--levels", "3", "--format", "json"])
    assert r.exit_code == 0, r.output
    shutil.copytree(tmp_path / "tok", tmp_path / "tok2")
    ray_args = ["--engine", "ray", "--workers", "2", "--shard-size", "100", "--batch-size", "4096", "--format", "json", "--print-items"]
    for update in ([], ["--update"]):
        r1 = _cli(["assign", d / "new", "-t", tmp_path / "tok", "-o", tmp_path / "l.parquet", "--format", "json", "--print-items", *update])
        r2 = _cli(["assign", d / "new", "-t", tmp_path / "tok2", "-o", tmp_path / "shards", *ray_args, *update])
        assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
        a, b = json.loads(r1.stdout), json.loads(r2.stdout)
        for k in ("new", "known", "collided", "moved", "version_after", "index_items", "updated"):
            assert a[k] == b[k], k
        assert a["new"] == 620 and a["collided"] > 0 and b["shards"] == 2 and a["updated"] is bool(update)
        assert a["lookup"] == b["lookup"] and sum(len(x["nearest"]) > 0 for x in a["lookup"]) > 600
        ta, tb = pq.read_table(tmp_path / "l.parquet"), pq.read_table(tmp_path / "shards")
        assert ta.schema.equals(tb.schema, check_metadata=True) and ta.equals(tb)
        assert ta.column_names == ["item_id", "code_0", "code_1", "code_2", "code_3", "sid", "status", "collided", "moved", "nearest"]
        assert ta.column("sid").to_pylist() == [x["sid"] for x in a["lookup"]] and ta.column("sid")[0].as_py().count("<") == 4
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the workers' scratch is gone
    i1 = SIDIndex.stored(SemanticTokenizer.from_pretrained(tmp_path / "tok"))
    i2 = SIDIndex.stored(SemanticTokenizer.from_pretrained(tmp_path / "tok2"))
    assert np.array_equal(i1.sids, i2.sids) and list(i1.item_ids) == list(i2.item_ids) and i1.version == i2.version == 2
    assert np.array_equal(i1.emb_hash, i2.emb_hash)
    # a directory of other files is never replaced by the lookup shards
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    r = _cli(["assign", d / "new", "-t", tmp_path / "tok2", "-o", tmp_path / "mine", *ray_args[:-3]])
    assert r.exit_code != 0 and len(r.output.strip().splitlines()) == 1 and "_manifest.json" in r.output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]


def test_cli_worker_error_is_one_line(office_split, ray_cluster, tmp_path, monkeypatch):
    d = office_split
    monkeypatch.setenv("TOKENIZER_KIT_PROGRESS_EVERY", "0")  # progress lines at every shard: the slowest machine's case
    r = _cli(["build-codebook", d / "base.parquet", "-o", tmp_path / "tok", "--codebook-size", "16", "--levels", "2", "--no-index"])
    assert r.exit_code == 0, r.output
    t = pq.read_table(d / "new" / "b.parquet")
    x = np.stack(t.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    x[250] = np.inf
    (tmp_path / "bad").mkdir()
    _write_parquet(tmp_path / "bad" / "b.parquet", t.column("item_id").to_pylist(), x)
    r = _cli(["assign", tmp_path / "bad", "-t", tmp_path / "tok", "-o", tmp_path / "s", "--engine", "ray", "--shard-size", "100"])
    assert r.exit_code != 0 and r.stdout == ""
    _assert_ends_with_one_error(r.stderr, "row 250 contains inf", "shard part-00000")
    r = _cli(["assign", d / "new", "-t", tmp_path / "tok", "--engine", "ray"])
    assert r.exit_code != 0 and "--out" in r.output


# ---- features: embed-text, extract, embed ----------------------------------------------------
@pytest.fixture(scope="module")
def office_catalog(office_dir, tmp_path_factory):
    """The first 60 Office items as a Parquet catalogue."""
    d = tmp_path_factory.mktemp("cat")
    items = json.loads((office_dir / "Office.item.json").read_text())
    keys = sorted(items, key=int)[:60]
    rows = [{"item_id": k, "title": items[k].get("title", ""), "description": str(items[k].get("description", ""))[:300]} for k in keys]
    pq.write_table(pa.Table.from_pylist(rows), d / "cat.parquet")
    return d / "cat.parquet"


def test_embed_text_ray_equals_local(office_catalog, ray_cluster, one_thread, tmp_path):
    """The same table from both engines; a catalogue's int64 ids stay int64 on both."""
    from tokenizer_kit.pipeline import stages
    from tokenizer_kit.pipeline._verb_configs import TextEmbedConfig

    cat = pq.read_table(office_catalog)
    cat = cat.set_column(0, "item_id", cat.column("item_id").cast(pa.int64()))
    pq.write_table(cat, tmp_path / "cat.parquet")
    base = {"fields": ["title", "description"], "shard_size": 25, "batch_size": 8, "max_length": 64}
    local = stages.embed_text(tmp_path / "cat.parquet", tmp_path / "l.parquet", TextEmbedConfig.from_dict(base))
    ray = stages.embed_text(tmp_path / "cat.parquet", tmp_path / "r", TextEmbedConfig.from_dict({**base, "engine": "ray"}))
    assert ray["shards"] == 3 and local["n_items"] == ray["n_items"] == 60
    a, b = pq.read_table(tmp_path / "l.parquet"), pq.read_table(tmp_path / "r")
    assert _same_rows(a, b) and a.schema.field("item_id").type == pa.int64()
    assert a.column("item_id").to_pylist() == cat.column("item_id").to_pylist()
    assert json.loads(b.schema.metadata[b"tokenizer_kit"]) == json.loads(a.schema.metadata[b"tokenizer_kit"])


def _stores_equal(a, b) -> None:
    from tokenizer_kit.features import FeatureStore

    sa, sb = FeatureStore.open(a), FeatureStore.open(b)
    assert sa.item_ids == sb.item_ids and sa.manifest["shards"] == sb.manifest["shards"]
    for k in ("n_items", "n_tokens", "dim", "segments", "config", "complete", "backend_info", "token_budget"):
        assert sa.manifest.get(k) == sb.manifest.get(k), k
    for i in range(len(sa)):
        assert np.array_equal(sa.tokens(i), sb.tokens(i)) and np.array_equal(sa.segments(i), sb.segments(i))
    assert sa.records() == sb.records()


def test_extract_ray_equals_local_and_adopts_finished_shards(office_catalog, ray_cluster, one_thread, tmp_path):
    from tokenizer_kit.engines._extract import extract_sharded
    from tokenizer_kit.features import ExtractConfig, extract_features
    from tokenizer_kit.features import incoming_dir as _incoming
    from tokenizer_kit.engines._plan import digest, plan_rows
    from tokenizer_kit.features._extract import _catalog_fingerprint
    from tokenizer_kit.pipeline import stages
    from tokenizer_kit.pipeline._stage_configs import ExtractStageConfig

    base = {"text_fields": ["title", "description"], "max_tokens_per_field": 12, "shard_size": 25, "batch_size": 8}
    local = stages.extract(office_catalog, tmp_path / "l", ExtractStageConfig.from_dict(base))
    # the stage's local engine writes the store the in-process extract_features writes
    extract_features(office_catalog, tmp_path / "f", ExtractConfig.from_dict(base))
    _stores_equal(tmp_path / "f", tmp_path / "l")
    cfg = ExtractStageConfig.from_dict({**base, "engine": "ray"})
    # a run killed after a worker wrote shard 1 but before the driver committed it: its files
    # wait in the incoming directory with their record (the same bytes the local store holds)
    ids = [str(i) for i in pq.read_table(office_catalog).column("item_id").to_pylist()]
    store_cfg = {**cfg.store_config(), "catalog": {"n_rows": len(ids), "item_ids_sha256": _catalog_fingerprint(ids)}}
    sh = plan_rows(len(ids), 25)[1]
    sh.input_id = digest(ids[25:50])
    inc = _incoming(tmp_path / "r")
    inc.mkdir(parents=True)
    files = {}
    for part in ("tokens.npy", "offsets.npy", "segments.npy", "item_ids.json", "extra.json"):
        (inc / f"shard-00001.{part}").write_bytes((tmp_path / "l" / f"shard-00001.{part}").read_bytes())
        files[part] = str(inc / f"shard-00001.{part}")
    rec = {"key": sh.key(digest({"job": "extract", "store_config": store_cfg})), "index": 1, "name": "shard-00001", "input_rows": 25,
           "n_items": 25, "n_tokens": int(np.load(inc / "shard-00001.offsets.npy")[-1]), "files": files, "dim": local.dim,
           "backend": {}}
    (inc / "shard-00001.done.json").write_text(json.dumps(rec))
    res = extract_sharded(office_catalog, tmp_path / "r", cfg, engine=cfg.execution)
    assert res.n_items == local.n_items == 60 and res.n_tokens == local.n_tokens and not inc.exists()
    _stores_equal(tmp_path / "l", tmp_path / "r")


def test_embed_ray_equals_local(ray_cluster, one_thread, tmp_path):
    from _align_helpers import cluster_pairs, clustered_store
    from tokenizer_kit.alignment import AlignRunConfig, train_alignment
    from tokenizer_kit.features import FeatureStore
    from tokenizer_kit.pipeline import stages
    from tokenizer_kit.pipeline._stage_configs import EmbedConfig

    store, ids, cluster = clustered_store(tmp_path / "store", n_items=70, n_clusters=5)
    cfg = AlignRunConfig.from_dict({"steps": 2, "batch_size": 16, "d_model": 16, "n_queries": 2, "n_layers": 1, "n_heads": 2,
                                    "caption_weight": 0.0, "feature_dim": store.dim, "device": "cpu"})
    train_alignment(store=FeatureStore.open(tmp_path / "store"), pairs=cluster_pairs(ids, cluster), out=tmp_path / "al", config=cfg)
    base = {"batch_size": 8, "shard_size": 20, "device": "cpu"}
    local = stages.embed(tmp_path / "store", tmp_path / "al", tmp_path / "l.parquet", EmbedConfig.from_dict(base))
    ray = stages.embed(tmp_path / "store", tmp_path / "al", tmp_path / "r", EmbedConfig.from_dict({**base, "engine": "ray"}))
    assert ray["shards"] == 3 and local["n_items"] == ray["n_items"] == 70  # shard size 20 -> 24 (whole batches of 8)
    assert _same_rows(pq.read_table(tmp_path / "l.parquet"), pq.read_table(tmp_path / "r"))
    # the pipeline's next stage reads the shard directory as it reads the single file
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.pipeline._stage_configs import CodebookConfig

    cb = CodebookConfig.from_dict({"levels": 2, "codebook_size": [4], "index": False})
    for name in ("l.parquet", "r"):
        stages.build_codebook(tmp_path / name, tmp_path / f"tok_{name}", cb)
    a, b = SemanticTokenizer.from_pretrained(tmp_path / "tok_l.parquet"), SemanticTokenizer.from_pretrained(tmp_path / "tok_r")
    assert np.array_equal(a.codes, b.codes) and list(a.item_ids) == list(b.item_ids)


def test_pipeline_stages_take_engine_settings(tmp_path):
    """[extract] and [embed] take the engine settings; the stage record leaves them out (both
    engines write the same bytes), and the ray engine's embeddings are a shard directory."""
    from tokenizer_kit.pipeline import load_config
    from tokenizer_kit.pipeline._run import _Paths, _without_engine

    (tmp_path / "c.json").write_text("{}")
    (tmp_path / "i.json").write_text("{}")
    d = {"workdir": str(tmp_path / "w"), "data": {"catalog": str(tmp_path / "c.json"), "interactions": str(tmp_path / "i.json")},
         "extract": {"engine": "ray", "workers": 2, "ray_address": "auto"}, "embed": {"engine": "ray", "gpus_per_worker": 1, "shard_size": 64}}
    cfg = load_config(d)
    assert cfg.extract.execution.workers == 2 and cfg.embed.execution.gpus_per_worker == 1.0
    rec = _without_engine(cfg.embed)
    assert "engine" not in rec and "gpus_per_worker" not in rec and rec["shard_size"] == 64
    assert _without_engine(cfg.extract) == _without_engine(load_config({**d, "extract": {}}).extract)
    assert _Paths(tmp_path).embeddings("aligned", sharded=True) == tmp_path / "embeddings" / "aligned"
    with pytest.raises(ValueError, match="ray_address applies to the ray engine"):
        load_config({**d, "embed": {"ray_address": "auto"}})


@pytest.mark.slow
def test_pipeline_with_ray_extract_and_embed(office_slice, ray_cluster):
    """The whole chain with [extract] and [embed] on Ray: the aligned embeddings are a shard
    directory that build-codebook and index read; a rerun on the local engine skips them."""
    from tokenizer_kit.pipeline import run

    text = """workdir = "work_ray"
[data]
catalog = "s.item.json"
interactions = "s.inter.json"
[extract]
text_fields = "title,brand,categories"
max_tokens_per_field = 12
%s
[align]
steps = 12
batch_size = 16
d_model = 32
n_layers = 1
n_heads = 2
caption_weight = 0.0
[embed]
shard_size = 64
%s
[codebook]
levels = 2
codebook_size = "8"
"""
    cfg = office_slice / "ray.toml"
    cfg.write_text(text % ('engine = "ray"\nworkers = 2', 'engine = "ray"'))
    first = run(cfg)
    assert {s["status"] for s in first["stages"]} == {"ran"} and first["tokenizers"]["tokenizer"]["n_items"] == 160
    assert (office_slice / "work_ray" / "embeddings" / "aligned" / "_manifest.json").exists()
    cfg.write_text(text % ("", 'engine = "ray"'))  # extract back on the local engine: the same store, not redone
    assert {s["status"] for s in run(cfg)["stages"]} == {"skipped"}


def test_cold_start_lookups_do_not_depend_on_the_batches(office_split, monkeypatch):
    """The local engine maps ``lookup_batch`` over blocks of the input: blocks of 7 rows give
    the lookup rows and the index of one block, and so does mapping it by hand."""
    from tokenizer_kit import SemanticTokenizer
    from tokenizer_kit.indexer import BatchLookup, SIDIndex, _cold_start, lookup_batch
    from tokenizer_kit.io import load_embeddings

    base, new = load_embeddings(office_split / "base.parquet"), load_embeddings(office_split / "new" / "a.parquet")
    tok = SemanticTokenizer.build(base, codebook_sizes=[16, 16, 16], seed=0)
    idx = SIDIndex.from_tokenizer(tok, build=True)
    ids = np.concatenate([base.ids[:40], new.ids]).astype(object)
    x = np.concatenate([base.vectors[:40], new.vectors])
    ref_idx, ref, _ = idx.assign(tok, ids, x)
    monkeypatch.setattr(_cold_start, "_ENCODE_BLOCK", 7)
    got_idx, got, _ = idx.assign(tok, ids, x)
    parts = [lookup_batch(idx, tok, ids[s : s + 33], x[s : s + 33]) for s in range(0, len(ids), 33)]
    by_hand_idx, by_hand, _ = idx.assign(tok, lookups=BatchLookup.concat(parts, tok.levels))
    assert got == ref == by_hand and {r["status"] for r in ref} == {"known", "new"}
    assert np.array_equal(got_idx.sids, ref_idx.sids) and np.array_equal(by_hand_idx.sids, ref_idx.sids)
