"""A cold start's I/O does not grow with the catalogue: ``assign --update`` of a fixed number of
new items reads and writes about as many bytes into a 80k-item index as into a 20k-item one
(the files it reads whole are checked by their checksum, the memory-mapped index by size),
a corrupted file it reads is still detected, and ``verify="sha256"`` still detects corruption
anywhere in the directory."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import ArtifactError
from tokenizer_kit.indexer import IndexConfig, SIDIndex
from tokenizer_kit.pipeline import AssignConfig
from tokenizer_kit.pipeline._stages import assign

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="counts bytes through /proc/self/io (Linux)")

SIZES = [16, 16, 16]
D = 8


def _indexed(path: Path, n: int) -> Path:
    """A tokenizer with an ``n``-item suffix index (codes drawn at random, not encoded: only the
    index's size matters here) and one cold-start segment of 100 items."""
    rng = np.random.default_rng(0)
    tok = SemanticTokenizer.build(rng.normal(size=(2000, D)).astype(np.float32), codebook_sizes=SIZES, seed=0, index=False)
    tok.item_ids = np.arange(n, dtype=np.int64)
    tok.codes = rng.integers(0, 16, size=(n, len(SIZES)))
    SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix")).save(tok, path)
    _update(path, _new_items(path.parent, 100, first=10**9, seed=1))
    return path


def _new_items(where: Path, m: int, *, first: int, seed: int) -> Path:
    npy = where / f"new-{first}.npy"
    np.save(npy, np.random.default_rng(seed).normal(size=(m, D)).astype(np.float32))
    np.save(npy.with_suffix(".ids.npy"), np.arange(first, first + m, dtype=np.int64))
    return npy


def _update(tok_dir: Path, npy: Path, out: Path | None = None) -> dict:
    return assign(npy, tok_dir, AssignConfig(), update=True, out=out, rows=False)


def _io() -> int:
    with open("/proc/self/io") as f:
        io = {k: int(v) for k, v in (line.split(":") for line in f)}
    return io["rchar"] + io["wchar"]


def _measured_update(tok_dir: Path, npy: Path, out: Path | None) -> int:
    before = _io()
    res = _update(tok_dir, npy, out)
    used = _io() - before
    assert res["updated"] and res["new"] == 500
    return used


@pytest.mark.parametrize("streamed", [False, True])
def test_update_io_does_not_grow_with_the_catalogue(tmp_path, streamed):
    """In memory (no ``out``) and streamed into ``out``; each directory already holds a segment."""
    used = {}
    for n in (20_000, 80_000):
        d = tmp_path / f"n{n}"
        d.mkdir()
        tok = _indexed(d / "tok", n)
        npy = _new_items(d, 500, first=2 * 10**9, seed=2)
        dir_bytes = sum(p.stat().st_size for p in tok.iterdir())
        used[n] = _measured_update(tok, npy, d / "lookup.parquet" if streamed else None)
        assert used[n] < dir_bytes, f"an update of 500 items into {n} read+wrote {used[n]} bytes, the directory holds {dir_bytes}"
    assert used[80_000] <= 1.3 * used[20_000] + 64 * 1024, used


def _flip(path: Path, at: float = 0.5) -> None:
    """Change one byte in the middle of ``path`` (its size unchanged)."""
    data = bytearray(path.read_bytes())
    k = int(len(data) * at)
    data[k] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corruption_read_by_the_update_is_detected(tmp_path):
    base = _indexed(tmp_path / "tok", 5000)
    npy = _new_items(tmp_path, 500, first=2 * 10**9, seed=2)
    segments = sorted(p for p in base.iterdir() if p.name.startswith("index-seg-"))
    assert segments
    for victim in (segments[0].name, "quantizer.safetensors"):
        d = tmp_path / f"bad-{victim}"
        shutil.copytree(base, d)
        _flip(d / victim)
        with pytest.raises(ArtifactError, match="checksum"):
            _update(d, npy)
    # a file the update reads in part (memory-mapped): only the full check reads every byte
    d = tmp_path / "bad-index"
    shutil.copytree(base, d)
    _flip(d / "index.safetensors", 0.9)
    for load in (lambda: SemanticTokenizer.from_pretrained(d), lambda: SemanticTokenizer.from_pretrained(d, verify="sha256"),
                 lambda: SemanticTokenizer.from_pretrained(d, load_sids="ids", verify="sha256")):
        with pytest.raises(ArtifactError, match="checksum"):
            load()
    SemanticTokenizer.from_pretrained(d, load_sids="ids", verify="read")  # sizes only for the mapped files


def test_update_carries_checksums_and_stays_verifiable(tmp_path):
    """After updates under lazy verification the manifest still lists every file's checksum,
    and a full check of the directory passes."""
    tok_dir = _indexed(tmp_path / "tok", 5000)
    _update(tok_dir, _new_items(tmp_path, 500, first=2 * 10**9, seed=2))
    tok = SemanticTokenizer.from_pretrained(tok_dir, verify="sha256")
    assert len(SIDIndex.stored(tok)) == 5600
    with pytest.raises(Exception, match="verify"):
        SemanticTokenizer.from_pretrained(tok_dir, verify="lazy")


def _page_cache():
    """(evict, resident bytes) of a file: the benchmark's own helpers (bench_cold_start_io.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_cold_start_io import _page_cache_evict, _resident_bytes

    def resident(f: Path) -> int:
        got = _resident_bytes(f)
        if got is None:
            pytest.skip("page-cache residency cannot be read here (mincore failed)")
        return got

    return _page_cache_evict, resident


_MAPPED = ("index.safetensors", "trie.safetensors", "sids.parquet")  # the base files an update reads in part


@pytest.mark.parametrize("streamed", [False, True])
def test_update_pages_do_not_grow_with_the_catalogue(tmp_path, streamed):
    """Pages of the base files (read through memory maps: not in rchar) that an update of 10
    items touches, into a 20k- and a 160k-item index that already holds a segment: the same
    within a bound, far below the files' size (no pass over every id, flag, fingerprint or
    code of the catalogue). Counted as page-cache residency after evicting the files."""
    evict, resident = _page_cache()
    used, sizes = {}, {}
    for n in (20_000, 160_000):
        d = tmp_path / f"n{n}"
        d.mkdir()
        tok = _indexed(d / "tok", n)
        npy = _new_items(d, 10, first=2 * 10**9, seed=2)
        files = [tok / name for name in _MAPPED]
        for f in files:
            evict(f)
        if sum(resident(f) for f in files):
            pytest.skip("the page cache cannot be dropped for files here (a memory-backed temporary directory)")
        res = _update(tok, npy, d / "lookup.parquet" if streamed else None)
        assert res["updated"] and res["new"] == 10
        used[n] = sum(resident(f) for f in files)
        sizes[n] = sum(f.stat().st_size for f in files)
    assert used[160_000] < sizes[160_000] / 4, (used, sizes)
    assert used[160_000] <= 2 * used[20_000] + 256 * 1024, (used, sizes)
