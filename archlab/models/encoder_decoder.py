"""What every attention encoder-decoder (the Transformer, T5) does the same way: the teacher-forced
forward pass, the check of its token ids, and generation with cached keys and values.

A model supplies only what is its own::

    encode(src_ids, src_padding_mask) -> m (B, S, d), src_keep (B, S)    True = a real source token
    decode(tgt_ids, m, src_keep) -> logits (B, T, V)                     every target prefix at once
    new_decoder_cache() -> [(self KVCache, cross KVCache), ...]          one pair per decoder layer
    decode_step_cached(y, m, src_keep, caches, offset) -> logits (B, t, V)
        the t new target positions y (B, t) after the ``offset`` already in ``caches`` (extended)

and a config with ``pad_id``, ``bos_id``, ``eos_id``. ``positions_field`` (``Seq2SeqModel``'s)
names the config field of a positional table's length, which bounds every sequence; None: no bound.

Generation runs the decoder incrementally: each layer keeps the keys and values of the target
positions already written (``archlab.nn.KVCache``) and projects the encoder's keys and values once,
so a step costs one position, not the whole prefix. ``use_cache=False`` decodes the whole prefix at
every step instead (the reference the cache is tested against).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from archlab.errors import check
from archlab.models.decoding import Step, search
from archlab.utils.runtime import eval_mode


class AttentionEncoderDecoder:
    """Mixin of an attention encoder-decoder: ``forward``, ``translate`` and their helpers, written
    once over the model's ``encode``, ``decode``, ``new_decoder_cache`` and ``decode_step_cached``.
    It comes before the capability interfaces in a model's bases (its ``translate`` is theirs)."""

    positions_field: ClassVar[str | None] = None  # config field of the longest sequence, if any

    def _max_positions(self) -> int | None:
        return getattr(self.config, self.positions_field) if self.positions_field else None

    def _check_ids(self, name: str, ids: torch.Tensor, vocab: int, mask: torch.Tensor | None, *,
                   default_keep: bool = True) -> torch.Tensor | None:
        """``ids`` (B, L) checked; their mask (B, L), True = a real token: ``mask`` as given, or else
        ``ids != pad_id`` (``default_keep``) or None (no mask)."""
        check(ids.dim() == 2 and not ids.is_floating_point(),
              f"{name} must be integer token ids of shape (batch, length), got {ids.dtype} of shape {tuple(ids.shape)}")
        limit = self._max_positions()
        if limit is not None:
            check(ids.size(1) <= limit,
                  f"{name} has length {ids.size(1)}, the model expects at most {self.positions_field}={limit}")
        if ids.numel():
            lo, hi = int(ids.min()), int(ids.max())
            check(lo >= 0 and hi < vocab, f"{name} must be in [0, {vocab}), got values in [{lo}, {hi}]")
        if mask is None:
            return ids != self.config.pad_id if default_keep else None
        mask_name = name.replace("_ids", "_padding_mask")
        check(tuple(mask.shape) == tuple(ids.shape),
              f"{mask_name} must have the shape of {name} {tuple(ids.shape)}, got {tuple(mask.shape)}")
        return mask.bool()

    def forward(self, src_ids: torch.Tensor, tgt_ids: torch.Tensor, src_padding_mask: torch.Tensor | None = None,
                tgt_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V): position t predicts tgt_ids[:, t + 1] (feed [bos] + y, score against y + [eos])."""
        check(src_ids.dim() != 2 or tgt_ids.dim() != 2 or src_ids.size(0) == tgt_ids.size(0),
              f"src_ids and tgt_ids must have the same batch size, got {src_ids.size(0)} and {tgt_ids.size(0)}")
        memory, src_keep = self.encode(src_ids, src_padding_mask)
        return self.decode(tgt_ids, memory, src_keep, tgt_padding_mask)

    # --------------------------------------------------------------------------------------------
    # Incremental decoding
    # --------------------------------------------------------------------------------------------

    def decoding_step(self, use_cache: bool) -> Step:
        """``step(tokens, state) -> (log_probs, state)`` for archlab.models.decoding.

        ``state`` holds only tensors (so beam search can reorder its rows): the encoder output, the
        source mask, and with the cache each decoder layer's keys and values so far.
        """
        def step(tokens, state):
            if not use_cache:
                logits = self.decode(tokens, state["memory"], state["src_keep"])[:, -1]
                return logits.float().log_softmax(-1), state
            caches = self.new_decoder_cache()
            for i, (sc, cc) in enumerate(caches):
                sc.k, sc.v = state["self_k"][i], state["self_v"][i]
                cc.k, cc.v = state["cross_k"][i], state["cross_v"][i]
            done = len(caches[0][0])  # positions already in the cache
            logits = self.decode_step_cached(tokens[:, done:], state["memory"], state["src_keep"], caches, done)
            state = {**state, "self_k": [sc.k for sc, _ in caches], "self_v": [sc.v for sc, _ in caches],
                     "cross_k": [cc.k for _, cc in caches], "cross_v": [cc.v for _, cc in caches]}
            return logits[:, -1].float().log_softmax(-1), state

        return step

    def start_state(self, src_ids: torch.Tensor, src_padding_mask: torch.Tensor | None = None) -> dict[str, Any]:
        """The decoding state before the first target token: encoder output and empty caches."""
        memory, keep = self.encode(src_ids, src_padding_mask)
        empty = [None] * len(self.new_decoder_cache())
        return {"memory": memory, "src_keep": keep, "self_k": empty, "self_v": list(empty),
                "cross_k": list(empty), "cross_v": list(empty)}

    def start_decoding(self, src_ids: torch.Tensor) -> tuple[Step, dict[str, Any]]:
        """``(step, state)`` before the first target token, with the key/value cache; source
        padding read from ``pad_id``."""
        return self.decoding_step(True), self.start_state(src_ids)

    @torch.no_grad()
    def translate(self, src_ids: torch.Tensor, *, max_len: int, beam_size: int = 1, length_penalty: float = 1.0,
                  src_padding_mask: torch.Tensor | None = None, use_cache: bool = True) -> torch.Tensor:
        """Target token ids (B, L <= max_len), bos excluded, eos_id after each row's end.

        ``beam_size=1``: greedy decoding; larger: beam search with ``length_penalty``. Runs in
        evaluation mode (no dropout) and restores the previous mode. A positional table bounds
        ``max_len`` below its length (bos takes a position).
        """
        limit = self._max_positions()
        if limit is None:
            check(max_len >= 1, f"max_len must be >= 1, got {max_len}")
        else:
            check(1 <= max_len < limit, f"max_len must be in [1, {limit}) (the positional table), got {max_len}")
        c = self.config
        with eval_mode(self):
            return search(self.decoding_step(use_cache), self.start_state(src_ids, src_padding_mask),
                          bos_id=c.bos_id, eos_id=c.eos_id, batch_size=src_ids.size(0), max_len=max_len,
                          beam_size=beam_size, length_penalty=length_penalty, device=src_ids.device)
