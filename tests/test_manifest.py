"""The one manifest module: envelope, seal, file names, required files, legacy formats."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import ArtifactError
from tokenizer_kit.build._artifact import TOKENIZER
from tokenizer_kit.alignment import ALIGNMENT, CHECKPOINT
from tokenizer_kit.features import FEATURE_STORE
from tokenizer_kit.io import (
    MANIFEST_NAME,
    read_manifest,
    read_record,
    seal,
    write_artifact,
    write_record,
)
from tokenizer_kit.pipeline._runner import STAGE_RECORD

LEGACY = Path(__file__).parent / "data" / "legacy"


@pytest.fixture(scope="module")
def tok(clustered):
    ids = np.array([f"item{i}" for i in range(400)], dtype=object)
    return SemanticTokenizer.build(clustered[:400], ids=ids, codebook_sizes=[8, 8], seed=0, index=False)


@pytest.fixture
def saved(tok, tmp_path):
    return tok.save_pretrained(tmp_path / "tok")


def _edit(p: Path, fn, *, reseal: bool = True) -> None:
    m = json.loads((p / "manifest.json").read_text())
    fn(m)
    (p / "manifest.json").write_text(json.dumps(seal(m) if reseal else m))


def test_envelope(saved):
    m = json.loads((saved / "manifest.json").read_text())
    assert m["format"] == "tokenizer-kit/tokenizer" and m["format_version"] == TOKENIZER.format_version
    assert m["package_version"] and "tokenizer_kit_version" not in m and "version" not in m
    assert list(m)[-1] == "manifest_sha256" and m == seal(m)
    assert set(m["files"]) == {"quantizer.safetensors", "sids.parquet"}
    assert all(len(e["sha256"]) == 64 and e["size"] > 0 for e in m["files"].values())
    got = read_manifest(saved, TOKENIZER)
    assert got.format_version == 2 and got.file("sids.parquet") == saved / "sids.parquet"


TAMPER = {
    "edited without reseal": (lambda m: m.update(n_items=1), False, "fails its own checksum"),
    "seal removed": (lambda m: m.pop("manifest_sha256"), False, "has no manifest_sha256"),
    "files emptied": (lambda m: m.update(files={}), True, "does not list quantizer.safetensors, sids.parquet"),
    "files not a map": (lambda m: m.update(files=["a"]), True, "has no files map"),
    "parent path": (lambda m: m["files"].update({"../evil": m["files"]["sids.parquet"]}), True, "not a plain name"),
    "absolute path": (lambda m: m["files"].update({"/etc/passwd": m["files"]["sids.parquet"]}), True, "not a plain name"),
    "subdir path": (lambda m: m["files"].update({"a/b": m["files"]["sids.parquet"]}), True, "not a plain name"),
    "hidden name": (lambda m: m["files"].update({".lock": m["files"]["sids.parquet"]}), True, "not a plain name"),
    "bad digest": (lambda m: m["files"]["sids.parquet"].update(sha256="xyz"), True, "expected"),
    "bad size": (lambda m: m["files"]["sids.parquet"].update(size=-1), True, "expected"),
    "size differs": (lambda m: m["files"]["sids.parquet"].update(size=m["files"]["sids.parquet"]["size"] + 1), True, "bytes, its manifest says"),
    "newer format": (lambda m: m.update(format_version=99), True, "format 99, newer than"),
    "format not int": (lambda m: m.update(format_version="2"), True, "format_version '2'"),
    "other kind": (lambda m: m.update(format="tokenizer-kit/companion"), True, "describes a companion artifact"),
    "no method": (lambda m: m.pop("method"), True, "has no 'method'"),
    "config a list": (lambda m: m.update(config=[1]), True, "'config' is list"),
    "sizes wrong type": (lambda m: m.update(codebook_sizes=["8", 8]), True, "must be positive integers"),
    "sizes differ": (lambda m: m.update(codebook_sizes=[8, 16]), True, "differ from the quantizer"),
    "config ill-typed": (lambda m: m["config"].update(niter="abc"), True, "do not fit"),
    "package version not a string": (lambda m: m.update(package_version=3), True, "expected a version string"),
}


@pytest.mark.parametrize("case", list(TAMPER), ids=list(TAMPER))
def test_tampered_manifest_is_one_line_error(saved, case):
    fn, reseal, match = TAMPER[case]
    _edit(saved, fn, reseal=reseal)
    with pytest.raises(ArtifactError, match=match) as e:
        SemanticTokenizer.from_pretrained(saved)
    assert "\n" not in str(e.value)


def test_non_utf8_and_non_object_manifest(saved):
    (saved / "manifest.json").write_bytes(b"\xff\xfe{}")
    with pytest.raises(ArtifactError, match="not UTF-8"):
        SemanticTokenizer.from_pretrained(saved)
    (saved / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="a JSON list, expected an object"):
        SemanticTokenizer.from_pretrained(saved)
    (saved / "manifest.json").write_text("[" * 100000)
    with pytest.raises(ArtifactError, match="corrupt"):
        SemanticTokenizer.from_pretrained(saved)


def test_symlinked_file_refused(saved, tmp_path):
    outside = tmp_path / "outside.parquet"
    shutil.move(saved / "sids.parquet", outside)
    (saved / "sids.parquet").symlink_to(outside)
    with pytest.raises(ArtifactError, match="not a regular file"):
        SemanticTokenizer.from_pretrained(saved)


def test_required_files_follow_the_content(tok, tmp_path):
    from tokenizer_kit.indexer import SIDIndex

    idx = SIDIndex.for_tokenizer(tok)
    p = idx.save(tok, tmp_path / "tok")
    m = json.loads((p / "manifest.json").read_text())
    assert {"index.safetensors", "trie.safetensors"} <= set(m["files"])
    _edit(p, lambda m: m["files"].pop("trie.safetensors"))
    with pytest.raises(ArtifactError, match="does not list trie.safetensors"):
        SemanticTokenizer.from_pretrained(p)


def test_newer_package_version_warns(saved, caplog):
    _edit(saved, lambda m: m.update(package_version="99.0"))
    SemanticTokenizer.from_pretrained(saved)
    assert any("written by tokenizer-kit 99.0, newer" in r.getMessage() for r in caplog.records)


def test_writer_refuses_what_a_reader_would(tmp_path):
    from tokenizer_kit.companion import COMPANION

    with pytest.raises(ArtifactError, match="does not list quantizer.safetensors"):
        with write_artifact(tmp_path / "t", TOKENIZER) as w:
            w.fields.update(method="rq-kmeans", config={})
    assert not (tmp_path / "t").exists()
    with pytest.raises(ArtifactError, match="not a regular file"):
        with write_artifact(tmp_path / "c", COMPANION) as w:
            (w.dir / "model.safetensors").write_bytes(b"x")
            (w.dir / "sub").mkdir()
    with pytest.raises(ValueError, match="set by the manifest module"):
        with write_artifact(tmp_path / "c", COMPANION) as w:
            (w.dir / "model.safetensors").write_bytes(b"x")
            w.fields["format_version"] = 7


def _kinds():
    from tokenizer_kit.companion import COMPANION
    from tokenizer_kit.engines import SHARDS

    return [TOKENIZER, ALIGNMENT, CHECKPOINT, FEATURE_STORE, COMPANION, SHARDS, STAGE_RECORD]


def test_kinds_are_distinct_and_share_one_manifest_name():
    kinds = _kinds()
    assert len({k.format_id for k in kinds}) == len(kinds)
    # shard directories are Parquet datasets: their manifest starts with "_" so that readers skip it
    assert {k.name: k.manifest_name for k in kinds if k.manifest_name != MANIFEST_NAME} == {"shards": "_manifest.json"}


def test_records_round_trip(tmp_path):
    p = tmp_path / "stages" / "embed.json"
    write_record(p, STAGE_RECORD, {"config": {"a": 1}, "hash": "abc"})
    assert read_record(p, STAGE_RECORD)["hash"] == "abc"
    m = json.loads(p.read_text())
    m["hash"] = "def"
    p.write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="fails its own checksum"):
        read_record(p, STAGE_RECORD)


# ------------------------------------------------------------------------------ legacy formats
def test_first_wave_tokenizer_loads_and_is_rewritten_in_the_new_format(tmp_path):
    """tests/data/legacy/tokenizer_v1: written by main before this change (format 1, indexed)."""
    from tokenizer_kit.indexer import SIDIndex

    src = tmp_path / "tok"
    shutil.copytree(LEGACY / "tokenizer_v1", src)
    assert json.loads((src / "tokenizer.json").read_text())["format_version"] == 1  # the name main wrote
    old = SemanticTokenizer.from_pretrained(src)
    idx = SIDIndex.from_tokenizer(old)
    assert len(old) == 300 and idx.policy == "suffix" and len({tuple(r) for r in idx.sids.tolist()}) == 300
    x = np.load(LEGACY / "tokenizer_v1_x.npy").astype(np.float32)
    assert (old.encode(x) == old.codes).mean() > 0.99
    old.save_pretrained(src, overwrite=True)
    m = json.loads((src / "manifest.json").read_text())
    assert m["format_version"] == 2 and m == seal(m) and not (src / "tokenizer.json").exists()
    new = SemanticTokenizer.from_pretrained(src)
    np.testing.assert_array_equal(new.sids, old.sids)
    # a tampered format-1 file is still caught by its checksum
    shutil.copytree(LEGACY / "tokenizer_v1", tmp_path / "bad")
    data = bytearray((tmp_path / "bad" / "sids.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / "bad" / "sids.parquet").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="fails its checksum"):
        SemanticTokenizer.from_pretrained(tmp_path / "bad")


def test_first_wave_feature_store_opens_but_is_not_resumed(tmp_path):
    from tokenizer_kit.features import FeatureStore, FeatureStoreWriter

    st = FeatureStore.open(LEGACY / "features_v1")
    assert len(st) == 5 and st.dim == 4 and st.tokens(4).shape == (4, 4)
    shutil.copytree(LEGACY / "features_v1", tmp_path / "f")
    cfg = json.loads((tmp_path / "f" / "manifest.json").read_text())["config"]
    with pytest.raises(ArtifactError, match="cannot be resumed; set `overwrite` to replace it"):
        FeatureStoreWriter(tmp_path / "f", dim=4, config=cfg, segments=["text"])


def test_first_wave_alignment_and_companion_manifests_are_read(tmp_path):
    from tokenizer_kit.companion import COMPANION
    from tokenizer_kit.io import sha256_file

    d = tmp_path / "align"
    d.mkdir()
    (d / "model.safetensors").write_bytes(b"weights")
    (d / "config.json").write_text(json.dumps({"format_version": 1, "tokenizer_kit_version": "0.1.0", "config": {},
                                                "weights_sha256": sha256_file(d / "model.safetensors")}))
    m = read_manifest(d, ALIGNMENT)
    assert m.package_version == "0.1.0" and m.files["model.safetensors"]["sha256"]
    (d / "model.safetensors").write_bytes(b"changed")
    with pytest.raises(ArtifactError, match="fails its checksum"):
        read_manifest(d, ALIGNMENT)
    c = tmp_path / "comp"
    c.mkdir()
    (c / "model.safetensors").write_bytes(b"w")
    (c / "config.json").write_text(json.dumps({"format": "tokenizer-kit-companion", "format_version": 1, "config": {}}))
    assert read_manifest(c, COMPANION).files == {"model.safetensors": {"sha256": None, "size": None}}
    with pytest.raises(ArtifactError, match="describes a tokenizer-kit-companion artifact, not an alignment"):
        read_manifest(c, ALIGNMENT)


def test_feature_store_round_trip_and_checks(tmp_path):
    from tokenizer_kit.features import FeatureStore, write_feature_store

    toks = [np.full((2 + i % 3, 4), i, np.float16) for i in range(7)]
    st = write_feature_store(tmp_path / "f", [f"i{i}" for i in range(7)], toks, shard_size=3)
    assert len(st) == 7 and st.tokens(6)[0, 0] == 6
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    assert m["shards"] == ["shard-00000", "shard-00001", "shard-00002"] and m["complete"]
    assert sorted(m["files"])[:4] == ["shard-00000.item_ids.json", "shard-00000.offsets.npy", "shard-00000.segments.npy", "shard-00000.tokens.npy"]
    FeatureStore.open(tmp_path / "f", verify="sha256")
    # overwrite keeps the old store until the new one is finished
    from tokenizer_kit.features import FeatureStoreWriter

    w = FeatureStoreWriter(tmp_path / "f", dim=4, config={"backend": "arrays"}, segments=["text"], overwrite=True)
    w.write_shard(["z"], [np.zeros((1, 4))], [np.zeros(1)])
    assert len(FeatureStore.open(tmp_path / "f")) == 7
    w.close()  # abandoned: the old store stays, the staging folder goes
    assert len(FeatureStore.open(tmp_path / "f")) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]
    (tmp_path / "f" / "shard-00001.offsets.npy").write_bytes(b"\x93NUMPY")
    with pytest.raises(ArtifactError, match="shard-00001.offsets.npy has 6 bytes"):
        FeatureStore.open(tmp_path / "f")


def test_feature_store_kind_requires_shard_files(tmp_path):
    from tokenizer_kit.features import write_feature_store

    write_feature_store(tmp_path / "f", ["a"], [np.zeros((1, 4))])
    m = json.loads((tmp_path / "f" / "manifest.json").read_text())
    m["files"] = {}
    (tmp_path / "f" / "manifest.json").write_text(json.dumps(seal(m)))
    with pytest.raises(ArtifactError, match="does not list shard-00000"):
        read_manifest(tmp_path / "f", FEATURE_STORE)


# ------------------------------------------------------------------------------ one manifest name
def test_every_kind_writes_manifest_json_and_is_asked_whether_committed(saved, tmp_path):
    from tokenizer_kit.features import write_feature_store

    names = {p.name for p in saved.iterdir()}
    assert {"README.md", "manifest.json", "quantizer.safetensors", "sids.parquet"} <= names and "tokenizer.json" not in names
    assert TOKENIZER.committed(saved) and TOKENIZER.manifest_path(saved) == saved / "manifest.json"
    write_feature_store(tmp_path / "f", ["a"], [np.zeros((1, 4))])
    assert FEATURE_STORE.committed(tmp_path / "f") and (tmp_path / "f" / "manifest.json").is_file()
    assert not TOKENIZER.committed(tmp_path / "nowhere") and TOKENIZER.manifest_path(tmp_path / "nowhere").name == "manifest.json"
    # one name for every kind: a directory of another kind is named as such, not as missing
    with pytest.raises(ArtifactError, match="describes a feature-store artifact, not a tokenizer directory"):
        SemanticTokenizer.from_pretrained(tmp_path / "f")


def _written_by_main(kind, **legacy):
    """``kind`` as main declared it: the manifest under its old name, no other name read."""
    import dataclasses

    return dataclasses.replace(kind, legacy_manifest_names=(), **legacy)


def test_tokenizer_written_by_main_loads_and_its_next_commit_renames_the_manifest(tok, tmp_path):
    """main wrote the same manifest as ``tokenizer.json``: it loads with the same SIDs; an in-place
    update writes ``manifest.json`` and removes the old one."""
    from tokenizer_kit.io import update_artifact

    p = tok.save_pretrained(tmp_path / "tok")
    (p / "manifest.json").rename(p / "tokenizer.json")
    old = SemanticTokenizer.from_pretrained(p)
    np.testing.assert_array_equal(old.sids, tok.sids)
    assert TOKENIZER.committed(p) and TOKENIZER.manifest_path(p).name == "tokenizer.json"
    _edit_named(p, "tokenizer.json", lambda m: m.update(n_items=1))
    with pytest.raises(ArtifactError, match="tokenizer.json fails its own checksum"):  # the legacy file is the one read
        SemanticTokenizer.from_pretrained(p)
    _edit_named(p, "tokenizer.json", lambda m: m.update(n_items=len(tok)))
    with update_artifact(p, TOKENIZER) as u:
        u.fields["note"] = "updated"
    assert (p / "manifest.json").is_file() and not (p / "tokenizer.json").exists()
    new = SemanticTokenizer.from_pretrained(p)
    np.testing.assert_array_equal(new.sids, tok.sids)
    assert SemanticTokenizer.read_manifest(p)["note"] == "updated"


def _edit_named(p: Path, name: str, fn) -> None:
    m = json.loads((p / name).read_text())
    fn(m)
    (p / name).write_text(json.dumps(m))


def test_companion_written_by_main_loads(tmp_path):
    from tokenizer_kit.companion import COMPANION

    old = _written_by_main(COMPANION, manifest_name="config.json")
    with write_artifact(tmp_path / "c", old) as w:
        (w.dir / "model.safetensors").write_bytes(b"w")
        w.fields.update(config={"arch": "t5"}, sid_length=3)
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["config.json", "model.safetensors"]
    m = read_manifest(tmp_path / "c", COMPANION, verify="sha256")
    assert m["sid_length"] == 3 and COMPANION.committed(tmp_path / "c")


def test_alignment_written_by_main_is_read_with_its_eval(tmp_path):
    """An alignment as main wrote it (``config.json``, the evaluation inside the summary): read,
    complete, and its evaluation reported; without torch."""
    from tokenizer_kit.alignment import is_alignment_complete, read_alignment_eval

    ev = {"k": 10, "n_pairs": 4, "recall_aligned": 0.5, "recall_raw_pooled": 0.25, "recall_ratio": 2.0}
    with write_artifact(tmp_path / "a", _written_by_main(ALIGNMENT, manifest_name="config.json")) as w:
        (w.dir / "model.safetensors").write_bytes(b"w")
        w.fields.update(kind="qformer-alignment", config={}, summary={"steps_done": 2, "steps": 2, "eval": ev})
    assert read_manifest(tmp_path / "a", ALIGNMENT, verify="sha256")["summary"]["steps_done"] == 2
    assert read_alignment_eval(tmp_path / "a") == ev and is_alignment_complete(tmp_path / "a")
    (tmp_path / "a" / "checkpoint").mkdir()  # resume state beside it: a run is under way there
    assert not is_alignment_complete(tmp_path / "a")


def test_pipeline_asks_the_artifacts_not_file_names():
    """The pipeline decides "is the alignment finished?" through the alignment, and names no
    manifest file itself."""
    import inspect

    from tokenizer_kit.pipeline import _run, _stages

    for mod in (_run, _stages):
        src = inspect.getsource(mod)
        for name in ("tokenizer.json", "config.json", '"manifest.json"', '"_manifest.json"'):
            assert name not in src, f"{mod.__name__} names {name}"
    assert "is_alignment_complete(" in inspect.getsource(_run) and "is_alignment_complete(" in inspect.getsource(_stages)
