"""Embedding fingerprints: what an index records per item so that a known id arriving with
another vector is caught (the streaming build, the index and the cold start share it)."""

from __future__ import annotations

import hashlib

import numpy as np

__all__ = ["embedding_hash"]


# rows rounded at a time into one reused buffer: a whole batch's rounded copy (64 MB for 65,536
# rows of 256 floats) is a fresh allocation each call, and first touching fresh pages costs more
# than the rounding itself; a 4 MB buffer stays in the allocator's heap from call to call
_ROWS_BYTES = 1 << 22


def embedding_hash(x: np.ndarray) -> np.ndarray:
    """A 64-bit fingerprint per row of ``x`` (n, d), rounded to 4 decimals (0 is reserved for 'unknown')."""
    x = np.asarray(x)
    n = len(x)
    rb = int(np.prod(x.shape[1:], dtype=np.int64)) * 4  # a row's bytes as float32
    if not n or not rb:  # no rows, or rows of no bytes (each the digest of b"")
        return np.full(n, int.from_bytes(hashlib.blake2b(b"", digest_size=8).digest(), "little") or 1, np.uint64)
    step = max(1, _ROWS_BYTES // rb)
    buf = np.empty((min(step, n),) + x.shape[1:], np.float32)
    blake, digests = hashlib.blake2b, []
    for s in range(0, n, step):
        xr = buf[: min(step, n - s)]
        # np.round(x, 4) step by step in the buffer (multiply by 10^4, round half to even,
        # divide: the same float32 operations, bit for bit), then +0 folds -0.0 into 0.0
        np.copyto(xr, x[s : s + len(xr)], casting="unsafe")
        np.multiply(xr, 10.0**4, out=xr)
        np.rint(xr, out=xr)
        np.true_divide(xr, 10.0**4, out=xr)
        xr += np.float32(0.0)
        flat = memoryview(xr).cast("B")  # a row's bytes: a slice, no copy
        digests.append(b"".join([blake(flat[i : i + rb], digest_size=8).digest() for i in range(0, len(flat), rb)]))
    out = np.frombuffer(b"".join(digests), "<u8").astype(np.uint64)
    out[out == 0] = 1
    return out
