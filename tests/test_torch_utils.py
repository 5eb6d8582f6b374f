"""One device resolver, one LR schedule, one AdamW grouping (``tokenizer_kit._torch_utils``)."""

import math

import pytest
import torch
from torch import nn

from tokenizer_kit._torch_utils import cpu_has_native_bf16, cpu_threads, decay_groups, resolve_device, warmup_decay
from tokenizer_kit.errors import InputError


# ---- device -------------------------------------------------------------------------------------
def test_device_names(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device(None) == resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(InputError, match="torch sees no GPU; set device to 'cpu' or 'auto'"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="torch sees no GPU"):
        resolve_device("cuda:1")
    with pytest.raises(InputError, match="device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got 'banana'"):
        resolve_device("banana")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InputError, match=r"sees 2 GPU\(s\)"):
        resolve_device("cuda:2")


def test_every_stage_resolves_devices_the_same_way(monkeypatch):
    from tokenizer_kit.companion import RetrievalConfig
    from tokenizer_kit.quantizers._rq_vae import RQVAE

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="torch sees no GPU"):
        RetrievalConfig(device="cuda").validate()
    assert RetrievalConfig(device="auto").torch_device() == torch.device("cpu")
    with pytest.raises(InputError, match="torch sees no GPU"):
        RQVAE(codebook_sizes=[4], device="cuda", max_epochs=1).fit(torch.randn(64, 8).numpy())


# ---- schedule -----------------------------------------------------------------------------------
def _alignment_before(steps, warmup, floor):
    """alignment/_train.py's schedule as it was (commit 86dc514)."""

    def f(step):
        if warmup and step < warmup:
            return (step + 1) / warmup
        prog = (step - warmup) / max(1, steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, prog)))

    return f


def _rq_vae_before(total, warmup, floor):
    def f(step):
        if warmup and step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


def _companion_before(total, warm):
    return lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm)))


@pytest.mark.parametrize("total,warmup,floor", [(12, 50, 0.05), (3000, 100, 0.05), (500, 0, 0.0), (7, 3, 0.5), (1, 1, 0.05)])
def test_schedule_is_bit_identical_to_the_ones_it_replaces(total, warmup, floor):
    new = warmup_decay(total, warmup, floor=floor)
    old_a, old_r = _alignment_before(total, warmup, floor), _rq_vae_before(total, warmup, floor)
    for s in range(total + 3):
        assert new(s) == old_a(s) == old_r(s), s


@pytest.mark.parametrize("total", [1, 2, 7, 100, 3000])
@pytest.mark.parametrize("warmup_ratio", [0.0, 0.05, 0.5, 0.99])
def test_linear_schedule_is_bit_identical_to_the_companions(total, warmup_ratio):
    warm = max(1, int(warmup_ratio * total))  # as the companion derives it: warm <= total
    lin, old = warmup_decay(total, warm, shape="linear"), _companion_before(total, warm)
    for s in range(total + 1):  # LambdaLR evaluates steps 0 .. total
        assert lin(s) == old(s), s


def test_schedule_shape():
    f = warmup_decay(110, 10, floor=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == 1.0 and f(10) == 1.0
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
    g = warmup_decay(110, 10, shape="linear")
    assert g(60) == pytest.approx(0.5) and g(110) == 0.0
    with pytest.raises(InputError, match="shape"):
        warmup_decay(10, 1, shape="step")


# ---- parameter groups ---------------------------------------------------------------------------
def test_decay_groups_default_rule():
    m = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3), nn.Linear(3, 2, bias=False))
    m.register_parameter("tau", nn.Parameter(torch.tensor(0.1)))
    m.register_parameter("frozen", nn.Parameter(torch.zeros(2, 2), requires_grad=False))
    decay, keep = decay_groups(m.named_parameters(), 0.01)
    assert decay["weight_decay"] == 0.01 and keep["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [(3, 4), (2, 3)]
    assert [p.shape for p in keep["params"]] == [(), (3,), (3,), (3,)]  # tau (own parameters first), bias, norm weight and bias


def test_rq_vae_keeps_its_rule_codebooks_only():
    """RQ-VAE exempts only its codebooks (biases keep their decay, as they always did: the
    golden SIDs depend on it)."""
    from tokenizer_kit.quantizers._rq_vae import RQVAE

    q = RQVAE(codebook_sizes=[4, 4], latent_dim=4, hidden_dims=[8], max_epochs=1)
    model = q._new_model(6)
    decay, keep = decay_groups(model.named_parameters(), 1e-4, no_decay=lambda name, p: name.startswith("rvq."))
    assert len(keep["params"]) == 2 and all(p.ndim == 2 for p in keep["params"])
    assert any(p.ndim == 1 for p in decay["params"])


# ---- CPU threads, bf16 ------------------------------------------------------------------------------
def test_cpu_threads_scoped_and_restored():
    before = torch.get_num_threads()
    with cpu_threads(1, "cpu"):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):  # restored even when the block raises
        with cpu_threads(1, torch.device("cpu")):
            raise RuntimeError
    assert torch.get_num_threads() == before
    with cpu_threads(0, "cpu"):  # 0 leaves torch's setting
        assert torch.get_num_threads() == before


def test_cpu_threads_leave_cuda_runs_alone(monkeypatch):
    calls = []
    monkeypatch.setattr(torch, "set_num_threads", calls.append)
    with cpu_threads(1, "cuda"):
        pass
    assert calls == []


def test_native_bf16_follows_the_cpu_probes(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert cpu_has_native_bf16() is False
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert cpu_has_native_bf16() is True
