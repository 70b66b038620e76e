"""summarize(): per-layer shapes, parameters and FLOPs against hand counts; example inputs per model kind."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import archlab.nn as anl
from archlab.errors import ConfigError
from archlab.inspect import example_inputs, summarize
from archlab.registry import create_model
from archlab.utils.runtime import count_parameters


def test_totals_are_count_parameters_resnet18_lenet5_and_a_tied_gpt():
    resnet = create_model("resnet18")
    s = summarize(resnet, torch.zeros(1, 3, 64, 64))  # parameters do not depend on the image size
    assert s.total_params == count_parameters(resnet) == 11_689_512
    assert s.trainable_params == 11_689_512 and s.param_bytes == 4 * 11_689_512  # float32
    lenet = create_model("lenet5")
    assert summarize(lenet, torch.zeros(1, 1, 32, 32)).total_params == count_parameters(lenet) == 61_706

    gpt = create_model("gpt", vocab_size=50, block_size=16, n_layer=1, n_head=2, d_model=16)
    assert gpt.lm_head.weight is gpt.wte.weight
    s = summarize(gpt, torch.randint(0, 50, (2, 16)))
    unique = sum(p.numel() for p in {id(p): p for p in gpt.parameters()}.values())
    assert s.total_params == count_parameters(gpt) == unique  # the tied matrix once
    assert s.layer("lm_head").params == s.layer("wte").params == 50 * 16  # each row that holds it shows it
    assert s.layer("lm_head").tied_to == "wte" and s.layer("wte").tied_to is None
    assert sum(r.own_params for r in s.layers) == s.total_params + 50 * 16  # the rows alone would count it twice
    assert s.param_bytes == 4 * s.total_params
    # Freezing a part shows in the trainable count.
    gpt.wpe.requires_grad_(False)
    s = summarize(gpt, torch.randint(0, 50, (2, 16)))
    assert s.non_trainable_params == 16 * 16 and "Trainable" in s.to_text()


def test_lenet5_layers_shapes_and_flops_by_hand():
    s = summarize(create_model("lenet5"), torch.zeros(2, 1, 32, 32))
    expected = [  # (name, type, depth, output shape, parameters)
        ("", "LeNet5", 0, (2, 10), 61_706),
        ("features", "Sequential", 1, (2, 120, 1, 1), 156 + 2_416 + 48_120),
        ("features.0", "Conv2d", 2, (2, 6, 28, 28), 6 * 25 + 6),            # C1
        ("features.1", "Tanh", 2, (2, 6, 28, 28), 0),
        ("features.2", "AvgPool2d", 2, (2, 6, 14, 14), 0),                 # S2
        ("features.3", "Conv2d", 2, (2, 16, 10, 10), 16 * 6 * 25 + 16),     # C3
        ("features.4", "Tanh", 2, (2, 16, 10, 10), 0),
        ("features.5", "AvgPool2d", 2, (2, 16, 5, 5), 0),                  # S4
        ("features.6", "Conv2d", 2, (2, 120, 1, 1), 120 * 16 * 25 + 120),   # C5
        ("features.7", "Tanh", 2, (2, 120, 1, 1), 0),
        ("classifier", "Sequential", 1, (2, 10), 10_164 + 850),
        ("classifier.0", "Linear", 2, (2, 84), 120 * 84 + 84),             # F6
        ("classifier.1", "Tanh", 2, (2, 84), 0),
        ("classifier.2", "Linear", 2, (2, 10), 84 * 10 + 10),              # output
    ]
    got = [(r.name, r.type, r.depth, r.output_shapes[0], r.params) for r in s.layers]
    assert got == expected
    # FLOPs: 2 per multiply-add, per image; activations and pooling are not counted.
    per_image = {"features.0": 2 * 6 * 28 * 28 * 25, "features.3": 2 * 16 * 10 * 10 * 6 * 25,
                 "features.6": 2 * 120 * 16 * 25, "classifier.0": 2 * 120 * 84, "classifier.2": 2 * 84 * 10}
    for name, flops in per_image.items():
        assert s.layer(name).flops == 2 * flops, name
    assert s.layer("features.1").flops == 0 and s.layer("features.2").flops == 0
    assert s.flops == s.layer("").flops == 2 * sum(per_image.values()) == 2 * 833_040
    assert all(r.calls == 1 for r in s.layers)

    text = s.to_text(depth=1)
    assert "features: Sequential" in text and "0: Conv2d" not in text
    assert "Total params:          61,706" in text and "Forward FLOPs:         1,666,080" in text
    assert s.to_text(depth=0).splitlines()[2].startswith("LeNet5")


@pytest.mark.parametrize("bias", [True, False])
def test_flops_of_one_linear_and_one_conv2d_are_the_formula(bias):
    # Linear: one multiply-add per weight per row; (3, 5) rows of 20 features -> 7.
    assert summarize(nn.Linear(20, 7, bias=bias), torch.zeros(3, 5, 20)).flops == 2 * (3 * 5) * 20 * 7
    # Conv2d 4 -> 6, 3x3, stride 2, padding 1 on 9x9: 5x5 outputs, each 4 * 3 * 3 multiply-adds.
    x = torch.zeros(3, 4, 9, 9)
    ours = anl.Conv2d(4, 6, 3, stride=2, padding=1, bias=bias)
    for conv in (ours, nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=bias)):
        s = summarize(conv, x)
        assert s.layers[0].output_shapes == [(3, 6, 5, 5)]
        assert s.flops == 2 * (3 * 6 * 5 * 5) * (4 * 3 * 3) == 32_400
    anl.set_impl(ours, "reference")  # one matrix product per kernel tap: the same count
    assert ours.impl == "reference" and summarize(ours, x).flops == 32_400
    # Two groups: each output sees 4 / 2 input channels.
    grouped = anl.Conv2d(4, 8, 3, groups=2, bias=bias)
    assert summarize(grouped, x).flops == 2 * (3 * 8 * 7 * 7) * (2 * 3 * 3)


class Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.unused = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.shared(self.shared(x)))


def test_repeated_and_unused_modules_and_the_model_is_left_as_it_was():
    model = Twice().train()
    rng = torch.get_rng_state()
    s = summarize(model, torch.zeros(3, 4))
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert s.layer("shared").calls == 2 and s.layer("shared").flops == 2 * (2 * 3 * 4 * 4)
    unused = s.layer("unused")
    assert unused.calls == 0 and unused.output_shapes == [] and unused.depth == 1 and unused.params == 10
    assert [r.name for r in s.layers] == ["", "shared", "drop", "unused"]  # never-called rows last
    assert "x2 calls" in s.to_text() and "not called" in s.to_text()


def test_example_inputs_follow_each_kind_of_model():
    cases = [
        (create_model("lenet5"), "image", [(1, 1, 32, 32)]),
        (create_model("resnet20"), "image", [(1, 3, 32, 32)]),
        (create_model("vit_tiny"), "image", [(1, 1, 28, 28)]),
        (create_model("mlp"), "vector", [(1, 784)]),
        (create_model("gpt", block_size=16, n_layer=1, d_model=16, n_head=2), "tokens", [(1, 16)]),
        (create_model("rnn_lm", hidden_size=8, embed_dim=8, num_layers=1), "tokens", [(1, 64)]),
        (create_model("seq2seq_rnn", embed_dim=8, hidden_size=8), "seq2seq", [(1, 64), (1, 64)]),
        (create_model("rnn_forecaster", hidden_size=8), "window", [(1, 48, 1)]),
        (create_model("rnn_classifier", hidden_size=8), "sequence", [(1, 64, 28)]),
        (create_model("rnn_classifier", hidden_size=8, vocab_size=30), "tokens", [(1, 64)]),
        (create_model("ft_transformer", num_numeric=3, cat_cardinalities=(4, 2), num_layers=1, d_token=8,
                      num_heads=2), "table", [(1, 3), (1, 2)]),
        (create_model("tabular_mlp", num_numeric=5), "table", [(1, 5), (1, 0)]),
    ]
    for model, kind, shapes in cases:
        example = example_inputs(model)
        assert (example.kind, example.shapes) == (kind, shapes), type(model).__name__
        summarize(model, example.args)  # and the model runs on it
    gpt = cases[4][0]
    ids = example_inputs(gpt, batch_size=3, seq_len=5).args[0]
    assert ids.shape == (3, 5) and ids.dtype == torch.long
    assert torch.equal(ids, example_inputs(gpt, shape=(3, 5)).args[0])  # a fixed seed
    src, tgt = example_inputs(cases[6][0]).args
    assert int(src.min()) > 2 and int(tgt.min()) > 2  # no pad, bos or eos ids
    assert example_inputs(cases[0][0], shape=(2, 1, 28, 28)).shapes == [(2, 1, 28, 28)]
    table = cases[-1][0]  # a table model's columns fix its inputs
    assert example_inputs(table, batch_size=4).shapes == [(4, 5), (4, 0)]
    with pytest.raises(ConfigError, match="--input-size does not apply to tabular_mlp"):
        example_inputs(table, shape=(2, 5))
    with pytest.raises(ConfigError, match="--seq-len is for sequence models; a table model reads rows"):
        example_inputs(table, seq_len=4)


def test_attention_called_through_attend_counts_as_called_with_its_flops():
    # GPT, ViT and BERT call attn.attend(...), not forward: the row must show the call and its work.
    gpt = create_model("gpt", vocab_size=50, block_size=8, n_layer=2, n_head=2, d_model=16)
    s = summarize(gpt, torch.randint(0, 50, (1, 8)))
    attn = s.layer("h.0.attn")
    assert attn.calls == 1 and attn.output_shapes[0] == (1, 8, 16)
    # W_q, W_k, W_v and W_o (4 * 2*8*16*16) plus Q K^T and weights @ V (2 * 2*8*8*16), per layer
    assert attn.flops == 4 * 2 * 8 * 16 * 16 + 2 * 2 * 8 * 8 * 16
    assert "not called" not in s.to_text()
    assert s.layer("h.0").flops == attn.flops + s.layer("h.0.mlp").flops
    assert "attend" not in vars(gpt.h[0].attn)  # unwrapped again
    vit = create_model("vit_tiny", num_layers=1)
    assert summarize(vit, torch.zeros(1, 1, 28, 28)).layer("encoder.layers.encoder_layer_0.self_attention").calls == 1


def test_to_dict_is_the_table_as_json():
    import json

    s = summarize(create_model("lenet5"), torch.zeros(2, 1, 32, 32))
    d = json.loads(json.dumps(s.to_dict()))
    assert d["total_params"] == 61_706 and d["flops"] == s.flops and d["input_shapes"] == [[2, 1, 32, 32]]
    assert [r["name"] for r in d["layers"]] == [r.name for r in s.layers]
    assert d["layers"][2]["output_shapes"] == [[2, 6, 28, 28]] and d["layers"][2]["params"] == 156
