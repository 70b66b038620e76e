"""Turning next-token distributions into sequences: sampling, greedy and beam search.

Shared by every generative model (GPT, the RNN language models, both seq2seq models), which only
supply a ``step`` function (``search`` picks greedy decoding or beam search by the beam size)::

    step(tokens, state) -> (log_probs, state)
        tokens:    (N, t) LongTensor, every token so far (bos first)
        state:     any nest of tensors whose first dim is N (caches, encoder memory, h_t ...)
        log_probs: (N, V) log-probabilities of the next token

Beam search reorders ``state`` along dim 0 with ``index_select``, so any per-row state works.

``teacher_forcing`` builds the other half of training such a model: decoder input and target.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch.utils._pytree import tree_map

from archlab.errors import check

Step = Callable[[torch.Tensor, Any], "tuple[torch.Tensor, Any]"]


def _select_rows(state: Any, index: torch.Tensor) -> Any:
    return tree_map(lambda t: t.index_select(0, index) if isinstance(t, torch.Tensor) else t, state)


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None) -> None:
    check(temperature > 0, f"temperature must be > 0, got {temperature}")
    check(top_k is None or top_k >= 1, f"top_k must be >= 1 or None, got {top_k}")
    check(top_p is None or 0.0 < top_p <= 1.0, f"top_p must be in (0, 1] or None, got {top_p}")


def next_token_probs(logits: torch.Tensor, *, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """The distribution ``sample_next`` draws from: softmax(logits / T) cut to the top-k and to the
    nucleus of top-p, renormalised; logits (..., V) -> probabilities (..., V) in fp32.

    temperature: p_i ∝ exp(z_i / T);  top_k: keep the k largest;  top_p (nucleus): keep the smallest
    set of tokens whose probabilities add up to at least p (applied after top-k).
    """
    check_sampling_args(temperature, top_k, top_p)
    z = logits.float() / temperature
    if top_k is not None and top_k < z.size(-1):
        kth = torch.topk(z, top_k, dim=-1).values[..., -1:]  # (..., 1)
        z = z.masked_fill(z < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_z, order = torch.sort(z, dim=-1, descending=True)
        cum = sorted_z.softmax(dim=-1).cumsum(dim=-1)
        # Drop a token when the tokens before it already reach top_p (the first one always stays).
        drop_sorted = (cum - sorted_z.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        z = z.masked_fill(drop, float("-inf"))
    return z.softmax(dim=-1)


def sample_next(
    logits: torch.Tensor,
    *,
    do_sample: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick the next token from ``logits`` (B, V): argmax, or a sample from ``next_token_probs``
    (temperature, top-k, top-p). Returns (B,) token ids."""
    check_sampling_args(temperature, top_k, top_p)
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = next_token_probs(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def teacher_forcing(tgt_ids: torch.Tensor, *, pad_id: int, bos_id: int, eos_id: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input [bos] + y and target y + [eos], both (B, T + 1), from targets ``tgt_ids`` (B, T).

    ``tgt_ids`` holds each row's tokens (no bos, no eos) followed by ``pad_id``; position t of the
    decoder reads y_<t and is scored on y_t, the position after a row's last token on eos.
    """
    B = tgt_ids.size(0)
    lengths = (tgt_ids != pad_id).sum(1)  # (B,)
    bos = torch.full((B, 1), bos_id, dtype=tgt_ids.dtype, device=tgt_ids.device)
    pad = torch.full((B, 1), pad_id, dtype=tgt_ids.dtype, device=tgt_ids.device)
    target = torch.cat([tgt_ids, pad], dim=1).scatter(1, lengths[:, None], eos_id)  # (B, T + 1): y + [eos]
    return torch.cat([bos, tgt_ids], dim=1), target  # (B, T + 1): [bos] + y


def greedy_decode(step: Step, state: Any, *, bos_id: int, eos_id: int, batch_size: int, max_len: int,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """Most likely token at each step until ``eos_id`` or ``max_len``.

    Returns (B, L) generated tokens (bos excluded); positions after a row's eos hold ``eos_id``.
    """
    check(max_len >= 1, f"max_len must be >= 1, got {max_len}")
    tokens = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_len):
        log_probs, state = step(tokens, state)
        nxt = log_probs.argmax(-1).masked_fill(done, eos_id)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        done |= nxt == eos_id
        if bool(done.all()):
            break
    return tokens[:, 1:]


def beam_search(step: Step, state: Any, *, bos_id: int, eos_id: int, batch_size: int, max_len: int,
                beam_size: int = 4, length_penalty: float = 1.0,
                device: torch.device | str = "cpu") -> torch.Tensor:
    """Keep the ``beam_size`` best partial sequences per example; return the best finished one.

    Scores are summed log-probabilities; finished hypotheses are ranked by
    ``score / length ** length_penalty`` (length counts the eos). ``state`` comes in with first dim
    B and is repeated for the beams. Returns (B, L) like ``greedy_decode``.
    """
    check(beam_size >= 1, f"beam_size must be >= 1, got {beam_size}")
    check(max_len >= 1, f"max_len must be >= 1, got {max_len}")
    B, K = batch_size, beam_size
    state = _select_rows(state, torch.arange(B, device=device).repeat_interleave(K))
    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(B, K, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    finished = torch.zeros(B * K, dtype=torch.bool, device=device)
    lengths = torch.zeros(B * K, device=device)
    for _ in range(max_len):
        log_probs, state = step(tokens, state)
        log_probs = log_probs.float()
        V = log_probs.size(-1)
        # A finished beam may only continue with eos, at no cost: its score stays fixed.
        frozen = torch.full_like(log_probs, float("-inf"))
        frozen[:, eos_id] = 0.0
        log_probs = torch.where(finished[:, None], frozen, log_probs)
        cand = (scores.view(B * K, 1) + log_probs).view(B, K * V)  # (B, K*V)
        scores, flat = cand.topk(K, dim=-1)  # (B, K)
        origin = (flat // V + torch.arange(B, device=device)[:, None] * K).view(-1)  # (B*K,)
        nxt = (flat % V).view(-1)
        lengths = lengths[origin] + (~finished[origin]).float()
        finished = finished[origin] | (nxt == eos_id)
        tokens = torch.cat([tokens[origin], nxt[:, None]], dim=1)
        state = _select_rows(state, origin)
        if bool(finished.all()):
            break
    ranked = scores.view(-1) / lengths.clamp(min=1) ** length_penalty
    ranked = ranked.masked_fill(torch.isinf(scores.view(-1)), float("-inf")).view(B, K)
    best = ranked.argmax(-1) + torch.arange(B, device=device) * K
    out = tokens[best, 1:]
    # Anything after a row's first eos becomes eos, as in greedy_decode.
    after_eos = (out == eos_id).long().cumsum(-1) > 0
    return out.masked_fill(after_eos, eos_id)


def search(step: Step, state: Any, *, bos_id: int, eos_id: int, batch_size: int, max_len: int,
           beam_size: int = 1, length_penalty: float = 1.0, device: torch.device | str = "cpu") -> torch.Tensor:
    """``greedy_decode`` for ``beam_size=1``, else ``beam_search``: what every ``translate`` runs."""
    check(beam_size >= 1, f"beam_size must be >= 1, got {beam_size}")
    common = dict(bos_id=bos_id, eos_id=eos_id, batch_size=batch_size, max_len=max_len, device=device)
    if beam_size == 1:
        return greedy_decode(step, state, **common)
    return beam_search(step, state, beam_size=beam_size, length_penalty=length_penalty, **common)
