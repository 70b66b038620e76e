"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019 "GPT-2").

    h_0 = W_e[x_t] + P[t]                                   token + learned position embeddings
    h_l = h_{l-1} + Dropout(CausalSelfAttention(LN(h_{l-1})))          pre-norm blocks, l = 1..L
    h_l = h_l + FFN(LN(h_l))
    p(x_{t+1} | x_<=t) = softmax(LN(h_L) W_e^T)             output head tied to the token embedding

Causal (masked) self-attention is what makes it a language model: position t attends to positions
<= t only, so every position predicts its next token in one parallel pass during training.
Generation feeds tokens back one at a time; a key/value cache keeps each layer's K, V of the past
so a step costs one position, not the whole prefix.

Built from ``archlab.nn`` (MultiHeadAttention, FeedForward, LayerNorm, LearnedPositionalEmbedding).
Hugging Face GPT-2 checkpoints load unchanged through ``archlab.from_pretrained`` (see the end of
the file). Dimension letters: B batch, T length, V vocabulary, D d_model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from archlab.checkpoint import PretrainedMixin, load_state_dict, register_checkpoint_format
from archlab.errors import CheckpointError, check
from archlab.models.decoding import check_sampling_args, sample_next
from archlab.models.interfaces import LanguageModel
from archlab.nn import FeedForward, KVCache, LayerNorm, LearnedPositionalEmbedding, MultiHeadAttention
from archlab.nn.activations import HF_ACTIVATIONS, check_activation
from archlab.registry import build_config, create_model, register_model
from archlab.utils.runtime import eval_mode


@dataclass
class GPTConfig:
    vocab_size: int = 256           # bytes / characters by default
    block_size: int = 256           # longest context (learned positions)
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 128
    d_ff: int | None = None         # feed-forward width; None = 4 * d_model
    dropout: float = 0.0            # embeddings, attention weights, residual branches
    bias: bool = True               # biases in Linear and LayerNorm (GPT-2: True)
    activation: str = "gelu_tanh"   # GPT-2's "gelu_new"
    layer_norm_eps: float = 1e-5
    tie_weights: bool = True        # output head shares the token embedding matrix
    causal: bool = True             # mask the future (a language model); False lets position t see
                                    # t+1.. -- only to show what the mask prevents (`archlab experiment
                                    # causal_mask`): such a model copies the next token and cannot generate

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "d_model"):
            check(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        check(self.d_model % self.n_head == 0,
              f"n_head must divide d_model={self.d_model}, got n_head={self.n_head}")
        check(self.d_ff is None or self.d_ff > 0, f"d_ff must be positive or None, got {self.d_ff}")
        check(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        check_activation(self.activation)


# The published GPT-2 sizes, as data (vocab 50257, 1024 positions).
GPT2_SIZES = {
    "gpt2": dict(n_layer=12, n_head=12, d_model=768),           # 124M
    "gpt2-medium": dict(n_layer=24, n_head=16, d_model=1024),   # 350M
    "gpt2-large": dict(n_layer=36, n_head=20, d_model=1280),    # 774M
    "gpt2-xl": dict(n_layer=48, n_head=25, d_model=1600),       # 1558M
}
GPT2_COMMON = dict(vocab_size=50257, block_size=1024, activation="gelu_tanh", bias=True, layer_norm_eps=1e-5)


class Block(nn.Module):
    """x = x + Dropout(Attention(LN_1(x)));  x = x + FFN(LN_2(x)) — the pre-norm GPT-2 block.

    ``FeedForward`` also drops out after its activation, which GPT-2 does not; with dropout 0 (and
    in evaluation) the two are the same function.
    """

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.causal = c.causal
        self.ln_1 = LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias)
        self.attn = MultiHeadAttention(c.d_model, c.n_head, dropout=c.dropout, bias=c.bias, batch_first=True)
        self.resid_dropout = nn.Dropout(c.dropout)
        self.ln_2 = LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias)
        self.mlp = FeedForward(c.d_model, c.d_ff or 4 * c.d_model, dropout=c.dropout, activation=c.activation,
                               bias=c.bias)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, need_weights: bool = False):
        a, weights = self.attn.attend(self.ln_1(x), is_causal=self.causal, kv_cache=kv_cache, need_weights=need_weights,
                                      average_attn_weights=False)
        x = x + self.resid_dropout(a)
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(LanguageModel, PretrainedMixin, nn.Module):
    config_class = GPTConfig
    context_field = "block_size"

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.wte = nn.Embedding(c.vocab_size, c.d_model)  # W_e: token embedding
        self.wpe = LearnedPositionalEmbedding(c.block_size, c.d_model)  # P: position embedding
        self.drop = nn.Dropout(c.dropout)
        self.h = nn.ModuleList([Block(c) for _ in range(c.n_layer)])
        self.ln_f = LayerNorm(c.d_model, eps=c.layer_norm_eps, bias=c.bias)
        self.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
        if c.tie_weights:
            self.lm_head.weight = self.wte.weight
        self._init_weights()

    def _init_weights(self) -> None:
        # GPT-2: N(0, 0.02) everywhere, zero biases; the projections that write into the residual
        # stream (attention W_o, the FFN's second layer) scaled by 1/sqrt(2 L), one per residual add.
        std, proj_std = 0.02, 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, p in self.named_parameters():
            if p.is_meta:  # shapes only (e.g. counting parameters): nothing to fill
                continue
            if p.dim() == 1:
                nn.init.zeros_(p) if name.endswith("bias") else nn.init.ones_(p)
            elif name.endswith(("attn.out_proj.weight", "mlp.3.weight")):
                nn.init.normal_(p, std=proj_std)
            else:
                nn.init.normal_(p, std=std)

    def new_cache(self) -> list[KVCache]:
        """One empty key/value cache per layer, for ``forward(..., kv_caches=...)``."""
        return [KVCache() for _ in self.h]

    def forward(self, input_ids: torch.Tensor, *, kv_caches: list[KVCache] | None = None,
                return_attentions: bool = False):
        """Next-token logits (B, T, V) for every position of ``input_ids`` (B, T).

        ``kv_caches`` (from ``new_cache()``): positions continue after the cached ones, and this
        call's keys and values are appended. ``return_attentions``: also return each layer's
        attention weights (B, nh, T, S), computed explicitly for this call only (the fused kernel
        serves every call that does not ask): ``(logits, [weights per layer])``.
        """
        c = self.config
        check(input_ids.dim() == 2 and not input_ids.is_floating_point(),
              f"input_ids must be a (batch, length) tensor of token ids, got {input_ids.dtype} of shape "
              f"{tuple(input_ids.shape)}")
        past = len(kv_caches[0]) if kv_caches is not None else 0
        T = input_ids.size(1)
        check(past + T <= c.block_size,
              f"input_ids has length {T}" + (f" after {past} cached positions" if past else "")
              + f"; GPT expects at most block_size={c.block_size} positions, got {past + T}")
        if bool(((input_ids < 0) | (input_ids >= c.vocab_size)).any()):  # one device sync, not two
            lo, hi = int(input_ids.min()), int(input_ids.max())
            check(False, f"input_ids must be token ids in [0, vocab_size={c.vocab_size}), got values in [{lo}, {hi}]")
        x = self.drop(self.wpe(self.wte(input_ids), offset=past))  # (B, T, D)
        attentions = []
        for i, block in enumerate(self.h):
            x, w = block(x, kv_cache=None if kv_caches is None else kv_caches[i], need_weights=return_attentions)
            attentions.append(w)
        logits = self.lm_head(self.ln_f(x))  # (B, T, V)
        return (logits, attentions) if return_attentions else logits

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, do_sample: bool = False,
                 temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                 use_cache: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``input_ids`` (B, T); returns (B, T + max_new_tokens).

        Greedy by default; ``do_sample`` draws from the softmax with ``temperature``, ``top_k``,
        ``top_p`` (``archlab.models.decoding.sample_next``). The context is the last
        ``block_size`` tokens. With ``use_cache`` each step runs one position through the model;
        once the cache holds ``block_size`` positions the window slides and the cache is rebuilt,
        so cached and uncached generation give the same tokens. Runs in eval mode (no dropout).
        """
        check(max_new_tokens >= 0, f"max_new_tokens must be >= 0, got {max_new_tokens}")
        check(input_ids.dim() == 2 and input_ids.size(1) >= 1,
              f"input_ids must be (batch, length >= 1), got shape {tuple(input_ids.shape)}")
        check_sampling_args(temperature, top_k, top_p)
        bs = self.config.block_size
        with eval_mode(self):
            tokens, caches = input_ids, None
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits = self(tokens[:, -bs:])
                elif caches is None or len(caches[0]) == bs:
                    caches = self.new_cache()  # first step, or the window slides: rebuild from the context
                    logits = self(tokens[:, -bs:], kv_caches=caches)
                else:
                    logits = self(tokens[:, -1:], kv_caches=caches)
                nxt = sample_next(logits[:, -1], do_sample=do_sample, temperature=temperature, top_k=top_k,
                                  top_p=top_p, generator=generator)  # (B,)
                tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            return tokens


@register_model("gpt", family="transformer", description="GPT decoder-only language model (Radford et al. 2018/2019)")
def gpt(**config) -> GPT:
    return GPT(build_config(GPTConfig, {}, config))


# ------------------------------------------------------------------------------------------------
# Hugging Face GPT-2 checkpoints (config.json with "model_type": "gpt2")
# ------------------------------------------------------------------------------------------------

# Buffers some GPT-2 checkpoints carry (the causal mask); they hold no weights.
HF_IGNORED_SUFFIXES = (".attn.bias", ".attn.masked_bias")


def gpt_config_from_hf(hf: dict) -> dict:
    """Our config fields from a Hugging Face ``GPT2Config`` dict."""
    for key, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                    ("reorder_and_upcast_attn", False)):
        if hf.get(key, ok) != ok:
            raise CheckpointError(f"GPT-2 checkpoint option {key}={hf[key]!r} is not supported (expected {ok!r})")
    act = hf.get("activation_function", "gelu_new")
    if act not in HF_ACTIVATIONS:
        raise CheckpointError(f"GPT-2 activation_function must be one of {sorted(HF_ACTIVATIONS)}, got {act!r}")
    missing = [k for k in ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd") if k not in hf]
    if missing:
        raise CheckpointError(f"GPT-2 config.json lacks {', '.join(missing)}")
    return dict(vocab_size=hf["vocab_size"], block_size=hf["n_positions"], n_layer=hf["n_layer"],
                n_head=hf["n_head"], d_model=hf["n_embd"], d_ff=hf.get("n_inner"),
                dropout=hf.get("resid_pdrop", 0.1), activation=HF_ACTIVATIONS[act],
                layer_norm_eps=hf.get("layer_norm_epsilon", 1e-5), bias=True,
                tie_weights=hf.get("tie_word_embeddings", True))


def hf_name_map(n_layer: int) -> dict[str, tuple[str, bool]]:
    """Our parameter name -> (Hugging Face name, transpose?). GPT-2's Conv1D stores W as (in, out)."""
    names = {"wte.weight": ("wte.weight", False), "wpe.weight": ("wpe.weight", False),
             "ln_f.weight": ("ln_f.weight", False), "ln_f.bias": ("ln_f.bias", False)}
    for i in range(n_layer):
        ours, hf = f"h.{i}.", f"h.{i}."
        names.update({
            ours + "ln_1.weight": (hf + "ln_1.weight", False), ours + "ln_1.bias": (hf + "ln_1.bias", False),
            ours + "attn.in_proj_weight": (hf + "attn.c_attn.weight", True),  # [W_q; W_k; W_v]
            ours + "attn.in_proj_bias": (hf + "attn.c_attn.bias", False),
            ours + "attn.out_proj.weight": (hf + "attn.c_proj.weight", True),  # W_o
            ours + "attn.out_proj.bias": (hf + "attn.c_proj.bias", False),
            ours + "ln_2.weight": (hf + "ln_2.weight", False), ours + "ln_2.bias": (hf + "ln_2.bias", False),
            ours + "mlp.0.weight": (hf + "mlp.c_fc.weight", True), ours + "mlp.0.bias": (hf + "mlp.c_fc.bias", False),
            ours + "mlp.3.weight": (hf + "mlp.c_proj.weight", True),
            ours + "mlp.3.bias": (hf + "mlp.c_proj.bias", False),
        })
    return names


def load_hf_gpt2_state_dict(model: GPT, hf_state: dict[str, torch.Tensor]) -> GPT:
    """Copy a Hugging Face GPT-2 state_dict into ``model``; every weight on both sides must be used."""
    # GPT2LMHeadModel prefixes "transformer."; GPT2Model does not. The head is tied to wte.
    hf_state = {k.removeprefix("transformer."): v for k, v in hf_state.items()}
    head = hf_state.pop("lm_head.weight", None)
    hf_state = {k: v for k, v in hf_state.items() if not k.endswith(HF_IGNORED_SUFFIXES)}
    mapping = hf_name_map(model.config.n_layer)
    ours = {k: v for k, v in model.state_dict().items() if k != "lm_head.weight" or not model.config.tie_weights}
    if not model.config.tie_weights:
        if head is None:
            raise CheckpointError("GPT-2 checkpoint has untied embeddings but no lm_head.weight")
        hf_state["lm_head.weight"] = head
        mapping["lm_head.weight"] = ("lm_head.weight", False)
    missing = sorted(k for k in ours if k not in mapping or mapping[k][0] not in hf_state)
    unused = sorted(set(hf_state) - {hf for hf, _ in mapping.values()})
    if missing or unused:
        raise CheckpointError(f"GPT-2 checkpoint does not fit: missing {missing[:5]}, unexpected {unused[:5]}")
    new_state = {}
    for name, target in ours.items():
        hf, transpose = mapping[name]
        w = hf_state[hf].t() if transpose else hf_state[hf]
        if w.shape != target.shape:
            raise CheckpointError(f"GPT-2 weight {hf} has shape {tuple(w.shape)}, expected {tuple(target.shape)}")
        new_state[name] = w
    model.load_state_dict(new_state, strict=False)  # lm_head.weight is wte.weight when tied
    if head is not None and model.config.tie_weights and not torch.equal(head, model.wte.weight.detach().cpu()):
        raise CheckpointError("GPT-2 checkpoint's lm_head.weight differs from wte.weight, but tie_weights=True")
    return model


@register_checkpoint_format("gpt2")
def load_hf_gpt2(path: Path, hf_config: dict, **overrides) -> GPT:
    """A Hugging Face GPT-2 directory (config.json + model.safetensors or pytorch_model.bin) as our GPT."""
    model = create_model("gpt", **{**gpt_config_from_hf(hf_config), **overrides})
    return load_hf_gpt2_state_dict(model, load_state_dict(path))
