"""Messages a user meets, each through its verb: the missing-ids error, duplicate ids found before
any training, Ray's internal notices kept off stderr, help text rendered as written, the one-line
build summary, and assign's output titled by what it did with every column explained."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer
from rich.text import Text
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app

runner = CliRunner()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("msg")
    x = np.random.default_rng(0).normal(size=(400, 16)).astype(np.float32)
    np.save(d / "x.npy", x)
    np.save(d / "x.ids.npy", np.arange(400, dtype=np.int64))
    np.save(d / "bare.npy", x)
    return d


def _err(result) -> str:
    assert result.exit_code != 0, result.output
    lines = [l for l in result.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_ids_names_the_ids_file_and_flags(small, tmp_path):
    line = _err(runner.invoke(app, ["build-codebook", str(small / "bare.npy"), "-o", str(tmp_path / "t")]))
    assert "--ids" in line and "--row-ids" in line and "bare.ids.txt" in line
    assert "--id-column" not in line and "ids_path" not in line  # no column in a .npy; no Python names
    assert not (tmp_path / "t").exists()
    pq.write_table(pa.table({"emb": pa.array(list(np.zeros((3, 4), np.float32)), pa.list_(pa.float32(), 4))}), tmp_path / "e.parquet")
    line = _err(runner.invoke(app, ["build-codebook", str(tmp_path / "e.parquet"), "-o", str(tmp_path / "t")]))
    assert "'item_id' column" in line and "--id-column" in line and "--row-ids" in line


def test_duplicate_ids_are_refused_before_training(small, tmp_path, monkeypatch):
    import tokenizer_kit.build._streaming as streaming

    ids = np.arange(400, dtype=np.int64)
    ids[399] = 7
    np.save(tmp_path / "d.npy", np.load(small / "x.npy"))
    np.save(tmp_path / "d.ids.npy", ids)

    def no_training(*a, **k):
        raise AssertionError("trained before checking the ids")

    monkeypatch.setattr(streaming, "_train_on_sample", no_training)
    line = _err(runner.invoke(app, ["build-codebook", str(tmp_path / "d.npy"), "-o", str(tmp_path / "t")]))
    assert "duplicate item id '7' (2 times, first at row 7)" in line
    assert not (tmp_path / "t").exists()


def _commands():
    group = typer.main.get_command(app)
    ctx = group.make_context("tokenizer-kit", [], resilient_parsing=True)
    return [(name, group.get_command(ctx, name)) for name in group.list_commands(ctx)]


def test_help_text_renders_as_written():
    """Typer renders help as rich markup: a ``[table]`` it takes for a tag vanishes (the
    build-codebook help once read "as in a pipeline's  table")."""
    seen = 0
    for name, cmd in _commands():
        texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
        for t in texts:
            assert Text.from_markup(t).plain == t.replace("\\[", "["), f"{name}: markup eats part of {t!r}"
            seen += "[" in t
    assert seen >= 1  # the check has something to bite on
    out = runner.invoke(app, ["build-codebook", "--help"], terminal_width=200).stdout
    assert "as in the [codebook] table of a pipeline config" in " ".join(out.split())


def test_build_prints_one_summary_line(small, tmp_path):
    r = runner.invoke(app, ["build-codebook", str(small / "x.npy"), "-o", str(tmp_path / "tok"), "--levels", "2", "--codebook-size", "8"],
                      terminal_width=400)
    assert r.exit_code == 0, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("tok: 400 items; SIDs of 3 tokens (2 levels x 8 codes + 1 disambiguation token), policy suffix: ")
    assert "colliding items made unique" in last
    assert last.endswith("wrote README.md, index.safetensors, manifest.json, quantizer.safetensors, sids.parquet, trie.safetensors")
    r = runner.invoke(app, ["build-codebook", str(small / "x.npy"), "-o", str(tmp_path / "raw"), "--levels", "2", "--codebook-size", "8,4",
                            "--no-index"], terminal_width=400)
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("raw: 400 items, 2 levels of 8/4 codes; SIDs of 2 codes, not indexed (--no-index): ")


def test_assign_title_says_what_it_did_and_help_explains_every_column(small, tmp_path):
    tok = tmp_path / "tok"
    assert runner.invoke(app, ["build-codebook", str(small / "x.npy"), "-o", str(tok), "--levels", "2", "--codebook-size", "8"]).exit_code == 0
    x = np.load(small / "x.npy")
    np.save(tmp_path / "n.npy", np.concatenate([x[:5], np.random.default_rng(1).normal(size=(3, 16)).astype(np.float32)]))
    np.save(tmp_path / "n.ids.npy", np.array([0, 1, 2, 3, 4, 900, 901, 902], np.int64))
    argv = ["assign", str(tmp_path / "n.npy"), "-t", str(tok), "-o", str(tmp_path / "a.parquet")]
    r = runner.invoke(app, argv, terminal_width=400)
    assert r.exit_code == 0, r.output
    assert "assigned 8 items with tok: 5 known (indexed SIDs), 3 new given SIDs; index unchanged (--update adds them)" in r.stdout
    r = runner.invoke(app, [*argv[:-2], "--update"], terminal_width=400)
    assert "assigned 8 items with tok: 5 known (indexed SIDs), 3 new added to the index (version 1 -> 2)" in r.stdout
    helptext = " ".join(runner.invoke(app, ["assign", "--help"], terminal_width=400).stdout.split())
    for col in pq.read_schema(tmp_path / "a.parquet").names:
        assert ("code_0.." if col.startswith("code_") else col + ",") in helptext, col


def test_ray_keeps_its_internal_notices_off_stderr(small, tmp_path):
    """Without -v, a Ray run's stderr holds our progress lines only (no core_worker.cc notice)."""
    tok = tmp_path / "tok"
    assert runner.invoke(app, ["build-codebook", str(small / "x.npy"), "-o", str(tok), "--levels", "2", "--codebook-size", "8"]).exit_code == 0
    r = subprocess.run([sys.executable, "-m", "tokenizer_kit.cli.app", "assign", str(small / "x.npy"), "-t", str(tok), "-o", str(tmp_path / "o"),
                        "--engine", "ray", "--workers", "1"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    noise = [l for l in r.stderr.splitlines() if l.strip() and "tokenizer_kit.progress" not in l]
    assert noise == [], noise


def test_ray_cold_start_refuses_duplicate_ids_before_the_workers_run(small, tmp_path, monkeypatch):
    import tokenizer_kit.engines._assign as engine_assign

    tok = tmp_path / "tok"
    assert runner.invoke(app, ["build-codebook", str(small / "x.npy"), "-o", str(tok), "--levels", "2", "--codebook-size", "8"]).exit_code == 0
    np.save(tmp_path / "d.npy", np.load(small / "x.npy")[:50])
    np.save(tmp_path / "d.ids.npy", np.array([*range(1000, 1049), 1003], np.int64))

    def no_workers(*a, **k):
        raise AssertionError("the workers ran before the ids were checked")

    monkeypatch.setattr(engine_assign, "assign_sharded", no_workers)
    line = _err(runner.invoke(app, ["assign", str(tmp_path / "d.npy"), "-t", str(tok), "-o", str(tmp_path / "o"), "--engine", "ray"]))
    assert "duplicate item id '1003' (2 times, first at row 3)" in line
    assert not (tmp_path / "o").exists()
