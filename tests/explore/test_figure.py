"""The explorer's figure: bins, sticky limits, and redraws that blit only the lines."""

from __future__ import annotations

import numpy as np
import pytest

import ratelab as rl
from ratelab.explorer.figure import Canvas, Line, _bin_means, sticky, window_for

TARGET = "http://127.0.0.1:8080"  # never contacted


def test_bin_means_are_time_weighted() -> None:
    # level 2 on [0.5, 1.5), 1 on [1.5, 3), then 0; bins of 1 s
    t = np.array([0.5, 1.5, 3.0])
    level = np.array([2, 1, 0])
    means = _bin_means(t, level, np.array([0.0, 1.0, 2.0, 3.0, 4.0]))
    assert means.tolist() == pytest.approx([1.0, 1.5, 1.0, 0.0])


def test_windows_and_sticky_limits() -> None:
    assert window_for(5.0) == pytest.approx(0.2)
    assert window_for(100.0) == 5.0 and window_for(12.0) == 1.0  # >= 1 s from 10 s on
    assert sticky(None, 100.0, 1.0) == 150.0  # headroom, a round number
    assert sticky(None, 100.0, 1.0, headroom=1.05) == 120.0
    assert sticky(120.0, 70.0, 1.0) == 120.0  # still more than half full: kept
    assert sticky(120.0, 50.0, 1.0) == 80.0  # under half: a new limit
    assert sticky(120.0, 130.0, 1.0) == 200.0  # over: a new limit
    assert sticky(None, 0.0, 0.01) == 0.01  # nothing to show: the floor


def test_a_redraw_with_the_same_limits_only_blits_the_lines() -> None:
    server = rl.LocalServer(latency=rl.Fixed(0.05), seed=1)
    exp = rl.Experiment(target=TARGET, requests=200, workers=10, seed=1)
    runs = [
        rl.simulate(exp.replace(strategy=rl.RateLimit(r)), server, progress=False)
        for r in (20, 21, 40)
    ]
    canvas = Canvas()
    first = canvas.render([Line(runs[0], "20")])
    second = canvas.render([Line(runs[1], "21")])
    assert canvas.full_draws == 1  # 21/s fits the axes drawn for 20/s
    assert second != first and second.startswith(b"\x89PNG")
    canvas.render([Line(runs[2], "40"), Line(runs[0], "20", "ghost")])
    assert canvas.full_draws == 2  # twice the rate, half the time: new limits
    again = canvas.render([Line(runs[0], "20")])
    assert canvas.full_draws == 3 and again == first  # the same picture as drawn afresh
