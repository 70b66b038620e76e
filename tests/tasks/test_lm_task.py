"""The language-modelling task: shifted blocks, exact sharding, and GPT / LSTM models that learn."""

from __future__ import annotations

import math

import pytest
import torch

import archlab
from archlab.errors import ConfigError
from archlab.registry import model_config, model_info
from archlab.tasks import get_task
from archlab.tasks.lm import LMConfig, LMTask
from archlab.train import RunSpec, evaluate, train

TEXT = "the quick brown fox jumps over the lazy dog. " * 60  # 2,700 characters, 28 distinct


@pytest.fixture
def text_file(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return str(path)


def test_blocks_are_next_token_pairs_from_the_text(text_file):
    task = LMTask(LMConfig(block_size=16), text_file)
    assert task.tokenizer.vocab_size == len(set(TEXT))
    assert len(task.test_tokens) == int(len(TEXT) * 0.1)  # the 10% tail: test
    assert len(task.val_tokens) == int(len(TEXT) * 0.05)  # the 5% before it: validation
    assert torch.equal(torch.cat([task.train_tokens, task.val_tokens, task.test_tokens]),
                       torch.tensor(task.tokenizer.encode(TEXT)))
    x, y = task.train_batch(position=3, batch_size=8, seed=0, shard=slice(0, 8))
    assert x.shape == y.shape == (8, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    for row_x, row_y in zip(x, y):
        assert task.tokenizer.decode(row_x.tolist()) + task.tokenizer.decode(row_y[-1:].tolist()) in TEXT
    # The global batch depends only on (seed, position); a process's shard is its rows of it.
    x2, _ = task.train_batch(3, 8, 0, slice(4, 8))
    assert torch.equal(x2, x[4:])
    assert not torch.equal(task.train_batch(4, 8, 0, slice(0, 8))[0], x)
    # Held-out text: consecutive non-overlapping blocks, the same every time.
    for split, tokens in (("test", task.test_tokens), ("val", task.val_tokens)):
        blocks = [b[0] for b in task.eval_batches(batch_size=4, split=split)]
        assert sum(len(b) for b in blocks) == (len(tokens) - 1) // 16
        assert torch.equal(torch.cat(blocks).flatten(), tokens[: 16 * sum(len(b) for b in blocks)])


def test_model_fields_and_metrics(text_file):
    task = get_task("lm")(LMConfig(block_size=8), text_file)
    for name, fixed in (("gpt", {"vocab_size": 28, "block_size": 8}),
                        ("lstm_lm", {"vocab_size": 28})):  # RNNs have no longest context
        assert task.model_fields(model_info(name).model_class, model_config(name)) == fixed
    m = task.metrics({"loss_sum": 2.0 * 50, "count": 50.0})
    assert m["loss"] == pytest.approx(2.0) and m["perplexity"] == pytest.approx(math.exp(2.0))
    assert m["bpc"] == pytest.approx(2.0 / math.log(2))
    with pytest.raises(ConfigError, match="the test text has 270 tokens, block_size=400 needs at least 401"):
        LMTask(LMConfig(block_size=400), text_file)
    with pytest.raises(ConfigError, match="the validation text has 135 tokens, block_size=200 needs at least 201"):
        LMTask(LMConfig(block_size=200), text_file)
    assert LMTask(LMConfig(block_size=200, val_fraction=0), text_file).eval_splits == ("test",)
    with pytest.raises(ConfigError, match="task 'lm' on --data .* has no val split"):
        LMTask(LMConfig(block_size=200, val_fraction=0), text_file).check_split("val")


@pytest.mark.parametrize("model, sizes", [
    ("gpt", {"n_layer": 1, "n_head": 2, "d_model": 32}),
    ("lstm_lm", {"embed_dim": 16, "hidden_size": 32, "num_layers": 1, "dropout": 0.0}),
])
def test_language_models_learn_and_evaluate_with_their_tokenizer(tmp_path, text_file, model, sizes):
    out = tmp_path / model
    settings = {**sizes, "block_size": 16, "batch_size": 16, "lr": 1e-2, "max_steps": 60, "log_every": 10}
    result = train(RunSpec(task="lm", model=model, data=text_file, out=out, settings=settings))
    # Uniform guessing over 28 characters is ln 28 = 3.33 nats; this text is highly predictable.
    assert result["metrics"]["loss"] < 0.5 * math.log(28)
    assert (out / "tokenizer.json").is_file()
    assert archlab.from_pretrained(out).config.vocab_size == 28
    assert evaluate(out, batch_size=16) == pytest.approx(result["metrics"], rel=1e-9)
    other = tmp_path / "other.txt"
    other.write_text("Zebras! " * 100)  # characters the tokenizer has never seen
    with pytest.raises(ConfigError, match="does not fit the model's tokenizer"):
        evaluate(out, str(other))
