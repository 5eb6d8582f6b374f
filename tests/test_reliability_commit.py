"""Atomic commits under fault injection, the writer lock, and concurrent cold-start writers.

A kill is simulated at every boundary between two filesystem steps of a commit: the test
replaces ``io._atomic._step`` (the seam every rename, exchange, replace and removal of a
commit goes through) with one that copies the whole parent folder before and after each
step. Each copy is exactly what a kill -9 at that instant would leave on disk; each must
load as the old or the new version, and the next writer must clean it up.

Points covered: whole-directory overwrite with the exchange (manifest replace in staging,
exchange, fsync of the parent, removal of the old version), the same with the two-rename
fallback (move old aside, rename new in, fsync, removal), a first build (rename in), and an
in-place append (new file replace, manifest replace; the next writer's removal of
unreferenced files); each also with an I/O error raised at that step. Slow tests add real
kill -9 at random instants and repeated two-process `assign --update` races.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tokenizer_kit import SemanticTokenizer
from tokenizer_kit.errors import ArtifactError
from tokenizer_kit.build._artifact import TOKENIZER
from tokenizer_kit.io import LockTimeout, update_artifact, writer_lock
from tokenizer_kit.io import _atomic

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_tok(clustered):
    ids = np.array([f"item{i}" for i in range(600)], dtype=object)
    return SemanticTokenizer.build(clustered[:600], ids=ids, codebook_sizes=[8, 8], seed=1, index=False)


def _marked(tok, marker: str):
    tok.info = {**tok.info, "marker": marker}
    return tok


def _marker(path: Path) -> str:
    return SemanticTokenizer.from_pretrained(path).info["marker"]


def _leftovers(parent: Path) -> list[str]:
    """Hidden entries beside the artifact; a lock file counts only when a kill left it (it is reused)."""
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock"))


class _Recorder:
    """Copies ``root`` before and after each commit step: the states a kill would leave."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out, self.states, self.steps = root, out, [], []

    def __call__(self, name, fn, *args):
        self._snap(f"before-{name}")
        r = fn(*args)
        self._snap(f"after-{name}")
        self.steps.append(name)
        return r

    def _snap(self, label):
        dst = self.out / f"{len(self.states):03d}-{label}"
        shutil.copytree(self.root, dst, symlinks=True)
        self.states.append((label, dst))


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_kill_between_any_two_steps_of_an_overwrite(small_tok, tmp_path, monkeypatch, exchange):
    root = tmp_path / "root"
    _marked(small_tok, "old").save_pretrained(root / "tok")
    monkeypatch.setattr(_atomic, "_USE_EXCHANGE", exchange)
    rec = _Recorder(root, tmp_path / "states")
    monkeypatch.setattr(_atomic, "_step", rec)
    _marked(small_tok, "new").save_pretrained(root / "tok", overwrite=True)
    monkeypatch.setattr(_atomic, "_step", lambda name, fn, *a: fn(*a))
    want = ["replace-file", "exchange", "fsync-parent", "remove-old"] if exchange else \
        ["replace-file", "move-old-aside", "rename-new", "fsync-parent", "remove-old"]
    assert rec.steps == want
    seen = []
    for label, state in rec.states:
        seen.append(_marker(state / "tok"))  # loadable at every instant: old or new
        _marked(small_tok, "next").save_pretrained(state / "tok", overwrite=True)  # the next writer cleans up
        assert _marker(state / "tok") == "next" and _leftovers(state) == [], label
    labels = [label for label, _ in rec.states]
    switch = labels.index("after-exchange" if exchange else "after-rename-new")
    assert seen == ["old"] * switch + ["new"] * (len(seen) - switch)


def test_kill_during_first_build(small_tok, tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    rec = _Recorder(root, tmp_path / "states")
    monkeypatch.setattr(_atomic, "_step", rec)
    _marked(small_tok, "new").save_pretrained(root / "tok")
    monkeypatch.setattr(_atomic, "_step", lambda name, fn, *a: fn(*a))
    assert rec.steps == ["replace-file", "rename-new", "fsync-parent"]
    for label, state in rec.states:
        if (state / "tok").exists():
            assert _marker(state / "tok") == "new", label
        else:  # before the rename: no target yet, and the next build cleans the staging folder
            with pytest.raises(ArtifactError, match="does not exist"):
                SemanticTokenizer.from_pretrained(state / "tok")
        _marked(small_tok, "next").save_pretrained(state / "tok", overwrite=True)
        assert _leftovers(state) == [], label


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "two-renames"])
def test_failure_at_each_step_keeps_a_whole_target(small_tok, tmp_path, monkeypatch, exchange):
    monkeypatch.setattr(_atomic, "_USE_EXCHANGE", exchange)
    steps = ["replace-file", "exchange", "fsync-parent", "remove-old"] if exchange else \
        ["replace-file", "move-old-aside", "rename-new", "fsync-parent", "remove-old"]
    for k, failing in enumerate(steps):
        root = tmp_path / f"r{k}"
        _marked(small_tok, "old").save_pretrained(root / "tok")

        def step(name, fn, *a, failing=failing):
            if name == failing:
                raise OSError(5, f"injected I/O error at {name}")
            return fn(*a)

        monkeypatch.setattr(_atomic, "_step", step)
        with pytest.raises(OSError, match="injected"):
            _marked(small_tok, "new").save_pretrained(root / "tok", overwrite=True)
        monkeypatch.setattr(_atomic, "_step", lambda name, fn, *a: fn(*a))
        switched = steps.index(failing) > steps.index("exchange" if exchange else "rename-new")
        assert _marker(root / "tok") == ("new" if switched else "old"), failing
        _marked(small_tok, "next").save_pretrained(root / "tok", overwrite=True)
        assert _leftovers(root) == [], failing


def test_kill_during_an_in_place_update(small_tok, tmp_path, monkeypatch):
    """Append-only commit: new files beside, then the manifest replaced; garbage goes next time."""
    root = tmp_path / "root"
    p = _marked(small_tok, "old").save_pretrained(root / "tok")
    before = {f.name: f.read_bytes() for f in p.iterdir()}
    rec = _Recorder(root, tmp_path / "states")
    monkeypatch.setattr(_atomic, "_step", rec)
    with update_artifact(p, TOKENIZER) as u:
        with u.new_file("seg-1.safetensors") as tmp:
            from safetensors.numpy import save_file

            save_file({"x": np.arange(4)}, str(tmp))
        u.fields["build"]["marker"] = "new"
    monkeypatch.setattr(_atomic, "_step", lambda name, fn, *a: fn(*a))
    assert rec.steps == ["replace-file", "replace-file", "replace-file"]  # the new file, the manifest, then the model card
    assert all((p / n).read_bytes() == b for n, b in before.items() if n not in ("manifest.json", "README.md"))  # nothing rewritten
    markers = []
    for label, state in rec.states:
        tok = SemanticTokenizer.from_pretrained(state / "tok")
        markers.append(tok.info["marker"])
        assert ("seg-1" in tok.attachments) == (markers[-1] == "new")
        with update_artifact(state / "tok", TOKENIZER) as u:  # the next writer drops unreferenced files
            pass
        names = sorted(f.name for f in (state / "tok").iterdir())
        assert names == sorted(["manifest.json", "README.md", "quantizer.safetensors", "sids.parquet"] + (["seg-1.safetensors"] if markers[-1] == "new" else [])), label
    assert markers == ["old"] * 3 + ["new"] * 3  # the card is rewritten after the manifest switched
    # a dropped file stays until the next writer (a reader of the previous manifest may need it)
    with update_artifact(p, TOKENIZER) as u:
        u.drop_file("seg-1.safetensors")
    assert (p / "seg-1.safetensors").exists() and "seg-1" not in SemanticTokenizer.from_pretrained(p).attachments
    with update_artifact(p, TOKENIZER):
        pass
    assert not (p / "seg-1.safetensors").exists()


def test_referenced_files_are_immutable(small_tok, tmp_path):
    p = small_tok.save_pretrained(tmp_path / "tok")
    with pytest.raises(ArtifactError, match="immutable"):
        with update_artifact(p, TOKENIZER) as u:
            with u.new_file("sids.parquet"):
                pass
    with pytest.raises(ArtifactError, match="plain name"):
        with update_artifact(p, TOKENIZER) as u:
            with u.new_file("../evil.parquet"):
                pass
    SemanticTokenizer.from_pretrained(p)


def test_readers_retry_while_a_writer_commits(small_tok, tmp_path):
    """Readers take no lock; every load during a stream of commits is whole (old or new)."""
    p = _marked(small_tok, "w0").save_pretrained(tmp_path / "tok")
    stop = threading.Event()
    errors: list[BaseException] = []
    commits = [0]

    def writer():
        while not stop.is_set():
            _marked(small_tok, f"w{commits[0] + 1}").save_pretrained(p, overwrite=True)
            commits[0] += 1
            time.sleep(0.005)

    t = threading.Thread(target=writer)
    t.start()
    seen = set()
    try:
        t_end = time.monotonic() + 60
        while len(seen) < 4 and time.monotonic() < t_end:
            try:
                tok = SemanticTokenizer.from_pretrained(p)
                assert tok.info["marker"].startswith("w") and len(tok) == 600
                seen.add(tok.info["marker"])
            except BaseException as e:  # noqa: BLE001 - collected and reported below
                errors.append(e)
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert len(seen) >= 4 and commits[0] >= 3  # loads interleaved with commits


def test_second_writer_waits_then_fails_with_one_line(tmp_path, monkeypatch):
    target = tmp_path / "tok"
    held = threading.Event()
    release = threading.Event()

    def holder():
        with writer_lock(target):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(5)
    try:
        t0 = time.monotonic()
        with pytest.raises(LockTimeout) as e:
            with writer_lock(target, timeout=0.3):
                pass
        assert 0.25 < time.monotonic() - t0 < 5
        msg = str(e.value)
        assert "\n" not in msg and f"pid {os.getpid()}" in msg and "TOKENIZER_KIT_LOCK_TIMEOUT" in msg
        monkeypatch.setenv("TOKENIZER_KIT_LOCK_TIMEOUT", "0")
        with pytest.raises(LockTimeout):
            with writer_lock(target):
                pass
        monkeypatch.setenv("TOKENIZER_KIT_LOCK_TIMEOUT", "soon")
        with pytest.raises(ArtifactError, match="not a number of seconds"):
            with writer_lock(target):
                pass
    finally:
        release.set()
        t.join()
    with writer_lock(target, timeout=0):  # free again; re-entrant in one thread
        with writer_lock(target, timeout=0):
            pass
    assert not (tmp_path / ".tok.lock").exists()  # the lock file lives only while held


def test_stale_staging_is_removed_by_the_next_writer(small_tok, tmp_path):
    p = small_tok.save_pretrained(tmp_path / "tok")
    (tmp_path / ".tok.staging-abcd1234").mkdir()  # what a writer killed before its switch leaves
    (tmp_path / ".tok.staging-abcd1234" / "sids.parquet").write_bytes(b"partial")
    (tmp_path / ".tok2.staging-abcd1234").mkdir()  # another artifact's: left alone
    small_tok.save_pretrained(p, overwrite=True)
    assert _leftovers(tmp_path) == [".tok2.staging-abcd1234"]


def test_exchange_is_used_here(tmp_path):
    """This machine's filesystem (ext4/tmpfs) has renameat2(RENAME_EXCHANGE)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only")
    assert _atomic.exchange_supported(tmp_path)


# ------------------------------------------------------------------------ concurrent writers
def _cli(*args, out: Path, env=None):
    """Start the CLI with stdout/stderr in files (a full pipe would stall a writer holding the lock)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tokenizer_kit.cli.app", *map(str, args)],
        stdout=open(out.with_suffix(".out"), "w"), stderr=open(out.with_suffix(".err"), "w"), cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def indexed(clustered, tmp_path_factory):
    from tokenizer_kit.indexer import IndexConfig, SIDIndex

    d = tmp_path_factory.mktemp("conc")
    ids = np.array([f"base{i}" for i in range(1000)], dtype=object)
    tok = SemanticTokenizer.build(clustered[:1000], ids=ids, codebook_sizes=[8, 8, 8], seed=0, index=False)
    SIDIndex.for_tokenizer(tok, config=IndexConfig(policy="suffix"), x=clustered[:1000], ids=ids).save(tok, d / "tok")
    for name, lo in (("a", 1000), ("b", 2000)):
        np.save(d / f"{name}.npy", clustered[lo : lo + 500])
        (d / f"{name}.ids.txt").write_text("\n".join(f"{name}{i}" for i in range(500)) + "\n")
    return d


def _concurrent_trials(indexed, tmp_path, trials):
    """Two `assign --update` processes at once on one tokenizer, ``trials`` times: both
    succeed, and the index ends with every base and new item, each under its own SID."""
    from tokenizer_kit.indexer import SIDIndex

    ok = 0
    for t in range(trials):
        work = tmp_path / f"t{t}"
        shutil.copytree(indexed, work)
        procs = [_cli("assign", work / f"{n}.npy", "--ids", work / f"{n}.ids.txt", "--tokenizer", work / "tok",
                      "--update", "--format", "json", "--print-items", out=work / f"run-{n}") for n in ("a", "b")]
        for p in procs:
            p.wait(timeout=300)
        outs = [((work / f"run-{n}.out").read_text(), (work / f"run-{n}.err").read_text()) for n in ("a", "b")]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err
        results = [json.loads(out) for out, _ in outs]
        assert all(r["updated"] and r["new"] == 500 for r in results)
        assert sorted(r["version_after"] for r in results) == [2, 3]  # one after the other
        idx = SIDIndex.from_tokenizer(SemanticTokenizer.from_pretrained(work / "tok"))
        ids = set(map(str, idx.item_ids.tolist()))
        assert len(idx) == 2000 and {f"a{i}" for i in range(500)} <= ids and {f"b{i}" for i in range(500)} <= ids
        assert len({tuple(r) for r in idx.sids.tolist()}) == 2000  # one item per SID
        for r in results:  # what each writer reported is what the index holds
            for row in r["lookup"]:
                assert idx.sid_of(row["item_id"]) == row["codes"]
        ok += 1
        shutil.rmtree(work)
    return ok


def test_two_concurrent_cold_start_writers_lose_nothing(indexed, tmp_path):
    assert _concurrent_trials(indexed, tmp_path, 2) == 2


@pytest.mark.slow
def test_concurrent_cold_start_writers_many_trials(indexed, tmp_path):
    n = int(os.environ.get("TOKENIZER_KIT_CONCURRENT_TRIALS", "20"))
    assert _concurrent_trials(indexed, tmp_path, n) == n


def test_lock_file_deleted_under_a_waiter_is_handled(tmp_path):
    """A waiter that gets the lock on a file its holder deleted starts over on the new file."""
    target = tmp_path / "tok"
    order: list[str] = []
    a_holds, b_waiting = threading.Event(), threading.Event()

    def a():
        with writer_lock(target):
            a_holds.set()
            b_waiting.wait(5)
            time.sleep(0.2)
            order.append("a")

    def b():
        a_holds.wait(5)
        b_waiting.set()
        with writer_lock(target, timeout=10):
            order.append("b-start")
            time.sleep(0.2)
            order.append("b-end")

    def c():
        a_holds.wait(5)
        time.sleep(0.1)
        with writer_lock(target, timeout=10):
            order.append("c-start")
            time.sleep(0.2)
            order.append("c-end")

    threads = [threading.Thread(target=f) for f in (a, b, c)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order[0] == "a" and sorted(order[1:]) == ["b-end", "b-start", "c-end", "c-start"]
    # never two holders at once: each start is followed by its own end
    assert order[1].split("-")[0] == order[2].split("-")[0] and order[3].split("-")[0] == order[4].split("-")[0]
    assert not (tmp_path / ".tok.lock").exists()


@pytest.mark.slow
def test_kill_9_at_random_instants(indexed, tmp_path):
    """Writers killed with SIGKILL at random instants (whole-directory rewrites by `index`,
    in-place appends by `assign --update`, `compact`): the tokenizer always loads, whole, and
    the next writer leaves nothing behind."""
    import random
    import signal

    from tokenizer_kit.indexer import SIDIndex

    n = int(os.environ.get("TOKENIZER_KIT_KILL_TRIALS", "24"))
    rnd = random.Random(0)
    work = tmp_path / "w"
    shutil.copytree(indexed, work)
    killed = 0
    for t in range(n):
        (work / f"t{t}.ids.txt").write_text("".join(f"t{t}_{i}\n" for i in range(500)))  # new items every round
        argv = [
            ["index", work / "tok"],
            ["assign", work / "a.npy", "--ids", work / f"t{t}.ids.txt", "--tokenizer", work / "tok", "--update"],
            ["compact", work / "tok"],
        ][t % 3]
        p = _cli(*argv, out=work / f"k{t}")
        time.sleep(rnd.uniform(0.5, 4.0))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            killed += 1
        p.wait()
        tok = SemanticTokenizer.from_pretrained(work / "tok")  # whole, old or new
        idx = SIDIndex.from_tokenizer(tok)
        assert idx is not None and len({tuple(r) for r in idx.sids.tolist()}) == len(idx)
    print(f"kill -9 trials: {n}, writers killed while running: {killed}")
    assert killed >= n // 3  # most trials really interrupted a writer
    # the next writer cleans whatever the kills left
    p = _cli("index", work / "tok", out=work / "final")
    assert p.wait() == 0
    assert _leftovers(work) == [] and not list((work / "tok").glob(".*"))


def test_compaction_refuses_an_index_changed_since_it_was_loaded(indexed, tmp_path):
    """A full rewrite from a stale view would drop a cold start committed meanwhile: refused."""
    from tokenizer_kit.errors import TokenizerKitError
    from tokenizer_kit.indexer import SIDIndex

    work = tmp_path / "w"
    shutil.copytree(indexed, work)
    tok_a = SemanticTokenizer.from_pretrained(work / "tok")
    idx_a = SIDIndex.stored(tok_a)
    tok_b = SemanticTokenizer.from_pretrained(work / "tok")
    idx_b = SIDIndex.stored(tok_b)
    x = np.load(work / "a.npy")
    new_b, _, _ = idx_b.assign(tok_b, [f"b{i}" for i in range(len(x))], x)
    new_b.save(tok_b, work / "tok")  # a cold start lands first
    with pytest.raises(TokenizerKitError, match="changed since it was loaded"):
        idx_a.compact(tok_a, work / "tok")
    back = SIDIndex.stored(SemanticTokenizer.from_pretrained(work / "tok"))
    assert len(back) == len(idx_a) + len(x)  # nothing lost
