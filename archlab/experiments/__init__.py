"""The texts' claims as experiments: a protocol, a criterion, a measured table and plot, a verdict.

    archlab experiment list                      every experiment, its claim and expected time
    archlab experiment long_memory --quick       one experiment, its short protocol
    archlab experiment all --quick               all of them, about 2 minutes of CPU time

    from archlab.experiments import run_experiment
    result = run_experiment("dropout", "runs/dropout", size="quick", seeds=3)
    result.holds, result.table, result.checks

Each claim is one module of this package (``long_memory``, ``parallelism``, ``weight_sharing``,
``residual_depth``, ``batchnorm_lr``, ``dropout``, ``positional_encoding``, ``causal_mask``);
``core`` holds what they share (estimates over seeds with 95% intervals, checks, the verdict, the
trainer's runs), ``report`` the terminal text, ``result.json`` and ``report.html``. Every model is
trained by ``archlab.train`` on a registered task; the verdict is computed from the measurement.
"""

from archlab.experiments.core import (
    SIZES, Check, Column, Estimate, Experiment, Lab, Result, Run, estimate, get_experiment, list_experiments,
    register_experiment, run_experiment,
)
from archlab.experiments.report import index_html, result_text, write_result

__all__ = ["SIZES", "Check", "Column", "Estimate", "Experiment", "Lab", "Result", "Run", "estimate",
           "get_experiment", "list_experiments", "register_experiment", "run_experiment", "result_text",
           "write_result", "index_html"]
