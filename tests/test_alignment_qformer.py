import numpy as np
import pytest
import torch

from _align_helpers import one_torch_thread  # noqa: F401
from tokenizer_kit.alignment import QFormer, QFormerConfig, info_nce, info_nce_reference, item_vectors, pair_similarity
from tokenizer_kit.errors import InputError


def _model(**kw):
    torch.manual_seed(0)
    cfg = QFormerConfig(feature_dim=12, d_model=16, n_queries=4, n_layers=2, n_heads=4, **kw)
    return QFormer(cfg).eval()


def test_shapes():
    m = _model()
    out = m(torch.randn(3, 7, 12), torch.ones(3, 7, dtype=torch.bool))
    assert out.shape == (3, 4, 16)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("pooled", [False, True])
def test_padding_does_not_change_outputs(pooled):
    m = _model(pooled_query_init=pooled)
    torch.manual_seed(1)
    x = torch.randn(2, 5, 12)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    # same items, padded further with garbage in the padding slots
    x_pad = torch.cat([x, 100 * torch.randn(2, 6, 12)], dim=1)
    x_pad[0, 3:5] = 55.0
    mask_pad = torch.cat([mask, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    with torch.no_grad():
        a = m(x, mask)
        b = m(x_pad, mask_pad)
        alone = m(x[:1, :3], mask[:1, :3])  # item 0 alone, no padding at all
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a[:1], alone, rtol=1e-5, atol=1e-5)


def test_empty_item_is_finite():
    m = _model()
    out = m(torch.randn(2, 4, 12), torch.tensor([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_config_errors_all_at_once():
    with pytest.raises(InputError) as e:
        QFormer(QFormerConfig(feature_dim=0, d_model=10, n_heads=3, dropout=1.5))
    msg = str(e.value)
    assert "feature_dim" in msg and "divisible" in msg and "dropout" in msg


def test_wrong_feature_dim_raises():
    with pytest.raises(InputError):
        _model()(torch.randn(2, 3, 11), torch.ones(2, 3, dtype=torch.bool))


def test_similarity_is_mean_of_per_query_cosines():
    torch.manual_seed(2)
    a, b = torch.randn(3, 4, 8), torch.randn(5, 4, 8)
    s = pair_similarity(a, b)
    ref = torch.nn.functional.cosine_similarity(a[:, None], b[None], dim=-1).mean(-1)
    torch.testing.assert_close(s, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(item_vectors(a).norm(dim=1), torch.ones(3))


@pytest.mark.parametrize("tau", [0.07, 0.5])
def test_info_nce_equals_reference(tau):
    torch.manual_seed(3)
    a, b = torch.randn(6, 4, 8, dtype=torch.float64), torch.randn(6, 4, 8, dtype=torch.float64)
    got = float(info_nce(a, b, tau))
    assert got == pytest.approx(info_nce_reference(a, b, tau), rel=1e-5)


def test_info_nce_masks_duplicate_negatives():
    torch.manual_seed(4)
    a, b = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
    b[3] = b[1]  # item b1 appears twice: column 3 is not a negative for row 1 (and vice versa)
    same = torch.zeros(4, 4, dtype=torch.bool)
    same[1, 3] = same[3, 1] = True
    got = info_nce(a, b, 0.1, same_b=same)
    logits = pair_similarity(a, b) / 0.1
    rows = []
    for i in range(4):
        keep = [j for j in range(4) if not same[i, j]]
        rows.append(-(logits[i, i] - torch.logsumexp(logits[i, keep], 0)))
    l_ab = torch.stack(rows).mean()
    l_ba = torch.nn.functional.cross_entropy(logits.T, torch.arange(4))
    torch.testing.assert_close(got, 0.5 * (l_ab + l_ba))
