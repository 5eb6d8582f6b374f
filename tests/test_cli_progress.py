"""What the CLI shows while a verb runs: rich bars in a terminal (count, rate, ETA, the loop's
metrics), progress log lines elsewhere, nothing under -q, and third-party bars only with -v."""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tokenizer_kit.cli import _common
from tokenizer_kit.cli.app import app
from tokenizer_kit.io import make_clustered_embeddings

runner = CliRunner()


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    d = tmp_path_factory.mktemp("prog")
    np.save(d / "x.npy", make_clustered_embeddings(1000, 8, seed=0))
    np.save(d / "x.ids.npy", np.arange(1000, dtype=np.int64))
    return d / "x.npy"


@pytest.fixture
def terminal(monkeypatch):
    buf = io.StringIO()
    monkeypatch.setattr(_common, "err_console", Console(file=buf, force_terminal=True, width=200, color_system=None))
    return buf


def test_terminal_shows_bars_with_count_rate_eta_and_metrics(emb, tmp_path, terminal):
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "t"), "--codebook-size", "8"])
    assert r.exit_code == 0, r.output
    shown = terminal.getvalue()
    line = [ln for ln in shown.splitlines() if "k-means levels" in ln][-1]  # the final render
    assert "3/3" in line and "levels/s" in line and "eta" in line and "residual_mse" in line
    assert any("encode" in ln and "1000/1000" in ln and "items/s" in ln for ln in shown.splitlines())
    new = tmp_path / "new.npy"
    np.save(new, make_clustered_embeddings(50, 8, seed=3))
    np.save(tmp_path / "new.ids.npy", np.arange(1000, 1050, dtype=np.int64))
    terminal.seek(0), terminal.truncate()
    r = runner.invoke(app, ["assign", str(new), "-t", str(tmp_path / "t"), "--format", "json"])
    assert r.exit_code == 0, r.output
    assert any("encode" in ln and "50/50" in ln for ln in terminal.getvalue().splitlines())
    terminal.seek(0), terminal.truncate()
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "q"), "--codebook-size", "8", "-q"])
    assert r.exit_code == 0 and "k-means" not in terminal.getvalue()


def test_log_lines_outside_a_terminal(emb, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZER_KIT_PROGRESS_EVERY", "0")
    r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "t"), "--codebook-size", "8"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("INFO tokenizer_kit.progress: k-means levels")]
    assert lines and "3/3 levels" in lines[-1] and "levels/s" in lines[-1] and "residual_mse" in lines[-1]
    assert any("eta " in ln for ln in lines)  # the in-flight lines say how long is left


def test_third_party_bars_only_with_verbose(emb, tmp_path):
    import tqdm
    import transformers

    try:
        r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "a"), "--codebook-size", "8", "-q"])
        assert r.exit_code == 0
        assert tqdm.tqdm(range(2)).disable and not transformers.utils.logging.is_progress_bar_enabled()
        r = runner.invoke(app, ["build-codebook", str(emb), "--out", str(tmp_path / "b"), "--codebook-size", "8", "-v"])
        assert r.exit_code == 0
        assert not tqdm.tqdm(range(2), file=io.StringIO()).disable and transformers.utils.logging.is_progress_bar_enabled()
    finally:
        _common.quiet_third_party(False)


def test_log_lines_report_work_done_and_a_failure_before_the_error(caplog, monkeypatch):
    """No line says nothing happened ("0/320 items, 0 items/s": a slow worker start, a task that
    failed at once), a resumed task's rate counts this run only, and a task that fails says so
    in its last line."""
    import logging

    from tokenizer_kit import _progress

    clock = [0.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: clock[0])
    log = logging.getLogger("tokenizer_kit.progress.test")
    prog = _progress.LogProgress(logger=log, every=5.0)
    with caplog.at_level(logging.INFO, logger=log.name):
        with prog.task("assign", total=320) as t:
            clock[0] += 27
            t.advance(0)
        with pytest.raises(ValueError), prog.task("assign", total=320):
            clock[0] += 27
            raise ValueError("row 250 contains inf")
        assert caplog.messages == []
        with pytest.raises(ValueError), prog.task("assign", total=320) as t:
            clock[0] += 10
            t.advance(200)
            raise ValueError("row 250 contains inf")
        assert len(caplog.messages) == 2 and "stopped" not in caplog.messages[0]
        assert caplog.messages[1] == "assign: 200/320 items, 20 items/s, elapsed 10s, stopped by an error"
        caplog.clear()
        with prog.task("rq-vae", total=10, unit="epoch", completed=8) as t:
            clock[0] += 6
            t.advance(0, loss=1.0)
            assert caplog.messages == []
            clock[0] += 2
            t.advance(2)
        assert caplog.messages[-1] == "rq-vae: 10/10 epochs, 0.25 epochs/s, elapsed 8s, loss 1"
