"""The sequence-to-sequence task: G2P on a real slice of CMUdict, and TSV sentence pairs."""

from __future__ import annotations

import json

import pytest
import torch
from sacrebleu.metrics import BLEU

from archlab.data.pronunciation import g2p_error_rates, strip_stress
from archlab.errors import ConfigError
from archlab.registry import create_model, model_config, model_info
from archlab.tasks.seq2seq import SYMBOLS_FILE, Seq2SeqConfig, Seq2SeqTask
from archlab.train import RunSpec, evaluate, train
from archlab.train.evaluation import load_for_evaluation

TINY_TRANSFORMER = dict(d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2, dim_feedforward=128,
                        dropout=0.0)
TINY_GRU = dict(cell="gru", embed_dim=32, hidden_size=128, dropout=0.0)
TINY_T5 = dict(d_model=64, d_kv=16, d_ff=128, num_heads=4, num_layers=2, num_decoder_layers=2, num_buckets=16,
               max_distance=32, dropout=0.0)

# Made-up English -> French pairs: a small, real corpus written for this test.
PAIRS = """\
I see the cat.\tJe vois le chat.
I see the dog.\tJe vois le chien.
I see the house.\tJe vois la maison.
I see the car.\tJe vois la voiture.
You see the cat.\tTu vois le chat.
You see the dog.\tTu vois le chien.
You see the house.\tTu vois la maison.
You see the car.\tTu vois la voiture.
We see the cat.\tNous voyons le chat.
We see the dog.\tNous voyons le chien.
We see the house.\tNous voyons la maison.
We see the car.\tNous voyons la voiture.
I like the cat.\tJ'aime le chat.
I like the dog.\tJ'aime le chien.
I like the house.\tJ'aime la maison.
I like the car.\tJ'aime la voiture.
You like the cat.\tTu aimes le chat.
You like the dog.\tTu aimes le chien.
You like the house.\tTu aimes la maison.
You like the car.\tTu aimes la voiture.
We like the cat.\tNous aimons le chat.
We like the dog.\tNous aimons le chien.
We like the house.\tNous aimons la maison.
We like the car.\tNous aimons la voiture.
The cat is small.\tLe chat est petit.
The dog is small.\tLe chien est petit.
The cat is big.\tLe chat est grand.
The dog is big.\tLe chien est grand.
The house is big.\tLa maison est grande.
The car is big.\tLa voiture est grande.
The house is small.\tLa maison est petite.
The car is small.\tLa voiture est petite.
The cat sleeps.\tLe chat dort.
The dog sleeps.\tLe chien dort.
The cat eats.\tLe chat mange.
The dog eats.\tLe chien mange.
I eat bread.\tJe mange du pain.
You eat bread.\tTu manges du pain.
We eat bread.\tNous mangeons du pain.
I drink water.\tJe bois de l'eau.
You drink water.\tTu bois de l'eau.
We drink water.\tNous buvons de l'eau.
The cat drinks water.\tLe chat boit de l'eau.
The dog drinks water.\tLe chien boit de l'eau.
The cat eats bread.\tLe chat mange du pain.
The dog eats bread.\tLe chien mange du pain.
I have a cat.\tJ'ai un chat.
I have a dog.\tJ'ai un chien.
You have a car.\tTu as une voiture.
We have a house.\tNous avons une maison.
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # small kernels: see tests/conftest.py


@pytest.fixture(scope="module")
def g2p():
    return Seq2SeqTask(Seq2SeqConfig(train_words=2000, eval_words=300))


@pytest.fixture(scope="module")
def tsv(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "en_fr.tsv"
    path.write_text(PAIRS, encoding="utf-8")
    return path


def phonemes(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def test_error_sums_are_exact_on_hand_made_predictions(g2p):
    # The first test words and what a model might say (the references, from the dictionary):
    words = [w for w, _ in g2p.test[:5]]
    assert words == ["fenech", "harke", "struggling", "horrific", "strelow"]
    predictions = [
        phonemes("F EH1 N IH0 K"),          # right: 0 edits of 5
        phonemes("HH AA1 K"),               # R dropped: 1 of 4, with or without stress
        phonemes("S T R AH1 G L IH1 NG"),   # closest to the 2nd pronunciation: 1 of 8; none without stress
        phonemes("HH AO1 R IH0 F IH0 K"),   # stress on the wrong syllable: 2 of 7; none without stress
        (),                                  # nothing: 6 of 6
    ]
    sums = g2p.error_sums(predictions, [0, 1, 2, 3, 4])
    assert sums == {"words": 5, "edits": 10, "ref_phonemes": 30, "wrong": 4,
                    "edits_nostress": 7, "ref_phonemes_nostress": 30, "wrong_nostress": 2}
    metrics = g2p.metrics({"loss_sum": 1.0, "count": 1.0, **sums})
    refs = [refs for _, refs in g2p.test[:5]]
    oracle = g2p_error_rates(predictions, refs)
    oracle_nostress = g2p_error_rates([strip_stress(p) for p in predictions],
                                      [[strip_stress(r) for r in rs] for rs in refs])
    assert (metrics["wer"], metrics["per"]) == (oracle["wer"], oracle["per"]) == (0.8, 10 / 30)
    assert (metrics["wer_nostress"], metrics["per_nostress"]) == (oracle_nostress["wer"], oracle_nostress["per"])
    assert metrics["eval_count"] == 5
    # Sums of two halves (two batches, or two processes) give the same figures.
    halves = [g2p.error_sums(predictions[:2], [0, 1]), g2p.error_sums(predictions[2:], [2, 3, 4])]
    assert {k: halves[0][k] + halves[1][k] for k in sums} == sums


def test_batches_are_seeded_bucketed_and_padded_to_the_longest(g2p):
    bs = 64
    src, tgt = g2p.train_batch(3, bs, seed=0, shard=slice(0, bs))
    again = g2p.train_batch(3, bs, seed=0, shard=slice(0, bs))
    assert torch.equal(src, again[0]) and torch.equal(tgt, again[1])
    half = g2p.train_batch(3, bs, seed=0, shard=slice(32, 64))  # another process's share
    assert torch.equal(half[1], tgt[32:, : half[1].size(1)]) and (half[1] != 0).any(0).all()
    assert (src[:, -1] != 0).any() and (tgt[:, -1] != 0).any()  # no column of padding only
    # One epoch visits every training pair once (minus the incomplete last batch).
    per_epoch = g2p.num_train_samples // bs
    rows = g2p._epoch_batches(0, bs, 0).flatten().tolist()
    assert len(rows) == len(set(rows)) == per_epoch * bs
    # Length bucketing: far less padding than random batches.
    plain = Seq2SeqTask(Seq2SeqConfig(train_words=2000, eval_words=300, bucket_batches=1))

    def padding(task):
        batches = [task.train_batch(p, bs, 0, slice(0, bs)) for p in range(per_epoch)]
        return sum((b == 0).sum().item() for s, t in batches for b in (s, t)) / sum(
            s.numel() + t.numel() for s, t in batches)

    assert padding(g2p) < 0.15 < 0.4 < padding(plain)  # seen: 0.09 and 0.47


def fields(task, name):
    return task.model_fields(model_info(name).model_class, model_config(name))


def test_model_fields_and_bad_settings(g2p, tmp_path):
    assert fields(g2p, "transformer") == {"src_vocab_size": 30, "tgt_vocab_size": 72, "pad_id": 0, "bos_id": 1,
                                          "eos_id": 2, "max_len": 30}  # 27 letters + 3 specials; 69 phonemes + 3;
    #                                                                    [bos] + 28 + eos positions
    assert "max_len" not in fields(g2p, "seq2seq_rnn")  # a recurrent decoder has no positional table
    with pytest.raises(ConfigError, match="tokenizer must be one of \\('word', 'char', 'bpe'\\), got 'spaces'"):
        Seq2SeqConfig(tokenizer="spaces")
    with pytest.raises(ConfigError, match="must be 'cmudict' or the path of a TSV file of source<TAB>target lines"):
        Seq2SeqTask(Seq2SeqConfig(), "no/such/pairs.tsv")
    nostress = Seq2SeqTask(Seq2SeqConfig(stress=False, train_words=100, eval_words=10))
    assert nostress.target.vocab_size == 39 + 3
    # T5: letters and phonemes are two id spaces, so the model gets two embedding tables.
    assert fields(g2p, "t5_small") == {"src_vocab_size": 30, "tgt_vocab_size": 72, "pad_id": 0, "bos_id": 1,
                                       "eos_id": 2, "share_vocab": False}
    with pytest.raises(ConfigError, match=r"share_vocab is fixed by the data \(share_vocab=False\)"):
        train(RunSpec(task="seq2seq", model="t5_small", out=tmp_path / "never_written",
                      settings={"share_vocab": True, "train_words": 100, "eval_words": 10}))


@pytest.mark.parametrize("name, config", [("transformer", TINY_TRANSFORMER), ("t5_small", TINY_T5),
                                          ("seq2seq_rnn", TINY_GRU),
                                          ("seq2seq_rnn", {**TINY_GRU, "cell": "lstm", "attention": "general"}),
                                          ("seq2seq_rnn", {**TINY_GRU, "cell": "rnn", "attention": "dot"})])
def test_the_loss_is_teacher_forced_cross_entropy(g2p, name, config):
    model = create_model(name, **config, **fields(g2p, name))
    src, tgt = g2p.train_batch(0, 32, 0, slice(0, 32))
    # By hand: the decoder reads [bos] + y and is scored on y + [eos]; padding is not scored.
    bos, eos, pad = 1, 2, 0
    lengths = (tgt != pad).sum(1)
    decoder_in = torch.cat([torch.full((len(tgt), 1), bos), tgt], dim=1)
    target = torch.cat([tgt, torch.full((len(tgt), 1), pad)], dim=1)
    target[torch.arange(len(tgt)), lengths] = eos
    logits = model(src, decoder_in)
    by_hand = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=pad,
                                                label_smoothing=0.1)
    smoothed = Seq2SeqTask(Seq2SeqConfig(train_words=2000, eval_words=300, label_smoothing=0.1))
    assert torch.allclose(smoothed.step(model, (src, tgt)), by_hand, atol=1e-6)  # training: smoothed
    plain = torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=pad)
    assert torch.allclose(model.loss(src, tgt), plain, atol=1e-6)
    # Evaluation reports the plain negative log-likelihood's sums, over every phoneme and each eos.
    batch = next(iter(smoothed.eval_batches(16)))
    sums = smoothed.evaluate_batch(model.eval(), batch)
    assert sums["count"] == (batch[1] != pad).sum() + len(batch[1])
    assert sums["words"] == 16


def test_evaluation_batches_cover_the_held_out_words_once_shortest_first(g2p):
    for split, words, n in (("test", g2p.test, 300), ("val", g2p.val, 3_000)):
        batches = list(g2p.eval_batches(128, split))
        index = torch.cat([i for _, _, i, _ in batches]).tolist()
        assert sorted(index) == list(range(n)) and len(words) == n
        lengths = [len(words[i][0]) for i in index]
        assert lengths == sorted(lengths)
    # The dictionary's validation words are neither trained on nor tested.
    trained = {source for source, _ in g2p._train_text}
    assert not trained & {w for w, _ in g2p.val} and not {w for w, _ in g2p.test} & {w for w, _ in g2p.val}


def run_g2p(tmp_path, model, config, steps, **extra):
    out = tmp_path / model
    settings = {**config, "train_words": 2000, "eval_words": 300, "batch_size": 64, "lr": 3e-3,
                "warmup_steps": 20, "max_steps": steps, "log_every": 10, **extra}
    result = train(RunSpec(task="seq2seq", model=model, data="cmudict", out=out, settings=settings))
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    return out, result["metrics"], losses


@pytest.mark.slow
def test_a_tiny_transformer_learns_g2p_and_its_checkpoint_keeps_the_symbols(tmp_path):
    out, metrics, losses = run_g2p(tmp_path, "transformer", TINY_TRANSFORMER, 200)
    assert losses[-1] < 0.5 * losses[0], losses  # seen: 0.22-0.25 of the first, seeds 0-2
    assert metrics["eval_count"] == 300
    # Seen (seeds 0-2): WER 0.84-0.85 with stress, 0.83-0.84 without; PER 0.37-0.40 with stress.
    assert metrics["wer"] < 0.95 and metrics["per"] < 0.5, metrics
    assert metrics["wer_nostress"] <= metrics["wer"] and metrics["per_nostress"] <= metrics["per"]
    # The symbol tables travel with the checkpoint and come back, with the same figures.
    stored = json.loads((out / SYMBOLS_FILE).read_text())
    assert stored["max_len"] == 28 and len(stored["target"]["tokens"]) == 72
    model, task = load_for_evaluation(out)
    assert task.max_len == 28 and task.target.tokens[:3] == ["<pad>", "<bos>", "<eos>"]
    assert evaluate(out, batch_size=300) == pytest.approx(metrics)
    samples = task.sample_predictions(model, n=3)
    assert [s for s, _, _ in samples] == ["fenech", "harke", "struggling"]
    assert samples[2][2] == ["S T R AH1 G AH0 L IH0 NG", "S T R AH1 G L IH0 NG"]
    assert all(set(p.split()) <= set(task.target.tokens) for _, p, _ in samples)


@pytest.mark.slow
def test_a_tiny_t5_learns_g2p_and_translates_from_its_checkpoint(tmp_path):
    out, metrics, losses = run_g2p(tmp_path, "t5_small", TINY_T5, 100, lr=1e-2)
    assert losses[-1] < 0.65 * losses[0], losses  # seen (seed 0): 0.56 of the first
    assert metrics["per"] < 0.9 and metrics["eval_count"] == 300, metrics  # seen (seed 0): PER 0.79
    model, task = load_for_evaluation(out)
    assert type(model).__name__ == "T5" and not model.config.share_vocab
    assert task.translate(model, ["tomato"], beam_size=3)[0]  # beam search through the cache


def test_a_tiny_gru_seq2seq_learns_g2p(tmp_path):
    out, metrics, losses = run_g2p(tmp_path, "seq2seq_rnn", TINY_GRU, 150)
    assert losses[-1] < 0.6 * losses[0], losses  # seen: 0.31-0.36 of the first, seeds 0-2
    assert metrics["per"] < 0.6 and metrics["wer"] < 1.0, metrics  # seen: PER 0.43-0.44, WER 0.92-0.93
    # Asked for a beam, the evaluation scores the beam's pronunciations: the share of test words whose
    # beam-of-3 translation is none of their pronunciations is its WER.
    beam = evaluate(out, batch_size=300, task_settings={"beam_size": "3"})
    model, task = load_for_evaluation(out)
    words = [word for word, _ in task.held("test")]
    said = task.translate(model, words, beam_size=3)
    wrong = sum(tuple(p.split()) not in refs for p, refs in zip(said, task.refs))
    assert beam["eval_count"] == 300 and beam["wer"] == pytest.approx(wrong / 300)
    assert evaluate(out, batch_size=300, task_settings={"beam_size": "1"}) == pytest.approx(metrics)
    with pytest.raises(ConfigError, match="beam_size must be >= 1"):
        evaluate(out, task_settings={"beam_size": "0"})


def test_sentence_pairs_end_to_end(tmp_path, tsv):
    out = tmp_path / "run"
    settings = {**TINY_TRANSFORMER, "tokenizer": "word", "batch_size": 8, "lr": 3e-3, "max_steps": 60,
                "log_every": 10}
    result = train(RunSpec(task="seq2seq", model="transformer", data=str(tsv), out=out, settings=settings))
    metrics = result["metrics"]
    assert set(metrics) == {"loss", "bleu", "eval_count"} and metrics["eval_count"] == 5  # 10% of 50 pairs
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["split"] == "train"]
    assert losses[-1] < 0.3 * losses[0], losses  # seen: 0.06-0.10 of the first, seeds 0-2
    assert metrics["bleu"] > 20, metrics  # seen: 56-83 on the 5 test pairs
    # BLEU from summed statistics is sacrebleu's corpus BLEU of the detokenised translations.
    model, task = load_for_evaluation(out)
    samples = task.sample_predictions(model, n=5)
    expected = BLEU().corpus_score([p for _, p, _ in samples], [[refs[0] for _, _, refs in samples]]).score
    assert metrics["bleu"] == pytest.approx(expected, abs=1e-9)
    assert all(p and p[-1] == "." for _, p, _ in samples), samples  # sentences, detokenised
    # Other pairs, with words the model never saw, are read with the checkpoint's own vocabularies.
    other = tmp_path / "other.tsv"
    other.write_text("".join(f"The bird sings {i} times.\tL'oiseau chante {i} fois.\n" for i in range(20)))
    reused = Seq2SeqTask(task.config, str(other), saved=out)
    assert reused.source == task.source and reused.target == task.target
    assert evaluate(out, str(other))["eval_count"] == 2
    with pytest.raises(ConfigError, match="the checkpoint was trained on sentence pairs"):
        Seq2SeqTask(task.config, "cmudict", saved=out)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_other_tokenizers_share_the_special_ids(tsv, kind):
    task = Seq2SeqTask(Seq2SeqConfig(tokenizer=kind, max_vocab=300), str(tsv))
    assert (task.source.pad_id, task.source.bos_id, task.source.eos_id) == (0, 1, 2)
    assert (task.target.pad_id, task.target.bos_id, task.target.eos_id) == (0, 1, 2)
    french = task.test[0][1][0]
    assert task.target.decode(task.target.encode(french)) == french
