"""Greedy residual encoding, the hot loop of ``assign`` and of every build.

Per level, codes are ``argmin_k ||c_k||^2 + p_k - 2 r.c_k`` (``p`` the balanced prices, 0
otherwise) and the chosen centroid is subtracted from the residual.

CPU (:func:`greedy_encode`): rows are cut into blocks of ``BLOCK_ROWS`` counted from the
first row of the call; each block runs every level while its residual (block x d) and its
distance buffer (block x K) stay in cache: one fp32 GEMM into a reused buffer, one add of the
offsets, one argmin, one gather-subtract. Blocks run on a thread pool with single-threaded
BLAS in each thread, so two cores do not fight over one small GEMM. Near-tied codes are re-decided exactly
(``_exact``), so codes depend on neither the kernel, the thread count nor the block layout.

CUDA (:class:`TorchEncoder`): the same GEMM + argmin with torch on every listed device,
batches copied from (pinned) host memory; TF32 is switched off for the call (the error bound
of ``_exact`` is for fp32 products) and near-tied rows are re-decided on the host, so codes
equal the CPU codes bit for bit.
"""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Sequence

import numpy as np

from ._exact import CodeTable, exact_argmin, resolve_near_ties

__all__ = ["BLOCK_ROWS", "greedy_encode", "greedy_level", "single_thread_blas", "cpu_threads", "TorchEncoder", "row_sq_norms"]

logger = logging.getLogger(__name__)

# rows per block: the residual (4096 x 256 fp32 = 4 MiB) and the distances stay in L2/L3;
# measured at 0.82-0.92 of the GEMM bound on 1 thread at d = 256, K = 256 (bench_scale.py)
BLOCK_ROWS = 4096

_controller = None


def cpu_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def single_thread_blas() -> Iterator[None]:
    """BLAS on one thread inside the block (restored after); a no-op without threadpoolctl."""
    global _controller
    try:
        if _controller is None:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        yield
        return
    with _controller.limit(limits=1, user_api="blas"):
        yield


def greedy_level(r: np.ndarray, table: CodeTable, buf: np.ndarray | None = None) -> np.ndarray:
    """Codes (b,) of one level for residuals ``r`` (b, d), subtracted from ``r`` in place.

    The argmin is the exact one (:func:`._exact.exact_argmin`): the same on every kernel.
    """
    ids = exact_argmin(r, table, buf)
    r -= table.codebook[ids]
    return ids


def row_sq_norms(a: np.ndarray) -> np.ndarray:
    """``||a_i||^2`` (n,) float64 of float32 rows, each row summed in float64 on its own (the
    same value whichever block or batch the row is in)."""
    return np.einsum("ij,ij->i", a, a, dtype=np.float64)


def _blocks(n: int, block: int) -> list[tuple[int, int]]:
    return [(s, min(s + block, n)) for s in range(0, n, block)]


def run_blocks(fn, n: int, *, block: int = BLOCK_ROWS, threads: int | None = None) -> None:
    """Call ``fn(start, stop)`` for each block of rows, on a thread pool with 1-thread BLAS."""
    spans = _blocks(n, block)
    threads = min(cpu_threads() if threads is None else max(1, threads), len(spans))
    with single_thread_blas():
        if threads <= 1:
            for s, e in spans:
                fn(s, e)
        else:
            with ThreadPoolExecutor(threads) as ex:
                for f in [ex.submit(fn, s, e) for s, e in spans]:
                    f.result()


def greedy_encode(
    x: np.ndarray,
    tables: Sequence[CodeTable],
    *,
    block: int = BLOCK_ROWS,
    threads: int | None = None,
    out: np.ndarray | None = None,
    sq: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy codes (n, L) int64 of ``x`` (n, d) float32, one :class:`CodeTable` per level.

    ``sq`` (n, 2) float64, if given, receives each row's ``||x||^2`` and squared residual
    ``||x - decode(codes)||^2`` (the residual subtracted level by level in float32, as
    ``RQKMeans.residual_sq_norms``), computed while the block is in cache: the build's
    reconstruction error without a second pass that decodes."""
    n = x.shape[0]
    levels = len(tables)
    codes = np.empty((n, levels), dtype=np.int64) if out is None else out

    def one(s: int, e: int) -> None:
        xb = np.ascontiguousarray(x[s:e], dtype=np.float32)  # [b, d] read, never written
        b = e - s
        gathered = np.empty((b, xb.shape[1]), dtype=np.float32)
        r = None
        for level, table in enumerate(tables):
            buf = np.empty((b, table.size), dtype=np.float32)
            rl = xb if r is None else r
            np.matmul(rl, table.neg2ct, out=buf)  # [b, K] the GEMM
            buf += table.offset
            ids = buf.argmin(1)
            resolve_near_ties(buf, rl, ids, table)
            codes[s:e, level] = ids
            if level + 1 < levels or sq is not None:
                np.take(table.codebook, ids, axis=0, out=gathered)
                # the first subtraction also makes the residual (no separate copy of x)
                r = np.subtract(xb, gathered) if r is None else np.subtract(r, gathered, out=r)
        if sq is not None:
            sq[s:e, 0] = row_sq_norms(xb)
            sq[s:e, 1] = row_sq_norms(r)

    run_blocks(one, n, block=block, threads=threads)
    return codes


def torch_exact_ids(dist, r, table: CodeTable):
    """The exact argmin codes (b,) of torch rows ``r`` (b, d) fp32 given their distances ``dist``
    (b, K) = ``offset - 2 r.c`` from the device's GEMM (no TF32): the device's argmin where no
    near-tie is possible, the near-tied rows re-decided on the host by ``_exact`` (a sync point)."""
    import torch

    best, ids = dist.min(1)
    if dist.shape[1] < 2:
        return ids
    col = ids[:, None]
    dist.scatter_(1, col, float("inf"))
    second = dist.min(1).values
    dist.scatter_(1, col, best[:, None])
    rn = r.double().square().sum(1).sqrt() * (1.0 + 1e-6)
    thr = best.double() + 2.0 * (table.bound_r * rn + table.bound_0)
    tied = (second.double() <= thr).nonzero().squeeze(1)
    if tied.numel():
        host = ids[tied].cpu().numpy()
        resolve_near_ties(dist[tied].cpu().numpy(), r[tied].cpu().numpy(), host, table)
        ids[tied] = torch.from_numpy(host).to(ids.device)
    return ids


class TorchEncoder:
    """Greedy codes with torch on ``devices`` (every visible GPU by default).

    Batches of ``batch_size`` rows go round-robin to the devices; each runs the levels
    (GEMM + argmin) and sends back int32 codes. Host batches are pinned when the device is
    CUDA so the copy overlaps the previous batch's compute. Rows with a near-tie (see
    ``_exact``) are re-decided on the host by the same exact rule as the CPU path, so the
    codes equal the numpy codes on any device.
    """

    def __init__(self, tables: Sequence[CodeTable], devices: Sequence[str] | None = None):
        import torch

        if devices is None:
            n = torch.cuda.device_count()
            devices = [f"cuda:{i}" for i in range(n)] or ["cpu"]
        self.devices = [torch.device(d) for d in devices]
        self.levels = len(tables)
        self.tables = list(tables)
        self._per_device = []
        for dev in self.devices:
            self._per_device.append(
                [
                    (
                        torch.as_tensor(t.neg2ct).to(dev),  # [d, K]
                        torch.as_tensor(t.offset).to(dev),  # [K]
                        torch.as_tensor(t.codebook).to(dev),  # [K, d]
                    )
                    for t in tables
                ]
            )

    def _launch(self, torch, xb: np.ndarray, di: int):
        dev = self.devices[di]
        t = torch.from_numpy(xb)
        if dev.type == "cuda":
            t = t.pin_memory().to(dev, non_blocking=True)
        r = t.to(dev).clone()  # [b, d]
        out = torch.empty((r.shape[0], self.levels), dtype=torch.int32, device=dev)
        for level, (neg2ct, offset, cb) in enumerate(self._per_device[di]):
            dist = torch.mm(r, neg2ct)  # [b, K]
            dist += offset
            ids = torch_exact_ids(dist, r, self.tables[level])
            r -= cb[ids]
            out[:, level] = ids.to(torch.int32)
        return out

    def encode(self, x: np.ndarray, *, batch_size: int = 262144) -> np.ndarray:
        """Codes (n, L) int64 for ``x`` (n, d)."""
        import torch

        n = x.shape[0]
        codes = np.empty((n, self.levels), dtype=np.int64)
        # every device gets a share of each call, in chunks of at most batch_size rows
        spans = _blocks(n, max(1, min(batch_size, -(-n // len(self.devices)))))
        prev = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 GEMM, as on the CPU
        try:
            with torch.no_grad():
                nd = len(self.devices)
                for g in range(0, len(spans), nd):
                    group = spans[g : g + nd]
                    pending = [
                        (s, e, self._launch(torch, np.ascontiguousarray(x[s:e], dtype=np.float32), di)) for di, (s, e) in enumerate(group)
                    ]
                    for s, e, res in pending:
                        codes[s:e] = res.cpu().numpy()
        finally:
            torch.backends.cuda.matmul.allow_tf32 = prev
        return codes
