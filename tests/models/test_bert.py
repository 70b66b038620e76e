import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.models.bert import IGNORE_INDEX, mask_tokens, mean_pool
from archlab.nn import set_impl
from archlab.utils.runtime import count_parameters

TINY = dict(vocab_size=50, hidden_size=32, num_layers=2, num_heads=4, intermediate_size=37,
            max_position_embeddings=16)


def tiny(**kw):
    return archlab.create_model("bert", **{**TINY, **kw})


def test_bert_base_parameter_count():
    # transformers' BertModel (bert-base-uncased) and BertForMaskedLM: the MLM head has no pooler and adds
    # dense + LayerNorm + bias (its decoder is the word embedding matrix, counted once).
    with torch.device("meta"):
        base = archlab.create_model("bert")
        mlm = archlab.create_model("bert", head="mlm", pooler=False)
    assert count_parameters(base) == 109_482_240
    assert count_parameters(mlm) == 109_514_298


def test_tiny_parameter_count_from_the_equations():
    H, V, T, F, L = 32, 50, 16, 37, 2
    embeddings = V * H + T * H + 2 * H + 2 * H
    layer = (3 * H * H + 3 * H) + (H * H + H) + (H * F + F) + (F * H + H) + 2 * 2 * H
    pooler = H * H + H
    assert count_parameters(tiny()) == embeddings + L * layer + pooler
    assert count_parameters(tiny(head="classification", num_labels=3)) == embeddings + L * layer + pooler + H * 3 + 3


def test_outputs_and_shapes():
    model = tiny(head="mlm").eval()
    ids = torch.randint(0, 50, (3, 7))
    out = model(ids, output_attentions=True)
    assert out.last_hidden_state.shape == (3, 7, 32)
    assert out.pooler_output.shape == (3, 32)
    assert out.logits.shape == (3, 7, 50)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (3, 4, 7, 7)
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(3, 4, 7), rtol=0, atol=1e-5)
    assert model(ids).attentions is None
    assert tiny(pooler=False)(ids).pooler_output is None


def test_inference_on_padded_batches_skips_the_padding_and_gives_the_same_states():
    # In eval mode a padded batch runs its layers on the real tokens only; in training mode (dropout
    # 0: the same function) every position is computed. Real tokens agree; padding comes out as zeros.
    model = tiny(dropout=0.0, attention_dropout=0.0).double()
    ids = torch.randint(1, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 4:] = 0
    mask[2, 1:] = 0
    full = model.train()(ids, attention_mask=mask).last_hidden_state
    packed = model.eval()(ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(packed[real], full[real], atol=1e-12, rtol=0)
    assert (packed[~real] == 0).all()
    # The pooled sentence embedding only reads real tokens, so it is the same either way.
    torch.testing.assert_close(mean_pool(packed, mask), mean_pool(full, mask), atol=1e-12, rtol=0)


def test_mlm_decoder_is_tied_to_the_word_embeddings():
    model = tiny(head="mlm", pooler=False)
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)
    h = torch.randn(1, 3, 32)
    with torch.no_grad():
        model.embeddings.word_embeddings.weight[5] += 1.0  # moving one embedding moves its logit
        head = model.mlm_head
        expected = head.layer_norm(head.activation(head.dense(h))) @ model.embeddings.word_embeddings.weight.T
    torch.testing.assert_close(head(h, model.embeddings.word_embeddings.weight), expected + head.bias,
                               rtol=0, atol=1e-6)


def test_padding_does_not_change_the_real_tokens():
    model = tiny().eval()
    ids = torch.randint(1, 50, (1, 5))
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0]])
    a = model(ids).last_hidden_state
    b = model(padded, attention_mask=mask)
    torch.testing.assert_close(b.last_hidden_state[:, :5], a, rtol=0, atol=1e-5)
    # Without the mask the padding is attended to, and the real tokens change.
    assert (model(padded).last_hidden_state[:, :5] - a).abs().max() > 1e-3


def test_token_type_ids_matter():
    model = tiny().eval()
    ids = torch.randint(0, 50, (2, 6))
    tt = torch.tensor([[0, 0, 0, 1, 1, 1]] * 2)
    assert (model(ids, token_type_ids=tt).last_hidden_state - model(ids).last_hidden_state).abs().max() > 1e-3


def test_fused_and_reference_paths_agree_forward_and_backward():
    torch.manual_seed(1)
    model = tiny(head="mlm", pooler=False, dropout=0.0, attention_dropout=0.0).double()
    ids = torch.randint(0, 50, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 4:] = 0
    results = []
    for impl in ("fused", "reference"):
        set_impl(model, impl)
        model.zero_grad()
        out = model(ids, attention_mask=mask)
        out.logits.sum().backward()
        results.append((out.logits.detach(), [p.grad.clone() for p in model.parameters()]))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-10)
    for g1, g2 in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g1, g2, rtol=0, atol=1e-10)


def test_classification_head_learns_and_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    model = tiny(head="classification", num_labels=2, num_layers=1)
    ids = torch.randint(3, 50, (32, 8))
    labels = torch.randint(0, 2, (32,))
    ids[:, 3] = labels + 1  # the label is written at position 3 (token 1 or 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for step in range(60):
        out = model(ids, labels=labels)
        opt.zero_grad()
        out.loss.backward()
        if step == 0:
            no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
            assert no_grad == []
        opt.step()
        losses.append(out.loss.item())
    assert losses[-1] < 0.1 * losses[0]


def test_masked_lm_pretraining_loss_falls():
    torch.manual_seed(0)
    model = tiny(head="mlm", pooler=False, num_layers=1, dropout=0.0, attention_dropout=0.0)
    MASK = 3
    # Each sequence repeats one word: a masked token is predictable from its unmasked neighbours.
    ids = torch.randint(4, 50, (32, 1)).repeat(1, 10)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(150):
        corrupted, labels = mask_tokens(ids, mask_token_id=MASK, vocab_size=50, generator=gen)
        loss = model(corrupted, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # From about ln(50) = 3.9 to a tenth of it (0.09 observed).
    assert sum(losses[-20:]) / 20 < 0.1 * sum(losses[:10]) / 10


def test_mask_tokens_follows_the_80_10_10_rule():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 1000, (200, 100))
    ids[:, 0] = 1  # a special token, never chosen
    corrupted, labels = mask_tokens(ids, mask_token_id=2, vocab_size=1000, special_ids=(1,), generator=gen)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 0].any()
    assert abs(chosen[:, 1:].float().mean().item() - 0.15) < 0.01
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    frac_mask = (corrupted[chosen] == 2).float().mean().item()
    frac_same = (corrupted[chosen] == ids[chosen]).float().mean().item()
    assert abs(frac_mask - 0.8) < 0.02 and abs(frac_same - 0.1) < 0.02


def test_bf16_autocast_and_save_load_round_trip(tmp_path):
    model = tiny(head="mlm").eval()
    ids = torch.randint(0, 50, (2, 6))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids)
    assert torch.isfinite(out.logits.float()).all()
    model.save_pretrained(tmp_path)
    loaded = archlab.from_pretrained(tmp_path)
    torch.testing.assert_close(loaded(ids).logits, model(ids).logits, rtol=0, atol=0)


def test_reset_classifier_replaces_the_mlm_head():
    model = tiny(head="mlm")
    model.reset_classifier(4)
    assert model.mlm_head is None
    assert model(torch.randint(0, 50, (2, 5))).logits.shape == (2, 4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(input_ids=torch.tensor([[1, 2, 50]])), r"input_ids must be in \[0, vocab_size=50\), got values in \[1, 50\]"),
    (dict(input_ids=torch.tensor([[-1, 2]])), r"input_ids must be in \[0, vocab_size=50\), got values in \[-1, 2\]"),
    (dict(input_ids=torch.ones(1, 17, dtype=torch.long)),
     r"input_ids has length 17, BERT expects at most max_position_embeddings=16"),
    (dict(input_ids=torch.ones(2, 5, dtype=torch.long), attention_mask=torch.ones(2, 4)),
     r"attention_mask must have the shape of input_ids \(2, 5\), got \(2, 4\)"),
    (dict(input_ids=torch.ones(2, 5, dtype=torch.long), token_type_ids=torch.full((2, 5), 2)),
     r"token_type_ids must be in \[0, type_vocab_size=2\), got values in \[2, 2\]"),
    (dict(input_ids=torch.ones(2, 5)), r"input_ids must be integer token ids"),
])
def test_bad_input_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny()(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="seq2seq"), r"head must be one of \('none', 'mlm', 'classification'\), got 'seq2seq'"),
    (dict(head="classification", pooler=False), "needs pooler=True, got pooler=False"),
    (dict(num_heads=5), "hidden_size must be divisible by num_heads=5, got hidden_size=32"),
])
def test_bad_config_is_a_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        tiny(**kwargs)


def test_labels_without_a_head_are_a_config_error():
    with pytest.raises(ConfigError, match="labels need a head that makes logits, got head='none'"):
        tiny()(torch.ones(1, 3, dtype=torch.long), labels=torch.ones(1, 3, dtype=torch.long))


def test_mean_pool_averages_only_real_tokens():
    h = torch.tensor([[[1.0, 0.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    torch.testing.assert_close(mean_pool(h, mask, normalize=False), torch.tensor([[2.0, 2.0]]), rtol=0, atol=0)
    torch.testing.assert_close(mean_pool(h, mask), torch.tensor([[2 ** -0.5, 2 ** -0.5]]), rtol=0, atol=1e-7)
