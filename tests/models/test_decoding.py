import itertools

import pytest
import torch

from archlab.errors import ConfigError
from archlab.models.decoding import beam_search, greedy_decode, sample_next

V, EOS, BOS = 5, 0, 1


def markov_step(table):
    """A toy model: next-token log-probs depend only on the last token (table: (V, V))."""
    def step(tokens, state):
        return table[tokens[:, -1]], state
    return step


def brute_force_best(table, max_len):
    best, best_seq = float("-inf"), None
    for L in range(1, max_len + 1):
        for seq in itertools.product(range(V), repeat=L):
            if EOS in seq[:-1] or (L < max_len and seq[-1] != EOS):
                continue
            prev, s = BOS, 0.0
            for t in seq:
                s += table[prev, t].item()
                prev = t
            score = s / L  # length_penalty = 1
            if score > best:
                best, best_seq = score, seq
    return best_seq


def test_beam_search_with_wide_beam_finds_the_exact_best_sequence():
    torch.manual_seed(3)
    for _ in range(5):
        table = torch.randn(V, V).log_softmax(-1)
        max_len = 4
        out = beam_search(markov_step(table), {}, bos_id=BOS, eos_id=EOS, batch_size=1,
                          max_len=max_len, beam_size=V ** max_len)
        seq = brute_force_best(table, max_len)
        assert tuple(out[0, : len(seq)].tolist()) == seq


def test_beam_search_reorders_per_row_state_across_a_batch():
    torch.manual_seed(0)
    tables = torch.randn(3, V, V).log_softmax(-1)  # each example has its own model

    def step(tokens, state):  # the row id travels in the state: it must follow its beam
        return tables[state["row"], tokens[:, -1]], state

    rows = torch.arange(3)
    wide = beam_search(step, {"row": rows}, bos_id=BOS, eos_id=EOS, batch_size=3, max_len=4, beam_size=V ** 4)
    for r in range(3):
        seq = brute_force_best(tables[r], 4)
        assert tuple(wide[r, : len(seq)].tolist()) == seq
    g = greedy_decode(step, {"row": rows}, bos_id=BOS, eos_id=EOS, batch_size=3, max_len=6)
    b = beam_search(step, {"row": rows}, bos_id=BOS, eos_id=EOS, batch_size=3, max_len=6, beam_size=1)
    assert torch.equal(g, b)


def test_sample_next_filters():
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    assert sample_next(logits).item() == 3
    g = torch.Generator().manual_seed(0)
    draws = {sample_next(logits, do_sample=True, top_k=2, generator=g).item() for _ in range(200)}
    assert draws == {2, 3}
    draws = {sample_next(logits, do_sample=True, top_p=0.5, generator=g).item() for _ in range(200)}
    assert draws == {3}  # p(3) = 0.64 >= 0.5 alone
    draws = {sample_next(logits, do_sample=True, temperature=100.0, generator=g).item() for _ in range(400)}
    assert draws == {0, 1, 2, 3}
    with pytest.raises(ConfigError, match="temperature must be > 0, got 0"):
        sample_next(logits, do_sample=True, temperature=0)
    with pytest.raises(ConfigError, match="top_p"):
        sample_next(logits, do_sample=True, top_p=1.5)
