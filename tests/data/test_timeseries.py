import numpy as np
import pytest

from archlab.data.timeseries import load_co2, load_csv_series, load_series, load_sunspots, make_windows
from archlab.errors import ConfigError


def test_co2_monthly_with_gaps_filled_and_last_24_held_out():
    s = load_co2()
    assert s.frequency == "monthly" and s.unit == "ppm"
    assert len(s.values) == 526 and not np.isnan(s.values).any()
    assert s.dates[0] == np.datetime64("1958-03-01") and s.dates[-1] == np.datetime64("2001-12-01")
    assert (len(s.train), len(s.val), len(s.test)) == (478, 24, 24)
    assert s.test.dates[0] == np.datetime64("2000-01-01")
    assert np.array_equal(np.concatenate([s.train.values, s.val.values, s.test.values]), s.values)
    # the known shape of the Keeling curve: ~315 ppm in 1958, ~370 in 2001, rising
    assert 313 < s.values[:12].mean() < 318 and 368 < s.test.values.mean() < 373
    # a filled month lies between its neighbours (1958-06 has no measurement)
    june = int(np.flatnonzero(s.dates == np.datetime64("1958-06-01"))[0])
    assert s.values[june] == pytest.approx((s.values[june - 1] + s.values[june + 1]) / 2)


def test_sunspots_yearly_last_31_held_out():
    s = load_sunspots()
    assert len(s.values) == 309 and s.frequency == "yearly"
    assert (len(s.train), len(s.val), len(s.test)) == (247, 31, 31)
    assert s.test.dates[0] == np.datetime64("1978-01-01") and s.test.dates[-1] == np.datetime64("2008-01-01")
    assert s.values[0] == 5.0 and s.values.max() == pytest.approx(190.2)


def test_csv_series_by_column_name(tmp_path):
    path = tmp_path / "temps.csv"
    path.write_text("day,temp,station\n" + "".join(f"2024-01-{d:02d},{d * 0.5},x\n" for d in range(1, 21)))
    s = load_series(path, value_column="temp", date_column="day")
    assert s.name == "temps" and len(s.values) == 20 and s.values[3] == 2.0
    assert (len(s.train), len(s.val), len(s.test)) == (16, 2, 2)
    assert s.test.dates[-1] == np.datetime64("2024-01-20")
    undated = load_csv_series(path, "temp", n_val=0, n_test=5)
    assert undated.dates is None and len(undated.test) == 5 and len(undated.val) == 0


@pytest.mark.parametrize("body,match", [
    ("day,temp\n2024-01-01,1\n2024-01-02,warm\n", r"line 3: column 'temp' holds 'warm', expected a number"),
    ("day,temp\n2024-01-01,1\n01/02/2024,2\n", r"line 3: column 'day' holds '01/02/2024', expected an ISO date"),
    ("day,temp\n2024-01-02,1\n2024-01-01,2\n", r"line 3: date 2024-01-01 does not come after 2024-01-02"),
    ("day,temp\n2024-01-01,1,9\n", r"line 2: 3 fields, the header has 2"),
])
def test_csv_errors_name_the_line(tmp_path, body, match):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_csv_series(path, "temp", "day")


def test_csv_column_and_name_errors(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match=r"value_column='c' is not a column; the header has 'a', 'b'"):
        load_csv_series(path, "c")
    with pytest.raises(ConfigError, match=r"unknown time series 'co3'.*co2, sunspots.*did you mean 'co2'"):
        load_series("co3")


def test_make_windows():
    x, y = make_windows(np.arange(6.0), context=3, horizon=2)
    assert x.tolist() == [[0, 1, 2], [1, 2, 3]] and y.tolist() == [[3, 4], [4, 5]]
    with pytest.raises(ConfigError, match="too short for context=5 \\+ horizon=2"):
        make_windows(np.arange(6.0), 5, 2)
    x, y = make_windows(np.arange(10.0), context=4, horizon=2, starts=[2, 0])  # chosen windows, in that order
    assert x.tolist() == [[2, 3, 4, 5], [0, 1, 2, 3]] and y.tolist() == [[6, 7], [4, 5]]
    with pytest.raises(ConfigError, match=r"window starts must lie in \[0, 4\], got \[0, 5\]"):
        make_windows(np.arange(10.0), 4, 2, starts=[0, 5])
