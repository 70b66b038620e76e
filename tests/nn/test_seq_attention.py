import pytest
import torch
import torch.nn.functional as F

from archlab.errors import ConfigError
from archlab.nn.seq_attention import (
    AdditiveAttention,
    MultiplicativeAttention,
    SeqAttention,
    lengths_to_mask,
)

B, T, S, D = 3, 4, 6, 8
LENGTHS = torch.tensor([6, 3, 1])


def inputs(dtype=torch.float64, d_k=D):
    q = torch.randn(B, T, D, dtype=dtype)
    k = torch.randn(B, S, d_k, dtype=dtype)
    return q, k, lengths_to_mask(LENGTHS, S)


def test_lengths_to_mask_marks_the_valid_prefix():
    assert lengths_to_mask(torch.tensor([2, 0, 3]), 3).tolist() == [
        [True, True, False], [False, False, False], [True, True, True]]


@pytest.mark.parametrize("score", ["dot", "general"])
def test_multiplicative_attention_equals_torch_sdpa_with_unit_scale(score):
    q, k, mask = inputs()
    attn = MultiplicativeAttention(D, D, score).double()
    ctx, alpha = attn(q, k, mask=mask)
    # s^T W_a h_j = (W_a^T s)^T h_j: the "general" score is a dot score on transformed queries.
    q_eff = q @ attn.W_a.weight if score == "general" else q
    ref = F.scaled_dot_product_attention(q_eff, k, k, attn_mask=mask[:, None, :], scale=1.0)
    assert torch.allclose(ctx, ref, atol=1e-12), "context must equal softmax(q k^T) v within 1e-12 (float64)"
    assert torch.allclose(alpha.sum(-1), torch.ones(B, T, dtype=torch.float64), atol=1e-12)


def test_additive_attention_follows_bahdanau_equation_entry_by_entry():
    q, k, mask = inputs(d_k=5)
    attn = AdditiveAttention(D, 5, attn_size=7).double()
    ctx, alpha = attn(q, k, mask=mask)
    for b in range(B):
        for t in range(T):
            L = int(LENGTHS[b])
            e = torch.stack([attn.v.weight[0] @ torch.tanh(attn.W_1.weight @ q[b, t] + attn.W_2.weight @ k[b, j]
                                                           + attn.W_2.bias) for j in range(L)])
            a = e.softmax(0)
            assert torch.allclose(alpha[b, t, :L], a, atol=1e-12), "alpha must match v^T tanh(W_1 s + W_2 h) (1e-12)"
            assert torch.all(alpha[b, t, L:] == 0)
            assert torch.allclose(ctx[b, t], a @ k[b, :L], atol=1e-12)


@pytest.mark.parametrize("score", ["additive", "dot", "general"])
def test_padding_keys_never_change_the_context(score):
    q, k, mask = inputs()
    attn = SeqAttention(D, D, score).double()
    ctx, alpha = attn(q, k, mask=mask)
    k_padded = torch.cat([k, 100 * torch.randn(B, 5, D, dtype=torch.float64)], dim=1)  # garbage in padding
    mask_padded = torch.cat([mask, torch.zeros(B, 5, dtype=torch.bool)], dim=1)
    ctx2, alpha2 = attn(q, k_padded, mask=mask_padded)
    assert torch.allclose(ctx, ctx2, atol=1e-12)
    assert torch.allclose(alpha, alpha2[..., :S], atol=1e-12)


@pytest.mark.parametrize("score", ["additive", "dot", "general"])
def test_one_step_query_equals_the_matching_row_of_a_multi_step_query(score):
    q, k, mask = inputs()
    attn = SeqAttention(D, D, score).double()
    ctx, alpha = attn(q, k, mask=mask)
    ctx1, alpha1 = attn(q[:, 2], k, mask=mask)
    assert ctx1.shape == (B, D) and alpha1.shape == (B, S)
    assert torch.allclose(ctx1, ctx[:, 2], atol=1e-12) and torch.allclose(alpha1, alpha[:, 2], atol=1e-12)


def test_a_fully_masked_row_gives_zeros_and_finite_gradients():
    q, k, mask = inputs(dtype=torch.float32)
    mask[1] = False
    q.requires_grad_(True)
    attn = AdditiveAttention(D, D)
    ctx, alpha = attn(q, k, mask=mask)
    assert torch.all(ctx[1] == 0) and torch.all(alpha[1] == 0)
    ctx.sum().backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(attn.W_1.weight.grad).all()


@pytest.mark.parametrize("score", ["additive", "dot", "general"])
def test_runs_under_bf16_autocast(score):
    q, k, mask = inputs(dtype=torch.float32)
    attn = SeqAttention(D, D, score)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ctx, alpha = attn(q, k, mask=mask)
    assert torch.isfinite(ctx.float()).all()
    assert torch.allclose(alpha.float().sum(-1), torch.ones(B, T), atol=2e-2)  # bf16 has ~3 digits


def test_bad_arguments_raise_config_errors_naming_them():
    with pytest.raises(ConfigError, match=r"query_size == key_size.*query_size=8, key_size=5"):
        MultiplicativeAttention(8, 5, "dot")
    with pytest.raises(ConfigError, match=r"score must be one of .*got 'cosine'"):
        SeqAttention(8, 8, "cosine")
    attn = AdditiveAttention(D, D)
    q, k, mask = inputs(dtype=torch.float32)
    with pytest.raises(ConfigError, match=r"keys must be \(B, S, D_k\) with D_k=8, got shape \(3, 6, 5\)"):
        attn(q, torch.randn(B, S, 5))
    with pytest.raises(ConfigError, match=r"mask must be a boolean \(B, S\)=\(3, 6\).*got torch.int64"):
        attn(q, k, mask=mask.long())
