"""Balanced means balanced, or the build says which level missed, by how much and what to try."""

import json
import subprocess
import sys

import numpy as np

from tokenizer_kit import SemanticTokenizer


def _clusters(n, d, c, noise=0.5, seed=0):
    """``c`` well-separated Gaussian clusters of equal size (the issue's case, smaller)."""
    rng = np.random.default_rng(seed)
    cen = rng.standard_normal((c, d)).astype(np.float32)
    return (cen[np.arange(n) % c] + noise * rng.standard_normal((n, d))).astype(np.float32)


def test_balanced_miss_is_reported_through_the_verb(tmp_path):
    """More well-separated clusters than codes: the balanced build cannot keep the cap and
    says so on stderr (one warning per level that missed), and the JSON records each miss."""
    x = _clusters(3000, 32, 48)
    np.save(tmp_path / "x.npy", x)
    cmd = [sys.executable, "-m", "tokenizer_kit.cli.app", "build-codebook", str(tmp_path / "x.npy"), "--out", str(tmp_path / "tok"),
           "--row-ids", "--levels", "2", "--codebook-size", "32", "--balanced", "--seed", "0", "--format", "json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    tok = SemanticTokenizer.from_pretrained(tmp_path / "tok")
    misses = tok.metrics["balance_misses"]
    assert misses, "48 far-apart clusters on 32 codes cannot be split evenly"
    counts = [np.bincount(tok.codes[:, lv], minlength=32) for lv in range(2)]
    for m in misses:
        assert m["largest"] == int(counts[m["level"]].max()) > m["limit"]
        assert f"level {m['level'] + 1}'s largest code holds {m['largest']} items" in r.stderr
    assert "balance_iters" in r.stderr
    # levels that met the cap are not reported
    n = len(x)
    for lv in set(range(2)) - {m["level"] for m in misses}:
        assert counts[lv].max() <= max(-(-n // 32), int(1.1 * n / 32))


def test_balanced_build_within_cap_says_nothing(clustered, caplog):
    x = clustered[1] if isinstance(clustered, tuple) else clustered
    tok = SemanticTokenizer.build(np.ascontiguousarray(x[:2000]), codebook_sizes=[16], seed=0, balanced=True, balance_cap=1.5)
    c = np.bincount(tok.codes[:, 0], minlength=16)
    assert c.max() <= 1.5 * len(tok.codes) / 16
    assert tok.metrics["balance_misses"] == []
    assert "balanced build" not in caplog.text
