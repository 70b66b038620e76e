"""Train the character GPT with nanoGPT's small CPU configuration, in fp32 and in bf16.

    python benchmarks/bench_train_gpt.py                      # 2,000 steps each, as nanoGPT
    python benchmarks/bench_train_gpt.py --max-steps 300 --threads 1

nanoGPT's ``shakespeare_char`` CPU settings: 4 layers, 4 heads, d_model 128, context 64, batch 12,
lr 1e-3 (warmup 100, cosine to 1e-4), AdamW betas (0.9, 0.99), weight decay 0.1, clip 1.0,
dropout 0, 2,000 steps. Both runs go through ``archlab.train`` exactly as ``archlab train
--config configs/gpt_shakespeare_char.yaml`` would, with the same seed.

Reported per precision: training throughput (tokens per second of the training loop, from
``metrics.jsonl``), the wall time of the whole run, the CPU time the process used (steadier than
the wall clock on a shared machine), and the validation loss over the *whole* validation split
(the last 10% of the text, consecutive blocks of 64). The bf16 row also gives its throughput as a
ratio to fp32 measured in the same process.

Data: ``../shared/data/tinyshakespeare.txt`` beside the checkout where present, else the product's
own download (cached, SHA-256 verified).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from archlab.train import RunSpec, load_config_file, train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "gpt_shakespeare_char.yaml"


def find_text(given: str | None) -> str:
    if given:
        return given
    for base in (REPO.parent, REPO.parent.parent):
        path = base / "shared" / "data" / "tinyshakespeare.txt"
        if path.is_file():
            return str(path)
    return "tinyshakespeare"


def run(precision: str, args, data: str, root: Path) -> dict:
    settings = load_config_file(RECIPE)
    for key in ("task", "model", "data"):
        settings.pop(key)
    settings.update(max_steps=args.max_steps, precision=precision, device=args.device, seed=args.seed,
                    eval_every=0, eval_batches=0, save_every=0, log_every=50)
    out = root / precision
    wall, cpu = time.perf_counter(), time.process_time()
    result = train(RunSpec(task="lm", model="gpt", data=data, out=out, settings=settings))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    records = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    train_s = sum(r["elapsed_s"] for r in records if r["split"] == "train")
    tokens = args.max_steps * settings["batch_size"] * settings["block_size"]
    return {"precision": precision, "tokens_per_s": tokens / train_s, "train_s": train_s, "wall_s": wall,
            "cpu_s": cpu, "val_loss": result["metrics"]["loss"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--max-steps", type=int, default=2000)
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--data", help="a text file (default: Tiny Shakespeare)")
    p.add_argument("--out", help="keep the runs here (default: a temporary directory)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = find_text(args.data)
    print(f"GPT 4x4x128, context 64, batch 12, {args.max_steps} steps on {data}; device {args.device}, "
          f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out) if args.out else Path(tmp)
        rows = [run(precision, args, data, root) for precision in args.precisions]
    base = rows[0]["tokens_per_s"]
    print(f"{'precision':<10}{'tokens/s':>10}{'vs ' + rows[0]['precision']:>9}{'train s':>9}{'wall s':>9}"
          f"{'cpu s':>9}{'val loss':>10}")
    for r in rows:
        print(f"{r['precision']:<10}{r['tokens_per_s']:>10,.0f}{r['tokens_per_s'] / base:>9.2f}{r['train_s']:>9.1f}"
              f"{r['wall_s']:>9.1f}{r['cpu_s']:>9.1f}{r['val_loss']:>10.4f}")


if __name__ == "__main__":
    main()
