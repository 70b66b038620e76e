"""Time series for forecasting: float arrays with their dates, split in time order.

Offline, shipped with statsmodels:
    "co2"       Mauna Loa atmospheric CO2 (ppm; Keeling & Whorf), weekly 1958-2001, resampled to
                monthly means (1958-03 .. 2001-12, 526 months); the five months without any
                measurement are filled by linear interpolation. The last 24 months are the test
                set, the 24 before them validation.
    "sunspots"  yearly mean sunspot numbers 1700-2008 (309 years); the last 31 years are the test
                set, the 31 before them validation.
User data:
    a CSV file with a value column and an optional date column, chosen by name.

A forecast is scored on the future only: the parts are consecutive, never shuffled.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archlab.data.common import unknown_name
from archlab.errors import ConfigError, check


@dataclass
class SeriesPart:
    values: np.ndarray  # float64 (T,)
    dates: np.ndarray | None  # datetime64[D] (T,), or None for a series without dates

    def __len__(self) -> int:
        return len(self.values)


@dataclass
class TimeSeries:
    """A series and its consecutive train / val / test parts."""

    name: str
    values: np.ndarray  # float64 (T,), the whole series
    dates: np.ndarray | None
    train: SeriesPart
    val: SeriesPart
    test: SeriesPart
    frequency: str  # "monthly", "yearly", or "" when unknown
    unit: str = ""
    source: str = ""


def split_series(name: str, values, dates, n_val: int, n_test: int, drop_last: int = 0, **meta) -> TimeSeries:
    """Cut ``values`` (and ``dates``) into train | val (next ``n_val``) | test (last ``n_test``).

    ``drop_last`` values are first removed from the end: the series as it stood that many steps
    earlier, so its test part is an earlier forecast origin (a rolling-origin backtest)."""
    check(isinstance(drop_last, int) and drop_last >= 0, f"drop_last must be an integer >= 0, got {drop_last!r}")
    values = np.asarray(values, dtype=np.float64)
    check(drop_last < len(values) - 2, f"{name}: drop_last={drop_last} leaves fewer than 3 of its {len(values)} values")
    values = values[:len(values) - drop_last]
    dates = None if dates is None else dates[:len(dates) - drop_last]
    n = len(values)
    check(n_val >= 0 and n_test >= 1 and n - n_val - n_test >= 2,
          f"{name}: a series of {n} values cannot hold out n_val={n_val} and n_test={n_test} "
          f"and keep at least 2 for training")
    dates = None if dates is None else np.asarray(dates, dtype="datetime64[D]")
    cut_val, cut_test = n - n_val - n_test, n - n_test

    def part(lo, hi):
        return SeriesPart(values[lo:hi], None if dates is None else dates[lo:hi])

    return TimeSeries(name, values, dates, part(0, cut_val), part(cut_val, cut_test), part(cut_test, n), **meta)


@functools.lru_cache(maxsize=None)
def _co2_monthly() -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.datasets import co2

    weekly = co2.load_pandas().data["co2"]  # weekly (Saturdays), NaN where no measurement
    monthly = weekly.resample("MS").mean()  # mean of the month's measured weeks
    monthly = monthly.interpolate(method="linear")  # months with none: between their neighbours
    return monthly.to_numpy(dtype=np.float64), monthly.index.to_numpy().astype("datetime64[D]")


def load_co2(n_val: int = 24, n_test: int = 24, drop_last: int = 0) -> TimeSeries:
    """Monthly Mauna Loa CO2 (ppm), 1958-03 .. 2001-12; the last 24 months held out."""
    values, dates = _co2_monthly()
    return split_series("co2", values.copy(), dates.copy(), n_val, n_test, drop_last, frequency="monthly", unit="ppm",
                        source="statsmodels.datasets.co2 (Keeling & Whorf, Scripps, Mauna Loa)")


@functools.lru_cache(maxsize=None)
def _sunspots() -> tuple[np.ndarray, np.ndarray]:
    from statsmodels.datasets import sunspots

    frame = sunspots.load_pandas().data
    years = frame["YEAR"].to_numpy().astype(int)
    return frame["SUNACTIVITY"].to_numpy(dtype=np.float64), np.array([f"{y:04d}-01-01" for y in years],
                                                                      dtype="datetime64[D]")


def load_sunspots(n_val: int = 31, n_test: int = 31, drop_last: int = 0) -> TimeSeries:
    """Yearly sunspot numbers, 1700-2008; the last 31 years held out."""
    values, dates = _sunspots()
    return split_series("sunspots", values.copy(), dates.copy(), n_val, n_test, drop_last, frequency="yearly",
                        unit="sunspot number", source="statsmodels.datasets.sunspots (SIDC)")


# --- CSV --------------------------------------------------------------------------------------------

def load_csv_series(path: str | os.PathLike, value_column: str, date_column: str | None = None, *,
                    n_val: int | None = None, n_test: int | None = None, drop_last: int = 0) -> TimeSeries:
    """A series from a CSV file with a header row; columns chosen by name.

    Values must be numbers and dates ISO (``2001-12-31``, ``2001-12`` or ``2001``), strictly
    increasing; anything else is a ``ConfigError`` naming the file and line. By default the last
    10% (at least one value) is the test set and the 10% before it validation (10% of what is left
    after ``drop_last``).
    """
    from archlab.data.text import read_text_file

    path = Path(path).expanduser()
    check(path.is_file(), f"CSV file {str(path)!r} does not exist")
    text = read_text_file(path).lstrip("\ufeff")  # UTF-8 (a byte-order mark allowed), not binary, not empty
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    check(header is not None, f"{path}: empty file, expected a header row naming the columns")
    header = [h.strip() for h in header]
    for wanted, what in ((value_column, "value_column"), (date_column, "date_column")):
        check(wanted is None or wanted in header,
              f"{path}: {what}={wanted!r} is not a column; the header has {', '.join(map(repr, header))}")
    vi = header.index(value_column)
    di = None if date_column is None else header.index(date_column)
    values, dates = [], []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue  # blank line
        check(len(row) == len(header), f"{path}, line {line}: {len(row)} fields, the header has {len(header)}")
        values.append(_finite_value(path, line, value_column, row[vi]))
        if di is not None:
            try:
                date = np.datetime64(row[di].strip(), "D")
            except ValueError:
                raise ConfigError(f"{path}, line {line}: column {date_column!r} holds {row[di]!r}, "
                                  f"expected an ISO date such as 2001-12-31") from None
            if dates and not date > dates[-1]:
                raise ConfigError(f"{path}, line {line}: date {row[di].strip()} does not come after "
                                  f"{dates[-1]}; rows must be in increasing time order")
            dates.append(date)
    check(len(values) >= 4, f"{path}: {len(values)} values, a series needs at least 4")
    n = len(values) - drop_last  # split_series refuses a drop_last that leaves too little
    n_test = max(1, n // 10) if n_test is None else n_test
    n_val = max(1, n // 10) if n_val is None else n_val
    return split_series(path.stem, values, dates if di is not None else None, n_val, n_test, drop_last, frequency="",
                        source=str(path))


def _finite_value(path: Path, line: int, column: str, cell: str) -> float:
    """The number in ``cell``; text, NaN and infinities are a ``ConfigError`` naming file, line and column."""
    try:
        value = float(cell)
    except ValueError:
        raise ConfigError(f"{path}, line {line}: column {column!r} holds {cell!r}, expected a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{path}, line {line}: column {column!r} holds {cell.strip()!r}, expected a finite number "
                          "(fill or drop missing values first)")
    return value


SERIES = {"co2": load_co2, "sunspots": load_sunspots}


def load_series(name_or_path: str | os.PathLike, value_column: str | None = None,
                date_column: str | None = None, **split) -> TimeSeries:
    """A named series ("co2", "sunspots") or a CSV file (then ``value_column`` is required)."""
    name = str(name_or_path)
    if name in SERIES:
        return SERIES[name](**split)
    if Path(name).expanduser().is_file():
        check(value_column is not None, f"a CSV series ({name}) needs value_column (the name of a column; "
                                        "--set value_column=NAME, or --value-column in archlab forecast), got None")
        return load_csv_series(name, value_column, date_column, **split)
    if Path(name).expanduser().is_dir():
        raise ConfigError(f"{name!r} is a folder, expected a CSV file or one of {', '.join(SERIES)}")
    raise unknown_name("time series", name, SERIES, extra=", or the path of a CSV file")


def make_windows(values: np.ndarray, context: int, horizon: int = 1,
                 starts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Supervised pairs from a series: ``x[i] = values[s_i : s_i+context]``, ``y[i]`` the next ``horizon``.

    ``starts`` are the windows' first indices s_i (default: every window, s_i = i). Returns x (N,
    context) and y (N, horizon), with N = T - context - horizon + 1 when every window is taken.
    The one windowing function of archlab: the forecast task and the tests use it.
    """
    values = np.asarray(values)
    check(context >= 1 and horizon >= 1, f"context and horizon must be >= 1, got {context} and {horizon}")
    n = len(values) - context - horizon + 1
    check(n >= 1, f"a series of {len(values)} values is too short for context={context} + horizon={horizon}")
    windows = np.lib.stride_tricks.sliding_window_view(values, context + horizon)  # (N, context + horizon)
    if starts is not None:
        starts = np.asarray(starts, dtype=np.int64)
        check(starts.size == 0 or (starts.min() >= 0 and starts.max() < n),
              f"window starts must lie in [0, {n - 1}], got [{starts.min()}, {starts.max()}]")
        windows = windows[starts]
    return windows[:, :context].copy(), windows[:, context:].copy()
