"""What a run tells its user: a live bar, plain log lines, ``metrics.jsonl`` and TensorBoard.

Only the main process reports. On a terminal a tqdm bar shows step, epoch, loss, learning rate,
throughput and the ETA (and goes away when the run ends); when stderr is not a terminal (a log file, CI) the bar is off and the same
figures are printed as one plain line every ``log_every`` steps. Every logged record is also
appended as one JSON line to ``OUT/metrics.jsonl``; with ``tensorboard=true`` (and the tensorboard
package installed) the scalars go to ``OUT/tensorboard`` too.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

METRICS_FILE = "metrics.jsonl"


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Reporter:
    def __init__(self, run_dir: Path, *, total_steps: int, start_step: int, unit: str, enabled: bool,
                 tensorboard: bool = False, samples_per_epoch: int = 0, batch_size: int = 0):
        self.enabled = enabled
        self.total, self.unit = total_steps, unit
        # Epochs done after step s: s * batch_size / samples_per_epoch (0 when unknown).
        self.epochs_per_step = batch_size / samples_per_epoch if samples_per_epoch > 0 else 0.0
        self.path = Path(run_dir) / METRICS_FILE
        self.bar = None
        self.tb = None
        if not enabled:
            return
        if sys.stderr.isatty():
            self.bar = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr,
                            leave=False)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:
                self.message("tensorboard=true, but the tensorboard package is not installed: logging to "
                             f"{METRICS_FILE} only")

    def truncate_after(self, step: int) -> None:
        """On resume: drop records a killed run wrote after the checkpoint it resumes from."""
        if not (self.enabled and self.path.is_file()):
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                if json.loads(line).get("step", 0) <= step:
                    kept.append(line)
            except json.JSONDecodeError:  # a line cut short by the kill
                pass
        self.path.write_text("".join(k + "\n" for k in kept))

    def set_step(self, step: int) -> None:
        """Where a resumed run starts: the bar counts on from there."""
        if self.bar is not None:
            self.bar.n = step
            self.bar.refresh()

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr, flush=True)

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (with ``step`` and ``split``) to metrics.jsonl and TensorBoard."""
        if not self.enabled:
            return
        record = {"time": round(time.time(), 3), **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "time"):
                    self.tb.add_scalar(f"{record.get('split', 'train')}/{k}", v, record["step"])

    def train_line(self, step: int, loss: float, lr: float, rate: float, mfu: float | None,
                   eta_s: float) -> None:
        if not self.enabled:
            return
        unit = "tok/s" if self.unit == "tokens" else "samples/s"
        epoch = step * self.epochs_per_step
        if self.bar is not None:
            post = {"epoch": f"{epoch:.2f}", "loss": f"{loss:.4f}", "lr": f"{lr:.2e}", unit: f"{rate:,.0f}"}
            if mfu is not None:
                post["mfu"] = f"{100 * mfu:.1f}%"
            self.bar.set_postfix(post, refresh=False)
        else:
            parts = [f"step {step}/{self.total}", f"epoch {epoch:.2f}", f"loss {loss:.4f}", f"lr {lr:.2e}",
                     f"{rate:,.0f} {unit}"]
            if mfu is not None:
                parts.append(f"mfu {100 * mfu:.1f}%")
            if math.isfinite(eta_s):
                parts.append(f"eta {_fmt_time(eta_s)}")
            print(" | ".join(parts), file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None
