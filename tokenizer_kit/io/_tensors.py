"""Safetensors files written from parts, for tensors that are not held in memory whole.

``write_safetensors_parts(path, tensors)`` writes the same bytes as
``safetensors.numpy.save_file`` would for the assembled arrays (header JSON in the library's
order: wider dtypes first, then by name; padded with spaces to 8 bytes), but each tensor's
data comes from an iterable of chunks written as they arrive, so memory is one chunk.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["write_safetensors_parts"]

# safetensors' dtype names, in the order of its Dtype enum (save_file writes the larger first)
_NAMES = [(np.bool_, "BOOL"), (np.uint8, "U8"), (np.int8, "I8"), (np.int16, "I16"), (np.uint16, "U16"), (np.float16, "F16"),
          (np.int32, "I32"), (np.uint32, "U32"), (np.float32, "F32"), (np.float64, "F64"), (np.int64, "I64"), (np.uint64, "U64")]
_DTYPE_NAME = {np.dtype(t): name for t, name in _NAMES}
_RANK = {name: i for i, (_, name) in enumerate(_NAMES)}


def write_safetensors_parts(path: str | os.PathLike, tensors: Mapping[str, tuple[np.dtype, Sequence[int], Iterable[np.ndarray]]]) -> Path:
    """Write ``tensors`` (name -> (dtype, shape, chunks)) as one safetensors file at ``path``.

    The chunks of a tensor, concatenated in C order, are its data; each is cast to the
    tensor's dtype as it is written. Iterables are consumed lazily, one tensor after another
    in the file's order, so generators that read their data from disk keep memory bounded.
    A tensor whose chunks do not add up to its shape raises ``ValueError``.
    """
    path = Path(path)
    specs = []
    for name, (dtype, shape, chunks) in tensors.items():
        dt = np.dtype(dtype)
        if dt not in _DTYPE_NAME:
            raise ValueError(f"tensor {name!r}: dtype {dt} has no safetensors name")
        shape = [int(k) for k in shape]
        specs.append((name, dt, shape, chunks, int(np.prod(shape, dtype=np.int64)) * dt.itemsize))
    specs.sort(key=lambda s: (-_RANK[_DTYPE_NAME[s[1]]], s[0]))
    header, offset = {}, 0
    for name, dt, shape, _, nbytes in specs:
        header[name] = {"dtype": _DTYPE_NAME[dt], "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name, dt, _, chunks, nbytes in specs:
            written = 0
            for chunk in chunks:
                data = np.ascontiguousarray(chunk, dtype=dt)
                f.write(data.data)
                written += data.nbytes
            if written != nbytes:
                raise ValueError(f"tensor {name!r}: its chunks hold {written} bytes, its shape needs {nbytes}")
    return path
