"""Models for tables: the MLP with category embeddings, the FT-Transformer (token per feature, [CLS],
the archlab encoder -- equal to torch's), and gradient-boosted trees fitted by LightGBM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import archlab
from archlab.errors import CheckpointError, ConfigError
from archlab.nn.tabular import CategoricalEmbedding, FeatureTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

CARDS = (4, 3)


def _row(batch=5, n=3, cards=CARDS, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    x_num = torch.randn(batch, n, generator=g, dtype=dtype)
    x_cat = torch.stack([torch.randint(0, k, (batch,), generator=g) for k in cards], dim=1)
    return x_num, x_cat


def test_feature_tokens_are_x_j_W_j_plus_b_j_and_category_lookups():
    tok = FeatureTokenizer(3, CARDS, d_token=6).double()
    x_num, x_cat = _row(dtype=torch.float64)
    T = tok(x_num, x_cat)
    assert T.shape == (5, 5, 6)
    for j in range(3):  # numerical: b_j + x_j W_j
        torch.testing.assert_close(T[:, j], tok.bias[j] + x_num[:, j:j + 1] * tok.W_num[j], rtol=0, atol=1e-12)
    offsets = (0, 4)
    for j in range(2):  # categorical: b_j + row c_j of column j's own table
        want = tok.bias[3 + j] + tok.W_cat.weight[offsets[j] + x_cat[:, j]]
        torch.testing.assert_close(T[:, 3 + j], want, rtol=0, atol=0)
    emb = CategoricalEmbedding(CARDS, 2)
    with pytest.raises(ConfigError, match=r"category codes must be in 0..K_j - 1 for cardinalities \(4, 3\)"):
        emb(torch.tensor([[0, 3]]))


def test_parameter_counts_are_exact():
    n, d, dff, L, out = 3, 8, 16, 2, 3
    ft = archlab.create_model("ft_transformer", num_numeric=n, cat_cardinalities=CARDS, num_outputs=out, d_token=d,
                              num_layers=L, num_heads=2)
    block = (3 * d * d + 3 * d) + (d * d + d) + (d * dff + dff) + (dff * d + d) + 4 * d
    tokens = n * d + sum(CARDS) * d + (n + len(CARDS)) * d
    assert sum(p.numel() for p in ft.parameters()) == tokens + d + L * block + 2 * d + (d * out + out)
    mlp = archlab.create_model("tabular_mlp", num_numeric=n, cat_cardinalities=CARDS, num_outputs=out, embed_dim=4,
                               hidden=(16,))
    width = n + 2 * 4
    assert sum(p.numel() for p in mlp.parameters()) == sum(CARDS) * 4 + width * 16 + 16 + 16 * out + out


def test_ft_transformer_equals_the_same_network_built_from_torch_modules():
    """Our encoder inside the FT-Transformer gives torch's numbers, forward and backward (float64)."""
    ft = archlab.create_model("ft_transformer", num_numeric=3, cat_cardinalities=CARDS, num_outputs=2, d_token=8,
                              num_layers=2, num_heads=2, dropout=0.0).double().eval()
    layer = torch.nn.TransformerEncoderLayer(8, 2, 16, 0.0, activation="gelu", batch_first=True, norm_first=True,
                                             dtype=torch.float64)
    ref = torch.nn.TransformerEncoder(layer, 2, norm=torch.nn.LayerNorm(8, dtype=torch.float64),
                                      enable_nested_tensor=False).eval()
    ref.load_state_dict(ft.encoder.state_dict())
    x_num, x_cat = _row(dtype=torch.float64)
    x_num.requires_grad_(True)
    ours = ft(x_num, x_cat)
    tokens = torch.cat([ft.cls_token.expand(5, -1, -1), ft.tokenizer(x_num, x_cat)], dim=1)
    theirs = ft.head(torch.relu(ref(tokens)[:, 0]))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)  # float64: equal to rounding
    g_ours, = torch.autograd.grad(ours.sum(), x_num)
    g_theirs, = torch.autograd.grad(theirs.sum(), x_num)
    torch.testing.assert_close(g_ours, g_theirs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["tabular_mlp", "ft_transformer"])
def test_every_parameter_gets_a_gradient_and_bad_rows_are_refused(name):
    model = archlab.create_model(name, num_numeric=3, cat_cardinalities=CARDS, num_outputs=4)
    model(*_row()).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    with pytest.raises(ConfigError, match=r"expects x_num \(batch, 3\) and x_cat \(batch, 2\), got \(5, 4\)"):
        model(torch.randn(5, 4), torch.zeros(5, 2, dtype=torch.long))
    numeric_only = archlab.create_model(name, num_numeric=3, num_outputs=1)
    assert numeric_only(torch.randn(2, 3), torch.zeros(2, 0, dtype=torch.long)).shape == (2, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(*_row()).shape == (5, 4)


def test_networks_save_and_load_with_their_config(tmp_path):
    model = archlab.create_model("ft_transformer", num_numeric=3, cat_cardinalities=CARDS, num_outputs=2, d_token=8,
                                 num_layers=1, num_heads=2).eval()
    model.save_pretrained(tmp_path)
    same = archlab.from_pretrained(tmp_path)
    torch.testing.assert_close(same(*_row()), model(*_row()), rtol=0, atol=0)
    assert same.config.cat_cardinalities == CARDS  # a tuple again after JSON


# --------------------------------------------------------------------------------------------
# Gradient-boosted trees


def _blobs(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x_num = rng.normal(size=(n, 2)) + y[:, None] * 1.5
    x_cat = (y[:, None] + rng.integers(0, 2, (n, 1))) % 4  # a category that leaks the class half the time
    return x_num.astype(np.float32), x_cat.astype(np.int64), y


def test_lightgbm_fits_predicts_its_own_probabilities_and_stops_early():
    x_num, x_cat, y = _blobs()
    trees = archlab.create_model("lightgbm", num_numeric=2, cat_cardinalities=(4,), num_outputs=3, num_rounds=300,
                                 early_stopping_rounds=10, min_child_samples=5)
    losses = trees.fit((x_num[:200], x_cat[:200], y[:200]), (x_num[200:], x_cat[200:], y[200:]), seed=0)
    assert losses["train"][-1] < losses["train"][0] and len(losses["valid"]) < 300  # early stopping worked
    assert 1 <= trees.best_round < len(losses["valid"])
    logits = trees(torch.from_numpy(x_num[200:]), torch.from_numpy(x_cat[200:]))
    probs = trees.booster.predict(np.concatenate([x_num[200:], x_cat[200:]], 1).astype(np.float64))
    torch.testing.assert_close(logits.softmax(-1).double(), torch.from_numpy(probs), rtol=0, atol=1e-6)
    assert (logits.argmax(-1).numpy() == y[200:]).mean() > 0.8
    assert trees.num_parameters() == sum(2 * t["num_leaves"] - 1 for t in trees.booster.dump_model()["tree_info"])


def test_lightgbm_two_classes_give_logits_zero_and_the_log_odds():
    x_num, x_cat, y = _blobs(k=2)
    trees = archlab.create_model("lightgbm", num_numeric=2, cat_cardinalities=(4,), num_outputs=2, num_rounds=20)
    trees.fit((x_num, x_cat, y), seed=0)
    logits = trees(torch.from_numpy(x_num), torch.from_numpy(x_cat))
    p = trees.booster.predict(np.concatenate([x_num, x_cat], 1).astype(np.float64))
    assert torch.all(logits[:, 0] == 0)
    torch.testing.assert_close(torch.sigmoid(logits[:, 1]).double(), torch.from_numpy(p), rtol=0, atol=1e-6)


def test_lightgbm_saves_its_text_format_and_loads_back(tmp_path):
    x_num, x_cat, y = _blobs()
    y_reg = (x_num[:, 0] * 2 - x_num[:, 1]).astype(np.float32)
    trees = archlab.create_model("lightgbm", num_numeric=2, cat_cardinalities=(4,), num_outputs=1, num_rounds=30)
    trees.fit((x_num, x_cat, y_reg), seed=0)
    trees.save_pretrained(tmp_path)
    assert (tmp_path / "model.txt").read_text().startswith("tree") and not (tmp_path / "model.safetensors").exists()
    same = archlab.from_pretrained(tmp_path)
    a = trees(torch.from_numpy(x_num), torch.from_numpy(x_cat))
    torch.testing.assert_close(same(torch.from_numpy(x_num), torch.from_numpy(x_cat)), a, rtol=0, atol=0)
    assert a.shape == (300, 1) and same.best_round == 30
    (tmp_path / "model.txt").write_text("not trees")
    with pytest.raises(CheckpointError, match="model.txt is not a LightGBM model"):
        archlab.from_pretrained(tmp_path)
    (tmp_path / "model.txt").unlink()
    with pytest.raises(CheckpointError, match="has no model.txt"):
        archlab.from_pretrained(tmp_path)
    with pytest.raises(ConfigError, match="this lightgbm model is not fitted"):
        archlab.create_model("lightgbm", num_numeric=2)(torch.zeros(1, 2), torch.zeros(1, 0, dtype=torch.long))


def test_lightgbm_is_deterministic_for_a_seed():
    x_num, x_cat, y = _blobs()
    runs = []
    for _ in range(2):
        t = archlab.create_model("lightgbm", num_numeric=2, cat_cardinalities=(4,), num_outputs=3, num_rounds=15,
                                 bagging_fraction=0.7, bagging_freq=1, feature_fraction=0.5)
        t.fit((x_num, x_cat, y), seed=7)
        runs.append(t.booster.model_to_string())
    assert runs[0] == runs[1]
