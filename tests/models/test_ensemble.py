"""Ensembles average their members' probabilities: in teacher forcing, in greedy decoding and in
beam search, where every member keeps (and the search reorders) its own decoder state; forecasters
average their forecasts."""

from __future__ import annotations

import pytest
import torch

from archlab.errors import ConfigError
from archlab.models.decoding import beam_search
from archlab.models.ensemble import (ForecasterEnsemble, ImageClassifierEnsemble, Seq2SeqEnsemble, TabularEnsemble,
                                     ensemble_of)
from archlab.registry import create_model

PAD, BOS, EOS, SRC_V, TGT_V = 0, 1, 2, 13, 11
RNN = dict(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, embed_dim=16, hidden_size=32, cell="lstm", dropout=0.0)
TRANSFORMER = dict(src_vocab_size=SRC_V, tgt_vocab_size=TGT_V, d_model=32, nhead=4, num_encoder_layers=1,
                   num_decoder_layers=1, dim_feedforward=64, dropout=0.0, max_len=32)


def build(name, seed, **config):
    torch.manual_seed(seed)
    model = create_model(name, **config).double().eval()
    with torch.no_grad():  # sharper next-token distributions than at initialisation: decoding differs by member
        for p in model.parameters():
            p.mul_(3.0)
    return model


def sources():
    g = torch.Generator().manual_seed(0)
    src = torch.randint(3, SRC_V, (5, 7), generator=g)
    for row, length in enumerate([7, 4, 6, 2, 5]):
        src[row, length:] = PAD
    return src


def mean_log(outputs):
    return torch.stack([o.softmax(-1) for o in outputs]).mean(0).log()


def members():
    """Two models that share nothing but their vocabularies: an LSTM encoder-decoder and a Transformer."""
    return [build("seq2seq_rnn", 0, **RNN), build("transformer", 1, **TRANSFORMER)]


def test_teacher_forcing_gives_the_log_of_the_averaged_distribution():
    ms = members()
    ensemble = ensemble_of(ms)
    assert isinstance(ensemble, Seq2SeqEnsemble)
    src, tgt_in = sources(), torch.randint(3, TGT_V, (5, 4))
    tgt_in[:, 0] = BOS
    expected = mean_log([m(src, tgt_in) for m in ms])
    assert torch.allclose(ensemble(src, tgt_in), expected, atol=1e-12), "float64, 1e-12"
    tgt = torch.randint(3, TGT_V, (5, 3))
    loss, n = ensemble.token_losses(src, tgt)
    assert int(n) == 20 and torch.isfinite(loss).all()


def reference_step(ms):
    """No state but the source rows: every step recomputes each member on the whole prefix."""
    def step(tokens, state):
        return mean_log([m(state["src"], tokens)[:, -1] for m in ms]), state
    return step


@pytest.mark.parametrize("beam_size", [1, 3])
def test_decoding_follows_the_averaged_distribution(beam_size):
    ms, src = members(), sources()
    ensemble = ensemble_of(ms)
    got = ensemble.translate(src, max_len=9, beam_size=beam_size)
    expected = beam_search(reference_step(ms), {"src": src}, bos_id=BOS, eos_id=EOS, batch_size=5, max_len=9,
                           beam_size=beam_size)
    assert torch.equal(got, expected)
    # ... and not simply one member's output.
    alone = [m.translate(src, max_len=9, beam_size=beam_size) for m in ms]
    assert not all(torch.equal(got, a) for a in alone)


@pytest.mark.parametrize("name,config", [("seq2seq_rnn", RNN), ("transformer", TRANSFORMER)])
def test_a_model_averaged_with_itself_decodes_as_it_does_alone(name, config):
    model, src = build(name, 2, **config), sources()
    twin = build(name, 2, **config)
    ensemble = Seq2SeqEnsemble([model, twin])
    for beam_size in (1, 4):
        assert torch.equal(ensemble.translate(src, max_len=9, beam_size=beam_size),
                           model.translate(src, max_len=9, beam_size=beam_size))
    ensemble.train()
    ensemble.translate(src, max_len=3)
    assert ensemble.training and all(m.training for m in ensemble.members), "the mode comes back"


def test_image_classifiers_average_their_class_probabilities():
    torch.manual_seed(0)
    ms = [create_model("lenet5", num_classes=10).eval() for _ in range(2)]
    x = torch.randn(3, 1, 32, 32)
    ensemble = ensemble_of(ms)
    assert isinstance(ensemble, ImageClassifierEnsemble)
    assert torch.allclose(ensemble(x), mean_log([m(x) for m in ms]), atol=1e-6)  # float32


def forecasters():
    """A direct CNN and an autoregressive LSTM, each normalised on its own part of a series (float64)."""
    t = torch.arange(200, dtype=torch.float64)
    series = 300 + 0.1 * t + 3 * torch.sin(2 * torch.pi * t / 12)
    torch.manual_seed(0)
    cnn = create_model("cnn_forecaster", context_length=24, horizon=6).double().eval()
    lstm = create_model("lstm_forecaster", context_length=24, horizon=6, strategy="autoregressive").double().eval()
    cnn.fit_normalization(series[:150])
    lstm.fit_normalization(series[:100])  # other statistics: the average is still taken in data units
    return [cnn, lstm], series


def test_forecasters_average_their_forecasts_in_data_units():
    ms, series = forecasters()
    ensemble = ensemble_of(ms)
    assert isinstance(ensemble, ForecasterEnsemble) and ensemble.model_name == "ensemble of 2 (cnn_forecaster, lstm_forecaster)"
    history = torch.stack([series[:170], series[20:190]])  # (2, 170): two histories, one series each
    for horizon in (1, 6, 15):  # 15: past the direct head's 6, every member rolls forward on its own forecasts
        got = ensemble.forecast(history, horizon)
        assert got.shape == (2, horizon)
        assert torch.allclose(got, (ms[0].forecast(history, horizon) + ms[1].forecast(history, horizon)) / 2,
                              atol=1e-12), "float64, 1e-12"
    x = history[..., None]  # (2, 170, 1)
    expected = (ms[0].denormalize(ms[0](x)) + ms[1].denormalize(ms[1](x))) / 2  # data units
    assert torch.allclose(ensemble(x), ms[0].normalize(expected), atol=1e-12), "in the first member's units"
    assert torch.allclose(ensemble.denormalize(ensemble(x)), ensemble.forecast(x), atol=1e-12)
    assert ensemble.mean is ms[0].mean
    same = ensemble_of([ms[0], ms[0]])
    assert torch.equal(same.forecast(history, 15), ms[0].forecast(history, 15)), "averaged with itself: itself"


def test_forecasters_that_read_other_windows_are_refused():
    ms, _ = forecasters()
    longer = create_model("cnn_forecaster", context_length=36, horizon=6)
    with pytest.raises(ConfigError, match=r"ensemble member 2 \(WindowForecaster\) has context_length=36, member 1 "
                                          r"\(WindowForecaster\) has context_length=24: members must read the same "
                                          "windows and forecast the same steps"):
        ensemble_of([ms[0], longer])


def test_members_that_cannot_be_averaged_are_refused():
    rnn = build("seq2seq_rnn", 0, **RNN)
    with pytest.raises(ConfigError, match="an ensemble needs at least 2 models, got 1"):
        ensemble_of([rnn])
    other = build("seq2seq_rnn", 1, **{**RNN, "tgt_vocab_size": TGT_V + 1})
    with pytest.raises(ConfigError, match=r"ensemble member 2 \(Seq2SeqRNN\) has tgt_vocab_size=12, member 1 "
                                          r"\(Seq2SeqRNN\) has tgt_vocab_size=11"):
        ensemble_of([rnn, other])
    with pytest.raises(ConfigError, match="cannot average LeNet5, Seq2SeqRNN: an ensemble.s members are all of one "
                                          "of these kinds: sequence to sequence, image classifier, forecaster, "
                                          "tabular model"):
        ensemble_of([rnn, create_model("lenet5", num_classes=10)])


def test_table_models_average_class_probabilities_or_predicted_values():
    torch.manual_seed(0)
    table = {"num_numeric": 5, "cat_cardinalities": (4, 3)}
    x_num, x_cat = torch.randn(6, 5), torch.randint(0, 3, (6, 2))
    classifiers = [create_model("tabular_mlp", **table, num_outputs=3).eval(),
                   create_model("ft_transformer", **table, num_outputs=3, d_token=16, num_layers=1).eval()]
    ensemble = ensemble_of(classifiers)
    assert isinstance(ensemble, TabularEnsemble) and not ensemble.regression
    assert torch.allclose(ensemble(x_num, x_cat), mean_log([m(x_num, x_cat) for m in classifiers]), atol=1e-6)
    regressors = [create_model("tabular_mlp", **table, num_outputs=1).eval() for _ in range(3)]
    values = ensemble_of(regressors)(x_num, x_cat)
    assert values.shape == (6, 1)
    assert torch.allclose(values, sum(m(x_num, x_cat) for m in regressors) / 3, atol=1e-6), "the mean value, float32"
    with pytest.raises(ConfigError, match=r"has num_outputs=1, member 1 \(TabularMLP\) has num_outputs=3: members "
                                          "must read the same columns and predict the same outputs"):
        ensemble_of([classifiers[0], regressors[0]])
