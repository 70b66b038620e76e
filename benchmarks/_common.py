"""What the benchmarks share: clocks, medians taken in turns, peak memory, and a line about the machine.

Speed on a shared machine is only meaningful as a ratio measured in one process, with the cases
taking turns (so load that comes and goes hits all of them alike) and as the median of repeats.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: CPU seconds of this process


# glibc hands large blocks back to the system when they are freed and takes them again, zeroed page
# by page, at the next allocation: with cases taking turns, whichever runs after a case that freed a
# lot pays for those pages (torch's own depthwise kernel measured 1.6-1.8x itself that way). Kept in
# the heap, every case pays only for its own work, as in a training loop's steady state.
STEADY_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 32),
                 "MALLOC_TOP_PAD_": str(1 << 28)}


def steady_allocator() -> None:
    """Run this benchmark again with ``STEADY_MALLOC`` in its environment (read by glibc at start)."""
    if platform.system() == "Linux" and any(os.environ.get(k) != v for k, v in STEADY_MALLOC.items()):
        os.environ.update(STEADY_MALLOC)
        os.execv(sys.executable, [sys.executable, *sys.argv])


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def medians_in_turns(steps: dict, *, repeats: int, warmup: int = 2, clock: str = "wall",
                     device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds of each zero-argument ``step``; the steps take turns, the order rotating."""
    tick = CLOCKS[clock]
    for step in steps.values():
        for _ in range(warmup):
            step()
    names = list(steps)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            sync(device)
            t0 = tick()
            steps[k]()
            sync(device)
            times[k].append(tick() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def saved_for_backward_bytes(fn) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass while ``fn()`` runs forward:
    the activation memory a training step holds at its peak, beyond parameters and gradients."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            storage = t.untyped_storage()
            seen[storage.data_ptr()] = max(seen.get(storage.data_ptr(), 0), storage.nbytes())
        except (RuntimeError, NotImplementedError):  # e.g. a tensor without storage
            seen[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return sum(seen.values())


# Peak resident memory of this process. On Linux the high-water mark can be reset
# (/proc/self/clear_refs, "5"), so each phase of a benchmark gets its own peak.
_STATUS = Path("/proc/self/status")


def reset_peak_memory() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory_mb(device: torch.device | str = "cpu") -> float:
    """Peak memory since ``reset_peak_memory()``: allocated on a CUDA device, else the process's peak
    resident set (VmHWM on Linux; elsewhere the peak since the process started)."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kB on Linux


@contextmanager
def peak_memory(device: torch.device | str = "cpu"):
    """``with peak_memory() as peak: ...`` then ``peak()`` is the phase's peak in MiB."""
    reset_peak_memory()
    result: dict[str, float] = {}
    yield lambda: result["mb"]
    result["mb"] = peak_memory_mb(device)


def machine_line(device: torch.device | str = "cpu") -> str:
    """Threads, load and versions, printed above every table: figures mean little without them."""
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load}; "
            f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device {device}")
