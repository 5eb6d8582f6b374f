"""Embedding fingerprints are stored in every index: their values must never change."""

from __future__ import annotations

import hashlib

import numpy as np

from tokenizer_kit.io import embedding_hash


def _reference(x: np.ndarray) -> np.ndarray:
    """The definition: each row rounded with ``np.round(x, 4)`` in float32, -0.0 folded into 0.0,
    its bytes hashed with 8-byte BLAKE2b (little-endian), 0 mapped to 1."""
    xr = np.ascontiguousarray(np.round(np.asarray(x, np.float32), 4) + np.float32(0.0))
    out = np.array([int.from_bytes(hashlib.blake2b(r.tobytes(), digest_size=8).digest(), "little") for r in xr], np.uint64)
    out[out == 0] = 1
    return out


def test_fingerprints_equal_their_definition():
    rng = np.random.default_rng(0)
    edge = np.array([[0.00005, -0.00005, 0.00015, 0.00025, 1e-9, -0.0, 12345.67895, -0.12355, 3.0e38, -1e-30, np.inf, -np.inf]],
                    np.float32)
    with np.errstate(over="ignore"):
        for x in (rng.standard_normal((2000, 64)).astype(np.float32), (rng.standard_normal((500, 16)) * 1e-3).astype(np.float32),
                  rng.standard_normal((300, 32)).astype(np.float16), rng.standard_normal((300, 8)), edge,
                  np.asfortranarray(rng.standard_normal((50, 7)).astype(np.float32))):
            np.testing.assert_array_equal(embedding_hash(x), _reference(x))


def test_a_known_fingerprint():
    x = np.arange(8, dtype=np.float32).reshape(2, 4) / 3
    assert embedding_hash(x).tolist() == _reference(x).tolist()
    assert embedding_hash(x)[0] == int.from_bytes(hashlib.blake2b(np.round(x[0], 4).tobytes(), digest_size=8).digest(), "little")
