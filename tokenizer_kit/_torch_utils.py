"""The package's torch conventions, one of each: device resolution, AdamW parameter groups,
the learning-rate schedule (warmup, then decay), scoped CPU threads and whether the CPU
computes bf16 natively.

Alignment, RQ-VAE, feature extraction and the companion all go through these, so a device
string means the same everywhere and a schedule is spelled once.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

from .errors import InputError

__all__ = ["resolve_device", "decay_groups", "low_rank", "warmup_decay", "cpu_threads", "cpu_has_native_bf16", "native_bf16"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``device`` setting.

    ``None`` or ``"auto"``: ``cuda`` when torch sees a GPU, else ``cpu``. ``"cpu"``,
    ``"cuda"`` and ``"cuda:N"`` as written; asking for CUDA without a visible GPU, or for
    anything else, is an :class:`~tokenizer_kit.errors.InputError` naming the fix.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = str(device)
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or (name.startswith("cuda:") and name[5:].isdigit()):
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} asked for but torch sees no GPU; set device to 'cpu' or 'auto'")
        n = torch.cuda.device_count()
        if name != "cuda" and int(name[5:]) >= n:
            raise InputError(f"device {name!r} asked for but torch sees {n} GPU(s) (cuda:0 to cuda:{n - 1}); pick one of those or 'auto'")
        return torch.device(name)
    raise InputError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def low_rank(name: str, p: nn.Parameter) -> bool:
    """The default no-decay rule: parameters with fewer than 2 dimensions (biases, norm
    scales, scalars such as a learned temperature), as minGPT and torchtune do."""
    return p.ndim < 2


def decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    weight_decay: float,
    *,
    no_decay: Callable[[str, nn.Parameter], bool] = low_rank,
) -> list[dict]:
    """AdamW parameter groups ``[decayed, not decayed]`` (each in ``named_parameters``
    order; frozen parameters left out): the decayed group has ``weight_decay``, the other 0.

    ``no_decay(name, parameter)`` says which parameters skip decay; the default is
    :func:`low_rank`. RQ-VAE passes its own (codebooks only), see there.
    """
    decay, keep = [], []
    for name, p in named_parameters:
        if p.requires_grad:
            (keep if no_decay(name, p) else decay).append(p)
    return [{"params": decay, "weight_decay": float(weight_decay)}, {"params": keep, "weight_decay": 0.0}]


def warmup_decay(total: int, warmup: int, *, floor: float = 0.0, shape: str = "cosine") -> Callable[[int], float]:
    """LR multiplier per step for ``torch.optim.lr_scheduler.LambdaLR``.

    Linear warmup ``(step + 1) / warmup`` over the first ``warmup`` steps, then a decay over
    the remaining ``total - warmup`` steps from 1 to ``floor``: half a cosine
    (``shape="cosine"``, alignment and RQ-VAE) or a straight line (``shape="linear"``, the
    companion, as TIGER's T5 recipe). The multiplier stays at ``floor`` after ``total``.
    """
    if shape not in ("cosine", "linear"):
        raise InputError(f"shape must be 'cosine' or 'linear', got {shape!r}")
    span = max(1, total - warmup)

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if shape == "linear":
            left = min(1.0, max(0.0, (total - step) / span))  # 1 - progress, as one division
            return floor + (1 - floor) * left
        t = min(1.0, (step - warmup) / span)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


@contextlib.contextmanager
def cpu_threads(n: int, device: torch.device | str = "cpu") -> Iterator[None]:
    """``torch.set_num_threads(n)`` for the ``with`` block when ``device`` is the CPU (the
    caller's setting comes back afterwards); ``n == 0`` leaves torch's setting alone.

    On a 2-core machine shared with other jobs, one thread ran the alignment and the
    companion 8-10x faster than two (OpenMP threads spin waiting for a busy core)."""
    if torch.device(device).type != "cpu" or not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def cpu_has_native_bf16() -> bool:
    """True when this CPU has bf16 matrix instructions (AVX512-BF16 or AMX), where bf16
    autocast roughly halves a transformer's time; elsewhere torch emulates bf16, slower
    than float32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(torch.cpu, p, lambda: False)()) for p in probes)


def native_bf16(device: torch.device | str) -> bool:
    """True when ``device`` computes bf16 natively: a CUDA GPU that supports it, or a CPU
    with :func:`cpu_has_native_bf16`."""
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return device.type == "cpu" and cpu_has_native_bf16()
