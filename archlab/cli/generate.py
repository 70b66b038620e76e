"""``archlab generate``: continue a prompt with a language model trained by ``archlab train --task lm``
(or a Hugging Face GPT-2 folder).

Loads the model (GPT or RNN language model) and the tokenizer saved beside it, encodes the prompt,
and prints the prompt followed by ``--max-new-tokens`` generated tokens. Sampling draws from the
softmax of the logits divided by ``--temperature``, optionally cut to the ``--top-k`` most likely
tokens and / or the nucleus of probability ``--top-p``; ``--greedy`` takes the most likely token
every time. The same ``--seed`` gives the same text.
"""

from __future__ import annotations

import math
import sys

DEFAULT_PROMPT = "\n"
MAX_NEW_TOKENS = 100_000  # a bound, so that a typo cannot ask for hours of generation


HELP = "continue a prompt with a trained language model"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("generate", help=HELP, description=__doc__)
    p.add_argument("--checkpoint", required=True, metavar="DIR",
                   help="a run directory of `archlab train --task lm`, one of its checkpoints/step-N, or a Hugging "
                        "Face GPT-2 folder (config.json, weights, tokenizer.json or vocab.json + merges.txt)")
    p.add_argument("--prompt", help="the text to continue (default: a newline)")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="tokens to generate (default 200)")
    p.add_argument("--temperature", type=float, default=1.0, metavar="T", help="softmax temperature (default 1)")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K most likely tokens only")
    p.add_argument("--top-p", type=float, metavar="P", help="sample from the smallest set of tokens of probability >= P")
    p.add_argument("--greedy", action="store_true", help="always take the most likely token (no sampling)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the sampling (default 0)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    p.set_defaults(func=run)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """The prompt's ids; characters (or text) the tokenizer cannot encode are a clear error."""
    from archlab.data import CharTokenizer
    from archlab.errors import ConfigError

    if isinstance(tokenizer, CharTokenizer) and tokenizer.unk_id is None:
        unknown = sorted(set(prompt) - set(tokenizer.tokens))
        if unknown:
            known = "".join(t for t in tokenizer.tokens if t not in tokenizer.specials)
            raise ConfigError(f"--prompt has characters the model was not trained on: "
                              f"{', '.join(repr(c) for c in unknown)}; it knows the {len(known)} characters {known!r}")
    try:
        ids = tokenizer.encode(prompt)
    except ConfigError as e:
        raise ConfigError(f"--prompt {prompt[:40]!r} cannot be encoded by the model's tokenizer: {e}") from e
    if not ids:
        raise ConfigError(f"--prompt {prompt!r} encodes to no tokens; give a prompt the tokenizer can read")
    return ids


def generate_text(checkpoint, prompt: str | None = None, *, max_new_tokens: int = 200, temperature: float = 1.0,
                  top_k: int | None = None, top_p: float | None = None, greedy: bool = False, seed: int = 0,
                  device: str = "auto") -> tuple[str, str]:
    """(prompt, continuation) of the language model saved in ``checkpoint``."""
    import torch

    from archlab.errors import check
    from archlab.train import load_for_generation
    from archlab.utils.runtime import resolve_device

    check(0 <= max_new_tokens <= MAX_NEW_TOKENS,
          f"--max-new-tokens must be in [0, {MAX_NEW_TOKENS:,}], got {max_new_tokens}")
    check(math.isfinite(temperature) and temperature > 0, f"--temperature must be a finite number > 0, got {temperature}")
    check(seed >= 0, f"--seed must be >= 0, got {seed}")
    check(top_k is None or top_k >= 1, f"--top-k must be >= 1, got {top_k}")
    check(top_p is None or 0.0 < top_p <= 1.0, f"--top-p must be in (0, 1], got {top_p}")  # NaN fails too
    model, tokenizer = load_for_generation(checkpoint)
    prompt = DEFAULT_PROMPT if prompt is None else prompt
    ids = encode_prompt(tokenizer, prompt)
    block_size = model.max_context()
    check(block_size is None or len(ids) <= block_size,
          f"--prompt is {len(ids)} tokens long, the model reads at most "
          f"{model.context_field}={block_size} tokens")
    dev = resolve_device(device)
    model = model.to(dev)
    generator = torch.Generator(device=dev).manual_seed(seed)
    with torch.no_grad():
        out = model.generate(torch.tensor([ids], device=dev), max_new_tokens, do_sample=not greedy,
                             temperature=temperature, top_k=top_k, top_p=top_p, generator=generator)
    return prompt, tokenizer.decode(out[0, len(ids):].tolist())


def run(args) -> int:
    prompt, continuation = generate_text(
        args.checkpoint, args.prompt, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
        top_k=args.top_k, top_p=args.top_p, greedy=args.greedy, seed=args.seed, device=args.device)
    sys.stdout.write(prompt + continuation + "\n")
    return 0
