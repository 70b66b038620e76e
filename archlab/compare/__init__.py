"""The bake-off behind ``archlab compare``: every family on every kind of data, as fixed work.

    plan       the rows (data set + task + metric), the columns (architectures) and each cell's work
    runner     trains every seed of every cell with the real trainer, a few processes at a time
    baselines  naive forecasts and classical models (SARIMA, AR, an RBF SVM) on the same splits
    stats      means, 95% intervals and who -- if anyone -- wins a row
    samples    what each trained cell got wrong, for the report
    report     the terminal matrix, result.json, report.md and a self-contained report.html

It sits above ``archlab.train`` and ``archlab.tasks``: the cells are ordinary training runs.
"""

from archlab.compare.plan import ARCHS, PLANS, ROWS, Cell, Plan, Row, parse_plan, select_archs, select_rows
from archlab.compare.report import matrix_text, verdicts, write_reports
from archlab.compare.results import CellResult, CompareResult, RowResult, SeedRun
from archlab.compare.runner import default_jobs, parse_budget, run_compare

__all__ = ["ARCHS", "PLANS", "ROWS", "Cell", "Plan", "Row", "parse_plan", "select_rows", "select_archs",
           "run_compare", "parse_budget", "default_jobs", "CompareResult", "RowResult", "CellResult", "SeedRun",
           "matrix_text", "verdicts", "write_reports"]
