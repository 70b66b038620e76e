"""The masked-language-model task: BERT's 80/10/10 masking, drawn per position, and a BERT that learns."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import sklearn
import torch

from archlab.errors import ConfigError
from archlab.registry import model_config, model_info
from archlab.models.bert import IGNORE_INDEX
from archlab.tasks.mlm import MLMConfig, MLMTask
from archlab.train import RunSpec, evaluate, evaluate_model, resolve, train

BERT = {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64, "max_position_embeddings": 64}


pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def prose(tmp_path_factory):
    """Real English: scikit-learn's descriptions of its data sets, about 43,000 characters."""
    descr = sorted((Path(sklearn.__file__).parent / "datasets" / "descr").glob("*.rst"))
    path = tmp_path_factory.mktemp("prose") / "prose.txt"
    path.write_text("\n".join(p.read_text(encoding="utf-8") for p in descr), encoding="utf-8")
    assert path.stat().st_size > 30_000
    return str(path)


@pytest.fixture(scope="module")
def task(prose):
    return MLMTask(MLMConfig(block_size=32), prose)


def originals(inputs, labels):
    """The uncorrupted block: labels hold the original token where one was chosen."""
    return torch.where(labels != IGNORE_INDEX, labels, inputs)


def test_masking_follows_the_15_and_80_10_10_rule(task):
    tok = task.tokenizer
    assert (tok.pad_id, tok.unk_id, tok.mask_id) == (0, 1, 2)
    batches = [task.train_batch(p, 32, seed=0, shard=slice(0, 32)) for p in range(100)]
    inputs, labels = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])  # (3200, 32)
    chosen = labels != IGNORE_INDEX
    original = originals(inputs, labels)
    n = chosen.sum().item()
    # 102,400 tokens: the binomial standard deviations are 0.0011 (15%) and 0.0026 (10% of ~15,000).
    assert abs(n / chosen.numel() - 0.15) < 0.006
    masked = (inputs == tok.mask_id) & chosen
    kept = (inputs == original) & chosen
    replaced = chosen & ~masked & ~kept
    assert abs(masked.sum().item() / n - 0.8) < 0.015
    assert abs(kept.sum().item() / n - 0.1) < 0.015      # (plus 0.1 / vocab_size of random draws that hit it)
    assert abs(replaced.sum().item() / n - 0.1) < 0.015
    assert torch.equal(inputs[~chosen], original[~chosen])  # tokens not chosen are never touched
    # The blocks are real text.
    text = tok.decode(task.train_tokens.tolist())
    assert all(tok.decode(row.tolist()) in text for row in original[:20])


def test_masks_depend_only_on_seed_and_position(task):
    x, y = task.train_batch(position=5, batch_size=8, seed=3, shard=slice(0, 8))
    x2, y2 = task.train_batch(5, 8, 3, slice(0, 8))
    assert torch.equal(x, x2) and torch.equal(y, y2)      # a resumed run sees the same corrupted blocks
    xs, ys = task.train_batch(5, 8, 3, slice(4, 8))       # another process's shard: its rows of the same batch
    assert torch.equal(xs, x[4:]) and torch.equal(ys, y[4:])
    assert not torch.equal(task.train_batch(6, 8, 3, slice(0, 8))[1], y)
    assert not torch.equal(task.train_batch(5, 8, 4, slice(0, 8))[1], y)
    # Held-out text: fixed masks, whatever the batch size; consecutive blocks of each split's text.
    for split, tokens in (("test", task.test_tokens), ("val", task.val_tokens)):
        by3 = [torch.cat(parts) for parts in zip(*task.eval_batches(3, split))]
        by7 = [torch.cat(parts) for parts in zip(*task.eval_batches(7, split))]
        assert all(torch.equal(a, b) for a, b in zip(by3, by7))
        n_blocks = len(tokens) // 32
        assert n_blocks > 0 and torch.equal(originals(*by3).flatten(), tokens[: 32 * n_blocks])
    # train | val | test in order, nothing lost or shared.
    assert len(task.test_tokens) == int(0.1 * sum(map(len, (task.train_tokens, task.val_tokens, task.test_tokens))))


def test_model_fields_and_metrics(task, prose):
    V = task.tokenizer.vocab_size
    assert task.model_fields(model_info("bert").model_class, model_config("bert")) == {
        "vocab_size": V, "pad_token_id": 0, "head": "mlm"}
    m = task.metrics({"loss_sum": 1.5 * 40, "correct": 10.0, "count": 40.0})
    assert m == pytest.approx({"loss": 1.5, "accuracy": 0.25, "perplexity": math.exp(1.5)})
    with pytest.raises(ConfigError, match="the test text has .* tokens, block_size=5000 needs at least 5000"):
        MLMTask(MLMConfig(block_size=5000), prose)
    with pytest.raises(ConfigError, match="the validation text has .* tokens, block_size=500 needs at least 500"):
        MLMTask(MLMConfig(block_size=500, val_fraction=0.01), prose)
    assert MLMTask(MLMConfig(block_size=500, val_fraction=0.0), prose).eval_splits == ("test",)
    with pytest.raises(ConfigError, match=r"mlm_probability must be in \(0, 1\), got 1.5"):
        MLMConfig(mlm_probability=1.5)


def test_the_loss_is_taken_on_masked_positions_only(task):
    r = resolve(RunSpec(task="mlm", model="bert", data=task.data, out=Path("unused"),
                        settings={**BERT, "block_size": 32}))
    model = r.model.eval()
    x, y = task.train_batch(0, 4, 0, slice(0, 4))
    loss, sums = task.step(model, (x, y)), task.evaluate_batch(model, (x, y))
    with torch.no_grad():
        logits = model(x).logits
    asked = y != IGNORE_INDEX
    by_hand = torch.nn.functional.cross_entropy(logits[asked], y[asked])
    assert loss.item() == pytest.approx(by_hand.item(), rel=1e-5)
    assert sums["count"].item() == asked.sum().item()
    assert sums["correct"].item() == (logits[asked].argmax(-1) == y[asked]).sum().item()
    # A batch with nothing masked adds no loss (and no NaN).
    nothing = (x, torch.full_like(y, IGNORE_INDEX))
    loss, sums = task.step(model, nothing), task.evaluate_batch(model, nothing)
    assert loss.item() == 0.0 and sums["count"].item() == 0.0


@pytest.mark.slow
def test_a_tiny_bert_learns_to_fill_in_masked_prose(tmp_path, prose):
    settings = {**BERT, "block_size": 32, "batch_size": 32, "lr": 5e-3, "max_steps": 300, "log_every": 100,
                "dropout": 0.0, "attention_dropout": 0.0, "warmup_steps": 10}
    r = resolve(RunSpec(task="mlm", model="bert", data=prose, out=tmp_path / "unused", settings=settings))
    untrained = evaluate_model(r.model, r.task, torch.device("cpu"), "fp32", 64)
    out = tmp_path / "run"
    result = train(RunSpec(task="mlm", model="bert", data=prose, out=out, settings=settings))
    task, trained = r.task, result["metrics"]
    V = task.tokenizer.vocab_size
    # Baselines on the same masked validation tokens: character frequencies of the training text
    # (add-one smoothed) as the prediction, and always guessing the most frequent character.
    freq = torch.bincount(task.train_tokens, minlength=V).double() + 1
    targets = task.val_labels[task.val_labels != IGNORE_INDEX]
    unigram_loss = -(freq / freq.sum()).log()[targets].mean().item()
    majority = (targets == freq.argmax()).double().mean().item()
    figures = (f"untrained {untrained}, after 300 steps {trained}; unigram loss {unigram_loss:.3f}, "
               f"most frequent character {majority:.3f} of {len(targets)} masked tokens")
    assert abs(untrained["loss"] - math.log(V)) < 0.3, figures  # untrained: about uniform over V
    assert trained["loss"] < unigram_loss - 0.25, figures       # uses the context, not just frequencies
    assert trained["accuracy"] > majority + 0.05, figures
    assert trained["perplexity"] == pytest.approx(math.exp(trained["loss"]))
    assert evaluate(out, batch_size=16) == pytest.approx(trained, rel=1e-6)  # saved tokenizer, same masks
