"""The bake-off behind ``archlab compare``: every family on every kind of data, on one clock.

    plan      the rows (data set + task + metric) and columns (architectures) as data
    runner    trains each cell with the real trainer within its share of the budget
    samples   baselines and predictions of the trained cells, for the report
    report    the terminal matrix, result.json, report.md and a self-contained report.html

It sits above ``archlab.train`` and ``archlab.tasks``: the cells are ordinary training runs.
"""

from archlab.compare.plan import ARCHS, ROWS, Cell, Row, select_archs, select_rows
from archlab.compare.report import matrix_text, verdicts, write_reports
from archlab.compare.results import CellResult, CompareResult, RowResult
from archlab.compare.runner import parse_budget, run_compare

__all__ = ["ARCHS", "ROWS", "Cell", "Row", "select_rows", "select_archs", "run_compare", "parse_budget",
           "CompareResult", "RowResult", "CellResult", "matrix_text", "verdicts", "write_reports"]
