"""causal_mask: masked self-attention never sees the future.

A language model predicts token t+1 from tokens 1..t. The causal mask sets the attention scores
of every later position to -inf, so after the softmax their weights are exactly 0.

Exact check: a GPT (float64) reads a block of text; every token after position t is then
replaced, and the outputs at positions <= t are compared. With the mask they are identical (the
future never entered them); without it (``causal=False``) they change.

Training: two small GPTs (d_model 64, 2 layers, 4 heads), identical but for the mask, are trained
by the ``lm`` task on ``cmudict-words`` (the CMU dictionary's words, character by character).
The task's validation loss is teacher-forced: the whole block goes in at once, so the model
without the mask can read the next character at position t+1 and learns to copy it -- its loss
falls towards 0. At generation time there is no t+1 to read: the "generation loss" scores every
prediction from the prefix alone (the block cut after position t), as text is written. With the
mask both losses are the same number; without it the second one is far worse, and greedy
generation shows it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from archlab.experiments.core import NO_VALIDATION, Check, Column, Experiment, Lab, estimate, register_experiment

ARMS = {"causal": "GPT, causal mask", "open": "GPT, no mask"}
GPT_TINY = {"d_model": 64, "n_layer": 2, "n_head": 4, "dropout": 0.0}


def future_change(model, block: torch.Tensor, t: int, vocab_size: int, seed: int = 0) -> float:
    """max |logits[:, :t+1] after replacing tokens t+1.. - before|, in float64."""
    g = torch.Generator().manual_seed(seed)
    changed = block.clone()
    changed[:, t + 1:] = torch.randint(vocab_size, changed[:, t + 1:].shape, generator=g)
    model = model.double().eval()
    with torch.no_grad():
        before, after = model(block)[:, :t + 1], model(changed)[:, :t + 1]   # (B, t + 1, V)
    return float((after - before).abs().max())


def generation_loss(model, blocks: torch.Tensor) -> float:
    """Mean cross-entropy of predicting token t+1 from tokens 1..t alone, over every t of ``blocks``
    (B, T + 1): the block is cut after t, so nothing later can be read."""
    model = model.float().eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for t in range(blocks.shape[1] - 1):
            logits = model(blocks[:, :t + 1])[:, -1]                                # (B, V)
            total += float(F.cross_entropy(logits, blocks[:, t + 1], reduction="sum"))
            count += blocks.shape[0]
    return total / count


@register_experiment
class CausalMask(Experiment):
    name = "causal_mask"
    title = "The causal mask: no peeking at the future"
    claim = ("Masked self-attention never sees the future: later tokens cannot change earlier outputs. Without the "
             "mask a language model learns to copy the next token and fails when it has to generate.")
    texts = ("000", "001")
    source = ("Seed 000: \"Masked Self-Attention (The 'No Cheating' Rule) ... When generating text, the model shouldn't "
              "see the future. Mechanism: We apply a 'Mask' (setting scores to negative infinity) to all future "
              "words\"; \"The probability of attending to future words becomes 0.\" Seed 001: \"Masked "
              "Self-Attention: Prevents future token influence.\"")
    reference = ("Vaswani et al. 2017, Section 3.2.3: in the decoder \"we need to prevent leftward information flow ... "
                 "by masking out (setting to -inf) all values in the input of the softmax which correspond to illegal "
                 "connections\"; Radford et al. 2018 (GPT) train the masked decoder alone as a language model.")
    criterion = ("With the mask, outputs at positions <= t do not change when later tokens do (max change <= 1e-12, "
                 "float64); without it they change (> 1e-3). Trained without the mask, the model's teacher-forced "
                 "loss is lower than the masked model's (it copies the next token) and its generation loss higher.")
    seconds = (20.0, 80.0)

    def protocol(self, size: str) -> dict[str, Any]:
        p = {"data": "cmudict-words", "block_size": 32, "batch_size": 32, "lr": 3e-3, "model": dict(GPT_TINY),
             "eval_blocks": 32, "prompt_chars": 12, "generate": 40}
        if size == "full":
            p.update(steps=1500)
        elif size == "quick":
            p.update(steps=250, eval_blocks=16)
        else:
            p.update(steps=3, block_size=16, batch_size=8, model={**GPT_TINY, "d_model": 16, "n_layer": 1},
                     eval_blocks=4, prompt_chars=8, generate=8)
        return p

    def measure(self, lab: Lab, p: dict[str, Any]) -> dict[str, Any]:
        from archlab.tasks import get_task

        lab.expect(len(ARMS) * len(lab.seeds))
        lm = get_task("lm")
        task = lm(lm.Config(block_size=p["block_size"]), p["data"])
        x, y = next(iter(task.eval_batches(p["eval_blocks"])))
        blocks = torch.cat([x, y[:, -1:]], dim=1)  # (B, T + 1): every input token and the last target
        out: dict[str, Any] = {k: {arm: [] for arm in ARMS} for k in ("future_change", "teacher_forced_loss",
                                                                       "generation_loss")}
        samples: dict[str, str] = {}
        prompt = blocks[:1, :p["prompt_chars"]]
        for seed in lab.seeds:
            for arm in ARMS:
                trainer = {"batch_size": p["batch_size"], "lr": p["lr"], "max_steps": p["steps"],
                           "warmup_steps": max(1, p["steps"] // 10), "log_every": max(1, p["steps"] // 10)}
                run = lab.train(f"{arm}-seed{seed}", task="lm", model="gpt", data=p["data"], trainer=trainer,
                                task_settings={**NO_VALIDATION, "block_size": p["block_size"]},
                                model_settings={**p["model"], "causal": arm == "causal"}, seed=seed)
                model = run.load_model()
                out["teacher_forced_loss"][arm].append(run.metrics["loss"])
                out["generation_loss"][arm].append(generation_loss(model, blocks))
                out["future_change"][arm].append(future_change(model, blocks[:, :-1], p["block_size"] // 2,
                                                                task.tokenizer.vocab_size, seed))
                if seed == lab.seeds[0]:
                    generated = model.float().generate(prompt, p["generate"], use_cache=False)  # greedy
                    samples[arm] = task.tokenizer.decode(generated[0].tolist())
        return {**out, "samples": samples, "prompt": task.tokenizer.decode(prompt[0].tolist()),
                "uniform_loss": math.log(task.tokenizer.vocab_size)}

    def judge(self, m, p) -> list[Check]:
        tf, gen = m["teacher_forced_loss"], m["generation_loss"]
        return [
            Check("with the mask: change of earlier outputs when later tokens change", estimate(m["future_change"]["causal"]),
                  "<=", 1e-12),
            Check("without the mask: change of earlier outputs", estimate(m["future_change"]["open"]), ">", 1e-3),
            Check("teacher-forced loss, masked minus unmasked (the unmasked one copies)",
                  estimate(tf["causal"]) - estimate(tf["open"]), ">", 0.0),
            Check("generation loss, unmasked minus masked (the unmasked one cannot generate)",
                  estimate(gen["open"]) - estimate(gen["causal"]), ">", 0.0),
        ]

    def table(self, m, p):
        columns = [Column("model", "model"), Column("future_change", "change of earlier outputs", "{:.2e}"),
                   Column("teacher_forced_loss", "teacher-forced loss", "{:.3f}"),
                   Column("generation_loss", "generation loss", "{:.3f}")]
        rows = [{"model": label, **{k: estimate(m[k][arm]) for k in ("future_change", "teacher_forced_loss",
                                                                        "generation_loss")}}
                for arm, label in ARMS.items()]
        rows.append({"model": "uniform guess", "teacher_forced_loss": m["uniform_loss"],
                     "generation_loss": m["uniform_loss"]})
        return columns, rows

    def notes(self, m, p) -> list[str]:
        out = [f"losses in nats per character on {p['eval_blocks']} validation blocks of {p['block_size']} characters "
               f"after {p['steps']} steps; outputs compared at positions <= {p['block_size'] // 2} after the later "
               "tokens are replaced at random"]
        for arm, label in ARMS.items():
            if arm in m["samples"]:
                text = m["samples"][arm]
                prompt = m["prompt"]
                out.append(f"{label}, greedy: {prompt!r} + {text[len(prompt):]!r}")
        return out

    def plot(self, m, p, plt):
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = list(ARMS.values())
        x = range(len(labels))
        for offset, key, name in ((-0.2, "teacher_forced_loss", "teacher-forced (next token visible to the unmasked)"),
                                  (0.2, "generation_loss", "generation (prefix only)")):
            ests = [estimate(m[key][arm]) for arm in ARMS]
            ax.bar([i + offset for i in x], [e.mean for e in ests], 0.4, yerr=[e.half_width for e in ests], capsize=3,
                   label=name)
        ax.axhline(m["uniform_loss"], color="grey", linestyle=":", label="uniform guess")
        ax.set(xticks=list(x), xticklabels=labels, ylabel="cross-entropy (nats per character)",
               ylim=(0, 1.45 * m["uniform_loss"]), title="What each model learned")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig
