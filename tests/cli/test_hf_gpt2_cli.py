"""`archlab generate` and `archlab evaluate` read a Hugging Face GPT-2 folder: its weights, its tokenizer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from archlab.cli import main

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = "\n".join(f"Line {i}: the quick brown fox jumps over the lazy dog, then rests." for i in range(80)) + "\n"


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    """A tiny random GPT-2 saved as transformers saves it, with a byte-level BPE tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    root = tmp_path_factory.mktemp("hf")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.save(str(root / "tokenizer.json"))
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=tok.get_vocab_size(), n_positions=32, n_embd=32, n_layer=2, n_head=4)
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    hf.save_pretrained(root)
    (root / "text.txt").write_text(TEXT)
    return root, hf, tok


def test_generate_continues_a_prompt_as_transformers_does(hf_folder, capsys):
    root, hf, tok = hf_folder
    assert main(["generate", "--checkpoint", str(root), "--prompt", "the quick", "--greedy",
                 "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    ids = torch.tensor([tok.encode("the quick").ids])
    with torch.no_grad():
        expected = hf.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)[0, ids.shape[1]:]
    assert out == "the quick" + tok.decode(expected.tolist()) + "\n"


def test_evaluate_scores_held_out_text_with_the_folders_own_tokenizer(hf_folder, capsys):
    root, hf, tok = hf_folder
    assert main(["evaluate", "--checkpoint", str(root), "--data", str(root / "text.txt"), "--json"]) == 0
    import json

    loss = json.loads(capsys.readouterr().out)["loss"]
    # The same number by hand: the last 10% of the tokens, in blocks of n_positions=32, next-token loss.
    tokens = torch.tensor(tok.encode(TEXT).ids)
    val = tokens[len(tokens) - int(len(tokens) * 0.1):]
    T = 32
    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, len(val) - T, T):
            x, y = val[s:s + T][None], val[s + 1:s + T + 1][None]
            logits = hf(x).logits
            total += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum").item()
            count += y.numel()
    assert loss == pytest.approx(total / count, rel=1e-4)
    assert math.isfinite(loss)


def test_evaluate_needs_data_for_a_hugging_face_folder(hf_folder, capsys):
    root, _, _ = hf_folder
    assert main(["evaluate", "--checkpoint", str(root)]) == 2
    assert "is a Hugging Face gpt2 folder: evaluating it needs --data" in capsys.readouterr().err
