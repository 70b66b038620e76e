"""``archlab demo``: train a tiny character-level GPT for a few seconds, then let it write.

Everything the demo needs ships with archlab: the text below, the model (``archlab.models.gpt``)
and a small training loop (AdamW on next-character prediction). It prints the loss before and after
training and two continuations of a prompt: greedy, and sampled with temperature and top-k.
"""

from __future__ import annotations

import math
import time

from archlab.errors import check

DESCRIPTION = (
    "Train a tiny character-level GPT on a short text bundled with archlab (a few paragraphs about "
    "CNNs, RNNs and Transformers) for a few seconds, with no download, then print the loss before and "
    "after and a greedy and a sampled continuation of a prompt."
)

TEXT = """\
Deep learning has three great families of architectures, and each one fits a kind of data.

Convolutional networks read grids. An image is a grid of pixels, and a convolution slides a small
filter across it, the same weights at every position, so a network learns an edge detector once
and finds edges everywhere. Pooling shrinks the feature maps, and deeper layers combine edges into
textures, parts and objects. Weight sharing is why a convolutional network needs far fewer
parameters than a dense one, and why it tolerates a cat that moves a little to the left.

Recurrent networks read sequences. They keep a hidden state and update it one step at a time, so
the state after the last word is a summary of the whole sentence. A simple recurrent network
forgets quickly, because its gradients shrink as they travel back through time. The long
short-term memory adds a cell state and three gates, a forget gate, an input gate and an output
gate, which decide what to keep, what to write and what to show. The gated recurrent unit does
the same with two gates. Recurrent networks still fit time series, such as the weather or the
price of a stock, where the next value depends on the values before it.

Transformers read everything at once. Each word asks a question, the query, of every other word,
which answers with a key and offers a value. Attention is the softmax of the queries times the
keys, scaled by the square root of their size, and it mixes the values by those weights. Many
heads attend in parallel, and a feed-forward layer follows each attention layer, with residual
connections and layer normalisation around both. Because attention has no sense of order, a
positional encoding tells each word where it stands. A decoder masks the future, so that a word
never looks at the words that come after it, and a language model learns to predict the next
word. That is how a model writes text, one token at a time, each new token fed back as input.

Pick the architecture that fits the structure of the data: convolutions for images, recurrence or
attention for sequences, and attention for language.
"""


HELP = "train a tiny character-level GPT for a few seconds and let it write"  # the line `archlab --help` shows


def register(sub) -> None:
    p = sub.add_parser("demo", help=HELP, description=DESCRIPTION)
    p.add_argument("--seconds", type=float, default=20.0, help="training time (default 20)")
    p.add_argument("--prompt", default="Attention ", help="text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200, help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--top-k", type=int, default=10, help="sample among the k likeliest characters (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.set_defaults(func=run)


def _batch(data: torch.Tensor, block: int, batch: int, generator: torch.Generator):
    """``batch`` random windows of ``block`` characters and, shifted by one, their next characters."""
    import torch

    starts = torch.randint(0, data.numel() - block - 1, (batch,), generator=generator)
    x = torch.stack([data[s: s + block] for s in starts.tolist()])  # (B, T)
    y = torch.stack([data[s + 1: s + block + 1] for s in starts.tolist()])  # (B, T)
    return x, y


def _loss(model, x, y) -> torch.Tensor:
    import torch.nn.functional as F

    logits = model(x)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())


def run(args) -> int:
    import torch  # here, not at the top: `archlab --help` must not wait for torch

    from archlab.registry import create_model
    from archlab.utils.runtime import count_parameters, eval_mode, resolve_device, seed_everything

    check(0 < args.seconds <= 3600, f"--seconds must be in (0, 3600], got {args.seconds}")  # NaN fails too
    check(0 <= args.max_new_tokens <= 100_000, f"--max-new-tokens must be in [0, 100,000], got {args.max_new_tokens}")
    check(math.isfinite(args.temperature) and args.temperature > 0,
          f"--temperature must be a finite number > 0, got {args.temperature}")
    check(args.top_k >= 1, f"--top-k must be >= 1, got {args.top_k}")
    from tqdm import tqdm

    seed_everything(args.seed)
    device = resolve_device(args.device)
    chars = sorted(set(TEXT))
    stoi = {ch: i for i, ch in enumerate(chars)}
    unknown = sorted(set(args.prompt) - set(stoi))
    check(not unknown, f"--prompt may only use characters of the demo text; got {''.join(unknown)!r}")
    data = torch.tensor([stoi[ch] for ch in TEXT], dtype=torch.long)
    block, batch = 64, 32
    model = create_model("gpt", vocab_size=len(chars), block_size=block, n_layer=2, n_head=4, d_model=64,
                         dropout=0.0).to(device)
    print(f"a {count_parameters(model):,}-parameter GPT learns {len(TEXT):,} characters "
          f"({len(chars)} distinct) for {args.seconds:g} s on {device}")

    g = torch.Generator().manual_seed(args.seed)
    eval_batches = [tuple(t.to(device) for t in _batch(data, block, batch, g)) for _ in range(4)]

    @torch.no_grad()
    def evaluate() -> float:
        with eval_mode(model):
            return sum(_loss(model, x, y).item() for x, y in eval_batches) / len(eval_batches)

    before = evaluate()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    start, steps = time.monotonic(), 0
    with tqdm(total=round(args.seconds), desc="training", leave=False,
              bar_format="{desc}: {bar} {n}/{total} s{postfix}") as bar:
        while (elapsed := time.monotonic() - start) < args.seconds:
            x, y = (t.to(device) for t in _batch(data, block, batch, g))
            loss = _loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            steps += 1
            bar.set_postfix(loss=f"{loss.item():.3f}", step=steps)
            bar.update(min(round(elapsed), bar.total) - bar.n)
    after = evaluate()
    print(f"loss before: {before:.3f}  after: {after:.3f}  ({steps} steps; uniform guess: {math.log(len(chars)):.3f})")

    prompt = torch.tensor([[stoi[ch] for ch in args.prompt]], dtype=torch.long, device=device)
    decode = lambda ids: "".join(chars[i] for i in ids.tolist())  # noqa: E731
    greedy = model.generate(prompt, args.max_new_tokens)[0]
    sampled = model.generate(prompt, args.max_new_tokens, do_sample=True, temperature=args.temperature,
                             top_k=args.top_k, generator=torch.Generator(device=device).manual_seed(args.seed))[0]
    print(f"\ngreedy:\n{decode(greedy)}\n")
    print(f"sampled (temperature {args.temperature:g}, top-k {args.top_k}):\n{decode(sampled)}")
    return 0
