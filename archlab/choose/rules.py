"""The texts' rule of thumb as one table: which architecture fits which kind of data, and why.

    images -> CNN (or ViT);  sequences -> LSTM/GRU (or a Transformer);  text -> Transformer;
    tabular data -> gradient boosting

Each row of ``RULES`` names a kind of data, a rank (1 = the texts' answer), a family, a registered
model, the conditions on measured properties under which the row applies, and the reason -- a
template over the measured properties, so every reason cites what was measured. For each family
the first row whose conditions hold is used (LeNet-5 for 28 or 32 pixel images, the CIFAR ResNet-20
for other small ones, ResNet-18 for large ones). ``NOTES`` are further reasons that hold under their
conditions. ``SIZERS`` give each model settings sized to the data (flat ``--set`` keys: model,
trainer and task fields), ready for ``archlab train``.

A condition is ``(property, op, value)`` with op one of ``< <= > >= == != in``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Any, Callable

from archlab.choose.profile import Profile
from archlab.errors import ConfigError

FAMILIES = ("cnn", "vit", "mlp", "rnn", "lstm", "gru", "transformer", "boosting")
Condition = tuple[str, str, Any]


@dataclass(frozen=True)
class Rule:
    kind: str
    rank: int
    family: str
    model: str
    reason: str
    when: tuple[Condition, ...] = ()


@dataclass(frozen=True)
class Note:
    kind: str
    reason: str
    when: tuple[Condition, ...] = ()


RULES: tuple[Rule, ...] = (
    # Images: a grid with local structure.
    Rule("images", 1, "cnn", "lenet5",
         "{n_images:,} images of {height}x{width} pixels: a grid with local structure -> convolution shares weights "
         "across positions (LeNet-5, made for {side}x{side} digits)", (("height", "in", (28, 32)), ("square", "==", True))),
    Rule("images", 1, "cnn", "resnet20",
         "{n_images:,} images of {height}x{width} pixels: a grid with local structure -> convolution shares weights "
         "across positions (a CIFAR ResNet-20 for small images)", (("side", "<=", 64),)),
    Rule("images", 1, "cnn", "resnet18",
         "{n_images:,} images of {height}x{width} pixels: a grid with local structure -> convolution shares weights "
         "across positions (ResNet-18)"),
    Rule("images", 2, "vit", "vit_tiny",
         "a ViT reads {height}x{width} images as patch tokens; it has to learn locality from the {n_train:,} "
         "training images that a CNN has built in", (("square", "==", True),)),
    Rule("images", 3, "mlp", "mlp",
         "an MLP flattens {pixels:,} pixels and forgets which are neighbours: the dense baseline"),
    Rule("images", 4, "lstm", "rnn_classifier",
         "an LSTM can read an image row by row ({height} steps of {width} pixels), but rows are not a time axis"),
    # Series: values in time order.
    Rule("series", 1, "lstm", "lstm_forecaster",
         "{length:,} {frequency} values in time order (lag-1 autocorrelation {acf1:.2f}): recurrence carries a state "
         "h_t along time, and LSTM gates keep it over long gaps"),
    Rule("series", 2, "gru", "gru_forecaster",
         "a GRU is the same recurrence with two gates instead of three: fewer weights for {train_length:,} training "
         "values"),
    Rule("series", 3, "cnn", "cnn_forecaster",
         "causal dilated 1-D convolutions read a fixed window of the {length:,} values, fast and parallel"),
    Rule("series", 4, "transformer", "transformer_forecaster",
         "attention over the window relates any two steps directly, but has no order of its own and little data "
         "({train_length:,} training values)"),
    Rule("series", 5, "mlp", "mlp_forecaster", "an MLP reads the window as an unordered vector: the dense baseline"),
    # Tables: columns without order or neighbourhood.
    Rule("tabular", 1, "boosting", "lightgbm",
         "{rows:,} rows x {columns_text}, no order between columns -> gradient boosting: trees split each column on "
         "its own scale, one column at a time"),
    Rule("tabular", 2, "mlp", "tabular_mlp",
         "an MLP fits one smooth function of all {columns} columns at once (categories through learned "
         "embeddings)"),
    Rule("tabular", 3, "transformer", "ft_transformer",
         "an FT-Transformer makes each of the {columns} columns a token and lets columns attend to each other; "
         "the strongest network on tables in its paper, and the slowest here"),
    # Sequence to sequence.
    Rule("text-pairs", 1, "transformer", "transformer",
         "{pairs:,} pairs of sequences ({source_length:.1f} -> {target_length:.1f} {unit}): attention lets every "
         "output {unit_one} look at every input {unit_one}, and trains in parallel over the sequence"),
    Rule("text-pairs", 2, "lstm", "seq2seq_rnn",
         "an LSTM encoder-decoder with attention reads {source_length:.1f} {unit} one step at a time"),
    Rule("text-pairs", 3, "gru", "seq2seq_rnn",
         "a GRU encoder-decoder with attention: the same, with a lighter cell"),
    # Text classification.
    Rule("text-labels", 1, "transformer", "bert",
         "{examples:,} texts of {mean_tokens:.1f} {unit} in {classes} classes: self-attention relates every token to "
         "every other in one step (a small BERT encoder)"),
    Rule("text-labels", 2, "lstm", "rnn_classifier",
         "an LSTM reads the {mean_tokens:.1f} {unit} one by one and classifies its final state"),
    Rule("text-labels", 3, "gru", "rnn_classifier", "a GRU classifier: the same with a lighter cell"),
    # Language modelling.
    Rule("text", 1, "transformer", "gpt",
         "{chars:,} characters of text: a causal Transformer predicts each next character from all before it "
         "(masked attention never sees the future)"),
    Rule("text", 2, "lstm", "lstm_lm",
         "an LSTM language model carries the context in its state, one character at a time"),
    Rule("text", 3, "gru", "gru_lm", "a GRU language model: the same with a lighter cell"),
)

NOTES: tuple[Note, ...] = (
    Note("images", "{n_images:,} images is little data for a ViT: without the convolution's built-in locality "
                   "it needs many more examples", (("n_images", "<", 20_000),)),
    Note("series", "a season of {season} steps ({season_source}): the window covers three of them",
         (("season", ">", 0),)),
    Note("series", "only {length:,} values: small models (a hidden state of 32) and short training",
         (("length", "<", 2_000),)),
    Note("tabular", "the target {target!r} has {classes} classes (the smallest {smallest_class_share:.0%} of rows): "
                    "classification, scored by accuracy and log-loss", (("objective", "==", "classification"),)),
    Note("tabular", "the target {target!r} is a number with {target_distinct:,} distinct values: regression, "
                    "scored by RMSE and R^2", (("objective", "==", "regression"),)),
    Note("tabular", "{missing_cells:,} missing cells ({missing_percent:.1f}%) in {missing_columns} column(s): filled "
                    "from the training rows, with a was-missing column each", (("missing_cells", ">", 0),)),
    Note("tabular", "{categorical} categorical column(s), up to {max_cardinality} values: trees split on sets of "
                    "categories, the networks learn an embedding per category", (("categorical", ">", 0),)),
    Note("tabular", "{rows:,} rows is little data for a network: trees need no learning-rate schedule and stop "
                    "when the validation rows stop improving", (("rows", "<", 10_000),)),
    Note("text-labels", "single words ({mean_chars:.1f} characters on average): read character by character",
         (("unit", "==", "characters"),)),
    Note("text", "{chars:,} characters is little data for a Transformer: an LSTM may do as well at this size",
         (("chars", "<", 300_000),)),
)

OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne,
    "in": lambda a, b: a in b,
}


def holds(when: tuple[Condition, ...], props: dict[str, Any]) -> bool:
    """True when every condition holds for the measured properties."""
    for name, op, value in when:
        if name not in props:
            raise ConfigError(f"rule condition on {name!r}: not a measured property ({', '.join(sorted(props))})")
        if not OPS[op](props[name], value):
            return False
    return True


# --------------------------------------------------------------------------------------------
# Settings sized to the data: flat --set keys (model, trainer and task fields)


def _clamp(x: float, lo: int, hi: int) -> int:
    return int(max(lo, min(hi, round(x))))


def _steps(epochs: float, n: int, batch: int, lo: int, hi: int) -> int:
    return _clamp(epochs * n / batch, lo, hi)


def _image_train(p: dict, lr: float = 2e-3) -> dict[str, Any]:
    batch = _clamp(p["n_train"] / 20, 16, 64)
    return {"batch_size": batch, "lr": lr, "warmup_steps": 20, "weight_decay": 0.01,
            "shift": 2 if p["side"] >= 16 else 0, "max_steps": _steps(15, p["n_train"], batch, 200, 5000)}


def _patch(side: int) -> int:
    """The largest patch of at most 16 pixels that leaves at least 4 patches per side."""
    return max(q for q in range(1, 17) if side % q == 0 and side // q >= 4) if side >= 4 else 1


def _series_window(p: dict) -> dict[str, Any]:
    season, train = p["season"], p["train_length"]
    context = _clamp(3 * season if season else 36, 4, max(4, train // 4))
    horizon = _clamp(season if season else 12, 1, max(1, train // 8))
    windows = train - context - horizon + 1
    return {"context_length": context, "horizon": horizon, "batch_size": _clamp(windows // 2, 4, 64), "lr": 1e-2,
            "warmup_steps": 20, "weight_decay": 0.0, "max_steps": 600 if p["length"] < 2000 else 2000}


def _table_net(p: dict) -> dict[str, Any]:
    train = p["rows"] * 0.7
    batch = _clamp(train / 8, 8, 128)
    return {"batch_size": batch, "lr": 3e-3, "warmup_steps": 10, "weight_decay": 1e-4,
            "max_steps": _steps(100, train, batch, 200, 5000)}


def _pairs_train(p: dict) -> dict[str, Any]:
    return {"batch_size": 128 if p["pairs"] > 10_000 else 32, "lr": 3e-3, "warmup_steps": 20,
            "max_steps": _steps(10, p["pairs"], 128 if p["pairs"] > 10_000 else 32, 300, 20_000)}


def _text_train(p: dict) -> dict[str, Any]:
    return {"batch_size": 32, "lr": 2e-3, "warmup_steps": 20, "max_steps": _steps(10, p["examples"], 32, 200, 10_000)}


def _lm_train(p: dict) -> dict[str, Any]:
    return {"batch_size": 32, "lr": 2e-3, "warmup_steps": 20, "block_size": 128,
            "max_steps": _steps(2, p["chars"], 32 * 128, 200, 10_000)}


SIZERS: dict[tuple[str, str], Callable[[dict], dict[str, Any]]] = {
    ("images", "lenet5"): lambda p: {"input_size": p["side"], "activation": "relu", "pooling": "max", **_image_train(p)},
    ("images", "resnet20"): lambda p: _image_train(p, lr=1e-3),
    ("images", "resnet18"): lambda p: _image_train(p, lr=1e-3),
    # image_size with patch_size: the patch must divide the side the config is checked with
    ("images", "vit_tiny"): lambda p: {"image_size": p["side"], "patch_size": _patch(p["side"]), "num_layers": 4,
                                       "num_heads": 4, "hidden_dim": 64, "mlp_dim": 128, "dropout": 0.0,
                                       **_image_train(p)},
    ("images", "mlp"): lambda p: {"hidden": (256, 128) if p["pixels"] >= 256 else (128, 64), "dropout": 0.1,
                                  **_image_train(p)},
    ("images", "rnn_classifier"): lambda p: {"cell": "lstm", "hidden_size": 128, **_image_train(p)},
    ("series", "lstm_forecaster"): lambda p: {"hidden_size": 32, **_series_window(p)},
    ("series", "gru_forecaster"): lambda p: {"hidden_size": 32, **_series_window(p)},
    ("series", "cnn_forecaster"): lambda p: {"hidden_size": 32, **_series_window(p)},
    ("series", "transformer_forecaster"): lambda p: {"hidden_size": 32, "num_heads": 4, **_series_window(p)},
    ("series", "mlp_forecaster"): lambda p: {"hidden_size": 64, **_series_window(p)},
    ("tabular", "lightgbm"): lambda p: {"num_leaves": _clamp(2 ** math.floor(math.log2(max(p["rows"] / 20, 1))), 4, 31),
                                        "min_child_samples": _clamp(p["rows"] / 50, 5, 20), "learning_rate": 0.05,
                                        "num_rounds": 1000},
    ("tabular", "tabular_mlp"): lambda p: {"hidden": (128, 64) if p["rows"] >= 2000 else (64, 32), "dropout": 0.1,
                                           "embed_dim": _clamp(p["max_cardinality"] / 2, 4, 16), **_table_net(p)},
    ("tabular", "ft_transformer"): lambda p: {"d_token": 32 if p["rows"] < 5000 else 64, "num_layers": 2,
                                              "num_heads": 4, "dropout": 0.1, **_table_net(p)},
    ("text-pairs", "transformer"): lambda p: {"d_model": 128, "nhead": 4, "num_encoder_layers": 2,
                                              "num_decoder_layers": 2, "dim_feedforward": 512, "dropout": 0.1,
                                              **_pairs_train(p), "lr": 2e-3, "warmup_steps": 40},
    ("text-pairs", "seq2seq_rnn"): lambda p: {"embed_dim": 64, "hidden_size": 256, "num_layers": 1, "dropout": 0.0,
                                              **_pairs_train(p)},
    ("text-labels", "bert"): lambda p: {"head": "classification", "hidden_size": 64, "num_layers": 2, "num_heads": 4,
                                        "intermediate_size": 256, "dropout": 0.1, "attention_dropout": 0.1,
                                        **_text_train(p)},
    ("text-labels", "rnn_classifier"): lambda p: {"embed_dim": 64, "hidden_size": 128, **_text_train(p)},
    ("text", "gpt"): lambda p: {"n_layer": 4, "n_head": 4, "d_model": 128, "dropout": 0.1, **_lm_train(p)},
    ("text", "lstm_lm"): lambda p: {"embed_dim": 128, "hidden_size": 256, "num_layers": 2, **_lm_train(p)},
    ("text", "gru_lm"): lambda p: {"embed_dim": 128, "hidden_size": 256, "num_layers": 2, **_lm_train(p)},
}
# The families that share a model name tell it which cell to use.
CELLS = {"lstm": "lstm", "gru": "gru", "rnn": "rnn"}


# --------------------------------------------------------------------------------------------
# Applying the table


@dataclass
class Candidate:
    family: str
    model: str
    settings: dict[str, Any]   # sized to the data, including what the task needs to read it
    reason: str

    def as_json(self) -> dict[str, str]:
        return {"family": self.family, "model": self.model}


@dataclass
class Recommendation:
    recommended: Candidate
    runner_ups: list[Candidate]
    notes: list[str]

    @property
    def candidates(self) -> list[Candidate]:
        return [self.recommended, *self.runner_ups]

    @property
    def reasons(self) -> list[str]:
        return [self.recommended.reason, *self.notes,
                *(f"runner-up {c.model} ({c.family}): {c.reason}" for c in self.runner_ups)]


def candidate(profile: Profile, rule: Rule) -> Candidate:
    props = {"unit_one": _singular(profile.properties.get("unit", "")), **profile.properties}
    settings = dict(SIZERS[(rule.kind, rule.model)](props))
    if rule.model in ("rnn_classifier", "seq2seq_rnn") and rule.family in CELLS:
        settings["cell"] = CELLS[rule.family]
    return Candidate(rule.family, rule.model, {**profile.task_settings, **settings}, rule.reason.format(**props))


def _singular(unit: str) -> str:
    return {"words": "word", "characters": "character", "symbols": "symbol"}.get(unit, unit)


def recommend(profile: Profile) -> Recommendation:
    """The candidates of ``profile``'s kind in rank order (the first row of each family that holds)."""
    chosen, seen = [], set()
    for rule in sorted((r for r in RULES if r.kind == profile.kind), key=lambda r: r.rank):
        if rule.family not in seen and holds(rule.when, profile.properties):
            seen.add(rule.family)
            chosen.append(candidate(profile, rule))
    if not chosen:
        raise ConfigError(f"no rule fits {profile.kind} data {profile.data!r}")
    notes = [n.reason.format(**profile.properties) for n in NOTES
             if n.kind == profile.kind and holds(n.when, profile.properties)]
    return Recommendation(chosen[0], chosen[1:], notes)
