"""Metric definitions against hand-computed values."""

import math

import numpy as np
import pytest

from tokenizer_kit.evaluation import (
    category_nmi,
    collision_stats,
    level_stats,
    prefix_fanout,
    read_index_json,
    reconstruction_stats,
    tokenizer_metrics,
)
from tokenizer_kit.errors import InputError


def test_uniform_level_hits_ceiling():
    s = level_stats(np.repeat(np.arange(8), 5), 8)
    assert s["utilization"] == 1.0
    assert s["entropy_nats"] == pytest.approx(math.log(8))
    assert s["entropy_bits"] == pytest.approx(3.0)
    assert s["entropy_normalized"] == pytest.approx(1.0)
    assert s["perplexity"] == pytest.approx(8.0)
    assert s["gini"] == pytest.approx(0.0, abs=1e-12)


def test_collapsed_level():
    s = level_stats(np.zeros(100, dtype=int), 8)
    assert s["utilization"] == 1 / 8 and s["entropy_nats"] == 0.0 and s["perplexity"] == 1.0
    assert s["gini"] == pytest.approx(7 / 8)


def test_paper_ceiling_for_8192():
    s = level_stats(np.arange(8192), 8192)
    assert s["entropy_nats"] == pytest.approx(9.0109, abs=1e-4)


def test_collisions():
    codes = np.array([[0, 1], [0, 1], [0, 1], [1, 0], [2, 2]])
    c = collision_stats(codes)
    assert c["collision_rate"] == pytest.approx(3 / 5)
    assert c["unique_sids"] == 3 and c["largest_bucket"] == 3 and c["excess_items"] == 2


def test_fanout():
    codes = np.array([[0, 1], [0, 2], [0, 2], [1, 0]])
    f = prefix_fanout(codes)
    assert f == [{"prefix_length": 1, "prefixes": 2, "mean_children": 1.5, "max_children": 2}]


def test_reconstruction():
    x = np.array([[1.0, 0.0], [0.0, 2.0]])
    xh = np.array([[1.0, 1.0], [0.0, 0.0]])
    r = reconstruction_stats(x, xh)
    assert r["reconstruction_mse"] == pytest.approx(5 / 4)
    assert r["reconstruction_relative"] == pytest.approx(5 / 5)
    with pytest.raises(InputError, match="shapes differ"):
        reconstruction_stats(x, xh[:1])


def test_nmi_perfect_and_skips_missing():
    r = category_nmi(np.array([0, 0, 1, 1, 2]), ["a", "a", "b", "b", None])
    assert r["category_nmi"] == pytest.approx(1.0) and r["category_items"] == 4


def test_tokenizer_metrics_shape():
    m = tokenizer_metrics(np.array([[0, 0], [1, 1]]), [2, 2])
    for k in ("n_items", "reconstruction_mse", "collision_rate", "unique_sids", "largest_bucket", "levels"):
        assert k in m
    with pytest.raises(InputError):
        tokenizer_metrics(np.array([[0, 0]]), [2, 2, 2])


def test_index_json(tmp_path):
    (tmp_path / "x.index.json").write_text('{"1": ["<a_1>", "<b_2>", "<c_3>"], "2": ["<a_1>", "<b_2>", "<c_4>"]}')
    ids, codes = read_index_json(tmp_path / "x.index.json")
    assert ids.tolist() == ["1", "2"] and codes.tolist() == [[1, 2, 3], [1, 2, 4]]
    (tmp_path / "bad.index.json").write_text('{"1": ["<a_1>"], "2": ["<a_1>", "<b_1>"]}')
    with pytest.raises(InputError, match="all SIDs must have the same length"):
        read_index_json(tmp_path / "bad.index.json")
    (tmp_path / "tok.index.json").write_text('{"1": ["a1"]}')
    with pytest.raises(InputError, match="expected tokens like"):
        read_index_json(tmp_path / "tok.index.json")
