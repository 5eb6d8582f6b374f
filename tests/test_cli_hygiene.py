"""CLI hygiene: exit codes (2 usage, 1 input/runtime), JSON errors under --format json, -q and
--log-level, examples in --help, the model card of a tokenizer directory, group-readable files."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from tokenizer_kit.cli.app import app
from tokenizer_kit.io import make_clustered_embeddings

runner = CliRunner()


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    d = tmp_path_factory.mktemp("hyg")
    np.save(d / "x.npy", make_clustered_embeddings(600, 8, seed=0))
    (d / "x.ids.txt").write_text("\n".join(f"i{k}" for k in range(600)) + "\n")
    return d / "x.npy"


def _one_json(stdout: str) -> dict:
    return json.loads(stdout)


def test_usage_errors_exit_2_input_errors_exit_1(emb, tmp_path):
    cases = [
        (["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--codebook-size", "abc"], 2),  # wrong type (click)
        (["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--nope"], 2),  # unknown option
        (["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--levels", "0"], 2),  # out of range (config)
        (["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--log-level", "loud"], 2),
        (["build-codebook", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "a")], 1),  # input
        (["report", str(tmp_path / "nothing")], 1),
    ]
    for argv, code in cases:
        r = runner.invoke(app, argv)
        assert r.exit_code == code, (argv, r.output)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert r.stdout == ""
    assert not (tmp_path / "a").exists()


def test_errors_are_json_under_format_json(emb, tmp_path):
    r = runner.invoke(app, ["build-codebook", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "a"), "--format", "json"])
    err = _one_json(r.stdout)["error"]
    assert r.exit_code == 1 and err["exit_code"] == 1 and "does not exist" in err["message"] and err["type"] == "InputError"
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--levels", "0", "--format", "json"])
    err = _one_json(r.stdout)["error"]
    assert r.exit_code == 2 and err == {"type": "UsageError", "message": err["message"], "exit_code": 2} and "levels" in err["message"]
    r = runner.invoke(app, ["build-codebook", str(emb), "--format", "json", "--out", str(tmp_path / "a"), "--codebook-size", "x"])
    assert r.exit_code == 2 and _one_json(r.stdout)["error"]["type"] == "UsageError"


def test_quiet_and_log_level(emb, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_KIT_PROGRESS_EVERY", "0")  # a progress line at every step
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--codebook-size", "8", "--levels", "2"])
    assert r.exit_code == 0, r.output
    assert "tokenizer_kit.progress" in r.stderr and "k-means levels" in r.stderr  # outside a terminal: log lines
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "b"), "--codebook-size", "8", "--levels", "2", "-q"])
    assert r.exit_code == 0 and r.stderr == "" and "built" in r.stdout
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "c"), "--codebook-size", "8", "--levels", "2",
                            "--log-level", "error"])
    assert r.exit_code == 0 and r.stderr == ""
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "d"), "--codebook-size", "8", "--levels", "2",
                            "--log-level", "INFO"])
    assert r.exit_code == 0 and "INFO tokenizer_kit" in r.stderr


def test_help_has_examples_exit_codes_and_plain_flags():
    r = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "Exit codes: 0 done; 1 an input" in " ".join(r.stdout.split())
    r = runner.invoke(app, ["build-codebook", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Examples" in r.stdout and "tokenizer-kit build-codebook office.parquet" in r.stdout
    assert "--balanced" in r.stdout and "--balanced <bool>" not in r.stdout and "BOOLEAN" not in r.stdout
    for opt in ("--quiet", "--log-level", "--verbose"):
        assert opt in r.stdout


def test_model_card_and_file_modes(emb, tmp_path):
    from tokenizer_kit import SemanticTokenizer

    old = os.umask(0o022)
    try:
        tok = tmp_path / "tok"
        r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tok), "--codebook-size", "8", "--levels", "2", "-q"])
        assert r.exit_code == 0, r.output
        for p in tok.iterdir():
            assert stat.S_IMODE(p.stat().st_mode) == 0o644, p.name  # safetensors used to be 0600
        card = (tok / "README.md").read_text()
        assert card.startswith("# tok: semantic-ID tokenizer") and "**rq-kmeans** (2 levels x 8/8 codes)" in card
        assert "| source | " in card and str(emb.name) in card and "| items | 600 |" in card and "reconstruction MSE" in card
        assert "| policy | suffix |" in card and "| version | 1 |" in card
        manifest = json.loads((tok / "manifest.json").read_text())
        assert "README.md" not in manifest["files"]  # documentation, not part of the artifact
        # a cold start appended to the index rewrites the card (version 2, one segment)
        new = tmp_path / "new.npy"
        np.save(new, make_clustered_embeddings(50, 8, seed=5))
        (tmp_path / "new.ids.txt").write_text("\n".join(f"n{k}" for k in range(50)) + "\n")
        r = runner.invoke(app, ["assign", str(new), "-t", str(tok), "--update", "--format", "json"])
        assert r.exit_code == 0, r.output
        card = (tok / "README.md").read_text()
        assert "| version | 2 |" in card and "| cold-start segments | 1 |" in card and "| items | 650 |" in card
        assert stat.S_IMODE((tok / "README.md").stat().st_mode) == 0o644
        assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in tok.iterdir())
        SemanticTokenizer.from_pretrained(tok)  # the card does not disturb loading / verification
    finally:
        os.umask(old)
