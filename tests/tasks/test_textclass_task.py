"""The text-classification task: TSV files, the syllable-count set, padding, metrics, models that learn."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from archlab.data import dataset_info, list_datasets, load_cmudict, load_labelled_text
from archlab.errors import ConfigError
from archlab.models.interfaces import TokenClassifier
from archlab.registry import create_model, model_config, model_info
from archlab.tasks import get_task
from archlab.tasks.textclass import TextClassConfig, TextClassTask, pad_batch
from archlab.train import RunSpec, evaluate, train


pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def task(one_thread):
    return TextClassTask(TextClassConfig())  # "cmudict-syllables", characters


def write_tsv(path, rows, header=True):
    path.write_text(("text\tlabel\n" if header else "") + "".join(f"{t}\t{y}\n" for t, y in rows))
    return path


def test_a_tsv_file_is_split_per_class_with_a_fixed_seed(tmp_path):
    rows = [(f"review number {i} of {c}", c) for c in ("bad", "good", "meh") for i in range(20)]
    path = write_tsv(tmp_path / "reviews.tsv", rows)
    data = load_labelled_text(path)
    assert data.classes == ["bad", "good", "meh"]
    # Each class: round(0.1 * 20) = 2 to test, then round(0.1 / 0.9 * 18) = 2 to validation.
    for split, n in (("train", 16), ("val", 2), ("test", 2)):
        assert Counter(y for _, y in getattr(data, split)) == {c: n for c in data.classes}, split
    assert sorted(data.train + data.val + data.test) == sorted(rows)  # every line once
    assert load_labelled_text(path) == data  # the same split every time
    assert load_labelled_text(path, seed=1).test != data.test

    (tmp_path / "bad.tsv").write_text("text\tlabel\ngreat film\tgood\n\nno label here\n")
    with pytest.raises(ConfigError, match=r"bad.tsv, line 4: expected text<TAB>label, got 'no label here'"):
        load_labelled_text(tmp_path / "bad.tsv")
    (tmp_path / "empty_label.tsv").write_text("great film\tgood\nawful film\t \n")
    with pytest.raises(ConfigError, match=r"empty_label.tsv, line 2: expected text<TAB>label"):
        load_labelled_text(tmp_path / "empty_label.tsv")
    with pytest.raises(ConfigError, match=r"unknown labelled text data set 'cmudict-syllable'.*did you mean "
                                          r"'cmudict-syllables'"):
        load_labelled_text("cmudict-syllable")


def test_syllable_labels_come_from_the_dictionarys_stress_digits(task):
    data = load_labelled_text("cmudict-syllables")
    label = dict(data.train + data.val + data.test)
    # tomato T AH0 M EY1 T OW2; make M EY1 K; maker M EY1 K ER0; bread B R EH1 D; create K R IY0 EY1 T
    expected = {"tomato": "3", "make": "1", "maker": "2", "bread": "1", "create": "2", "cat": "1",
                "university": "4+", "every": "3"}
    assert {w: label[w] for w in expected} == expected
    assert "hmm" not in label  # no vowel in the dictionary: left out
    # The test words are the dictionary's own fixed test words.
    assert [w for w, _ in data.test] == [w for w, _ in load_cmudict().test if w in label]
    assert len(data.test) == 11_999 and not {w for w, _ in data.test} & {w for w, _ in data.train}
    assert "cmudict-syllables" in list_datasets("labelled_text", offline=True)
    assert dataset_info("cmudict-syllables").loader == "load_labelled_text"
    assert task.classes == ["1", "2", "3", "4+"] and len(task.splits["test"][1]) == 11_999


def test_batches_start_with_bos_and_mask_the_padding(task):
    tok = task.tokenizer
    assert tok.pad_id == 0 and tok.vocab_size == 4 + 27  # <pad> <bos> <eos> <unk>, a-z and the apostrophe
    x, mask, y = task.train_batch(position=7, batch_size=16, seed=0, shard=slice(0, 16))
    assert x.shape == mask.shape and x.shape[0] == 16 and y.shape == (16,)
    assert bool((x[:, 0] == tok.bos_id).all())
    assert bool((mask == (x != tok.pad_id)).all()) and bool(mask.any(0).all())  # no all-padding column
    words = [tok.decode(row[m].tolist()) for row, m in zip(x, mask)]
    label = dict(load_labelled_text("cmudict-syllables").train)
    assert [task.classes[i] for i in y.tolist()] == [label[w] for w in words]
    # The global batch depends only on (seed, position); a shard is its rows.
    xs, ms, ys = task.train_batch(7, 16, 0, slice(8, 16))
    assert torch.equal(ys, y[8:]) and torch.equal(xs, x[8:, :xs.shape[1]])
    # Evaluation visits the test split in order.
    first = next(task.eval_batches(4))
    assert [tok.decode(r.tolist()) for r in first[0]] == [w for w, _ in load_labelled_text("cmudict-syllables").test[:4]]


def fields(task, name):
    return task.model_fields(model_info(name).model_class, model_config(name))


def test_each_model_says_which_fields_the_texts_fix(task):
    assert fields(task, "rnn_classifier") == {"num_classes": 4, "vocab_size": 31, "pad_id": 0}
    assert fields(task, "bert") == {"num_labels": 4, "vocab_size": 31, "pad_token_id": 0, "head": "classification"}


class FixedPredictions(TokenClassifier, nn.Module):
    """Answers every batch with the logits it was given (a stand-in classifier)."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def token_logits(self, input_ids, mask):
        return self.logits


def test_metrics_match_hand_and_sklearn_values(task):
    from sklearn.metrics import f1_score

    y = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0])  # class 3 ("4+") neither occurs nor is predicted
    logits = 2.0 * F.one_hot(pred, 4).float()
    x = torch.ones(8, 3, dtype=torch.long)
    sums = task.evaluate_batch(FixedPredictions(logits), (x, x.bool(), y))
    m = task.metrics({k: float(v) for k, v in sums.items()})
    assert m["accuracy"] == pytest.approx(5 / 8)
    # F1: class 0 2*2/(3+3), class 1 2*2/(3+3), class 2 2*1/(2+2) -> mean 0.6111
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert m["macro_f1"] == pytest.approx(f1_score(y.numpy(), pred.numpy(), average="macro"))
    right, wrong = -math.log(math.e ** 2 / (math.e ** 2 + 3)), -math.log(1 / (math.e ** 2 + 3))
    assert m["loss"] == pytest.approx((5 * right + 3 * wrong) / 8)
    assert task.sum_keys[:3] == ("loss_sum", "correct", "count") and len(task.sum_keys) == 3 + 3 * 4


@pytest.mark.parametrize("model, config", [
    ("rnn_classifier", {"embed_dim": 8, "hidden_size": 16, "bidirectional": True, "pooling": "final"}),
    ("rnn_classifier", {"embed_dim": 8, "hidden_size": 16, "cell": "gru", "pooling": "attention"}),
    # init_std=0.5: BERT's own 0.02 leaves attention so uniform that ignoring the mask moves logits by 2e-5 only.
    ("bert", {"hidden_size": 16, "num_layers": 2, "num_heads": 2, "intermediate_size": 32,
              "max_position_embeddings": 40, "init_std": 0.5}),
])
def test_padding_never_changes_a_prediction(task, model, config):
    net = create_model(model, **config, **fields(task, model)).eval()
    ids, labels = task.splits["test"]
    rows = [ids[i] for i in range(12)]
    x, mask = pad_batch(rows, task.tokenizer.pad_id)
    with torch.no_grad():
        batched = net.token_logits(x, mask)
        extra = F.pad(x, (0, 9), value=task.tokenizer.pad_id)  # nine more padding columns
        padded_more = net.token_logits(extra, F.pad(mask, (0, 9), value=False))
        alone = torch.cat([net.token_logits(torch.tensor([r]), torch.ones(1, len(r), dtype=torch.bool))
                           for r in rows])
    assert bool((~mask).any())  # the batch really is padded
    unmasked = net(x).logits if model == "bert" else net(x, lengths=torch.full((12,), x.shape[1]))
    assert (unmasked - batched).abs().max() > 0.05  # reading the padding would change the logits
    torch.testing.assert_close(padded_more, batched, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("model, sizes", [
    ("rnn_classifier", {"embed_dim": 16, "hidden_size": 32, "bidirectional": True}),
    ("bert", {"hidden_size": 32, "num_layers": 2, "num_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 32, "dropout": 0.0, "attention_dropout": 0.0}),
])
def test_classifiers_beat_the_majority_class_on_syllables(tmp_path, task, model, sizes):
    out = tmp_path / model
    settings = {**sizes, "batch_size": 64, "lr": 3e-3, "max_steps": 100, "eval_batches": 16, "log_every": 50}
    result = train(RunSpec(task="textclass", model=model, out=out, settings=settings))
    seen = task.splits["test"][1][:16 * 64]  # the test words the evaluation read
    majority = Counter(seen.tolist()).most_common(1)[0][1] / len(seen)
    acc = result["metrics"]["accuracy"]
    assert acc > majority + 0.1, (f"{model} after 100 steps: accuracy {acc:.3f} on {len(seen)} test words, "
                                  f"majority class {majority:.3f}")
    assert (out / "tokenizer.json").is_file() and (out / "labels.json").is_file()
    # Evaluating reuses the saved tokenizer and labels; on the whole test split now.
    full = evaluate(out, batch_size=512)
    assert set(full) == {"loss", "accuracy", "macro_f1"} and full["accuracy"] > 0.459 + 0.1  # 5509 / 11999


def test_evaluating_on_other_labels_is_refused(tmp_path):
    rows = [(f"{w} film", y) for w, y in (("great", "good"), ("fine", "good"), ("awful", "bad"), ("dull", "bad"))] * 10
    path = write_tsv(tmp_path / "films.tsv", rows)
    out = tmp_path / "run"
    settings = {"embed_dim": 8, "hidden_size": 8, "batch_size": 8, "max_steps": 3, "tokenizer": "word"}
    train(RunSpec(task="textclass", model="rnn_classifier", data=str(path), out=out, settings=settings))
    assert get_task("textclass") is TextClassTask
    other = write_tsv(tmp_path / "other.tsv", [("great film", "good"), ("a film", "neutral")] * 10)
    with pytest.raises(ConfigError, match=r"has labels \['neutral'\] the checkpoint was not trained on "
                                          r"\(it knows \['bad', 'good'\]\)"):
        evaluate(out, str(other))
    with pytest.raises(ConfigError, match="tokenizer must be one of char, word, bpe, got 'sentencepiece'"):
        TextClassConfig(tokenizer="sentencepiece")
