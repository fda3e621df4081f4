"""ratelab.analysis.headers: every quota of every response, in every header style.

The frames are written by the server's own writer (``protocol.format_headers``) so each test
reads exactly what a server of that style sends: two quotas per response (requests and
tokens, or GitHub's core with its secondary limits), resets as durations, dates or epoch
seconds."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import math

import matplotlib.pyplot as plt
import pandas as pd
import pytest

import ratelab as rl
from ratelab.analysis import headers as hv
from ratelab.analysis.result import Result
from ratelab.errors import ConfigError
from ratelab.experiment.experiment import Experiment
from ratelab.protocol.header_styles import format_headers
from ratelab.protocol.quota import Quota
from ratelab.testing import make_frame

EPOCH = hv.SIMULATION_EPOCH_S
T = [0.5, 1.5, 2.5]  # headers time of the three responses
#: What the server announced in each response: (requests remaining, tokens remaining, reset).
STATES = [(59, 29_000, 1.0), (58, 27_500, 360.0), (57, 26_000, 2.0)]


def quotas(state: tuple[int, int, float]) -> list[Quota]:
    req, tok, reset = state
    return [Quota("requests", 60, req, reset, 60.0, "requests"),
            Quota("tokens", 30_000, tok, reset, 60.0, "tokens")]  # fmt: skip


def result_for(style: str, *, clock: str = "virtual", quota_list=quotas) -> Result:
    rows = []
    for rid, (t, state) in enumerate(zip(T, STATES, strict=True)):
        now = EPOCH + t if clock == "virtual" else 1_800_000_000.0 + t
        for name, value in format_headers(style, quota_list(state), now_epoch_s=now).items():
            rows.append((rid, 1, name.lower(), value))
    headers = pd.DataFrame(rows, columns=["request_id", "attempt", "name", "value"])
    meta = {"clock": "virtual", "t0_monotonic": 0.0}
    if clock != "virtual":
        meta = {"clock": "real", "started_at": "2027-01-15T08:00:00+00:00"}  # 1_800_000_000
    df = make_frame(request_id=[0, 1, 2], headers_s=T, done_s=[t + 0.1 for t in T])
    return Result(df=df, experiment=Experiment(target="http://127.0.0.1:9"), meta=meta,
                  headers=headers)  # fmt: skip


def by_quota(values: pd.DataFrame) -> dict[str, list[float]]:
    return {q: g["value"].tolist() for q, g in values.groupby("quota", sort=True)}


@pytest.mark.parametrize("style", ["ietf", "openai", "anthropic"])
def test_both_quotas_of_a_response_are_read(style) -> None:
    values = hv.header_values(result_for(style), "remaining")
    assert by_quota(values) == {"requests": [59, 58, 57], "tokens": [29_000, 27_500, 26_000]}
    assert values["t_s"].tolist() == [0.5, 0.5, 1.5, 1.5, 2.5, 2.5]
    assert set(values["unit"]) == {"requests", "tokens"}
    assert (values.loc[values.quota == "tokens", "limit"] == 30_000).all()


def test_ietf_labels_name_each_item() -> None:
    values = hv.header_values(result_for("ietf"), "limit")
    assert sorted(set(values["name"])) == ['ratelimit "requests"', 'ratelimit "tokens"']
    assert by_quota(values) == {"requests": [60] * 3, "tokens": [30_000] * 3}


def test_openai_resets_are_go_durations() -> None:
    values = hv.header_values(result_for("openai"), "reset")
    assert by_quota(values) == {"requests": [1.0, 360.0, 2.0], "tokens": [1.0, 360.0, 2.0]}
    assert "x-ratelimit-reset-tokens" in set(values["name"])


@pytest.mark.parametrize("clock", ["virtual", "real"])
@pytest.mark.parametrize("style", ["anthropic", "github"])
def test_absolute_resets_become_seconds_from_the_response(style, clock) -> None:
    values = hv.header_values(result_for(style, clock=clock), "reset")
    # written as whole seconds rounded up: 0.5 + 1 -> 2, 1.5 + 360 -> 362, 2.5 + 2 -> 5
    assert values.groupby("quota")["value"].apply(list).iloc[0] == [1.5, 360.5, 2.5]


def test_github_announces_its_primary_quota_by_resource() -> None:
    def github_quotas(state):
        req, _, reset = state
        return [Quota("core", 5000, req, reset, 3600.0),
                Quota("concurrent", 100, 99, None, None, "concurrent")]  # fmt: skip

    r = result_for("github", quota_list=github_quotas)
    values = hv.header_values(r, "remaining")
    assert values["name"].unique().tolist() == ["x-ratelimit-remaining (core)"]
    assert values["value"].tolist() == [59, 58, 57]
    assert hv.header_values(r, "used")["value"].tolist() == [4941, 4942, 4943]


def test_ietf_06_reads_its_one_quota() -> None:
    values = hv.header_values(result_for("ietf-06"), "remaining")
    # the most restrictive quota is announced: requests (59/60 left) vs tokens (29,000/30,000)
    assert values["quota"].tolist() == ["ratelimit"] * 3
    assert values["name"].unique().tolist() == ["ratelimit-remaining"]
    assert values["value"].tolist() == [29_000, 27_500, 26_000]


def test_an_unknown_field_is_refused_by_name() -> None:
    with pytest.raises(ConfigError) as e:
        hv.header_values(result_for("ietf"), "remainder")
    assert e.value.parameter == "field"


def test_tokens_go_on_a_second_axis_and_relative_puts_them_on_one() -> None:
    r = result_for("openai")
    ax = hv.plot_headers(r, "remaining")
    assert [ln.get_ydata().tolist() for ln in ax.get_lines()] == [[59, 58, 57]]
    (twin,) = [a for a in ax.figure.axes if a is not ax]
    assert [ln.get_ydata().tolist() for ln in twin.get_lines()] == [[29_000, 27_500, 26_000]]
    assert ax.get_lines()[0].get_color() != twin.get_lines()[0].get_color()  # one colour cycle
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "x-ratelimit-remaining-requests", "x-ratelimit-remaining-tokens"]  # fmt: skip
    plt.close(ax.figure)
    ax = hv.plot_headers(r, "remaining", relative=True)
    assert len(ax.figure.axes) == 1
    ys = [ln.get_ydata().tolist() for ln in ax.get_lines()]
    assert ys[0] == pytest.approx([59 / 60, 58 / 60, 57 / 60])
    assert ys[1] == pytest.approx([29_000 / 30_000, 27_500 / 30_000, 26_000 / 30_000])
    plt.close(ax.figure)


def test_the_simulation_epoch_is_the_runners() -> None:
    from ratelab.simulation.runner import SIMULATION_EPOCH_S

    assert hv.SIMULATION_EPOCH_S == SIMULATION_EPOCH_S


def test_a_simulated_openai_run_reports_both_quotas_as_the_server_charged_them() -> None:
    srv = rl.LocalServer(profile=rl.profiles.openai(rpm=20, tpm=2_000, algorithm="fixed_window"))
    exp = rl.Experiment(target="http://127.0.0.1:9", requests=12, workers=1,
                        cost=rl.Uniform(100, 300), seed=3)  # fmt: skip
    r = rl.simulate(exp, srv, progress=False)
    values = hv.header_values(r, "remaining")
    ok = r.df[r.df.status == 200].sort_values("headers_s")
    tokens = values[values.quota == "tokens"].set_index(["request_id", "attempt"])["value"]
    requests = values[values.quota == "requests"].set_index(["request_id", "attempt"])["value"]
    # a fixed window: every admitted request takes 1 request and its cost in tokens
    key = list(zip(ok.request_id, ok.attempt, strict=True))
    assert requests.loc[key].tolist() == [20 - k for k in range(1, len(ok) + 1)]
    spent = ok["cost"].cumsum().to_numpy()
    assert tokens.loc[key].tolist() == [2_000 - s for s in spent]
    assert (r.df.status == 429).any()  # the tokens quota ran out before the requests one
    assert math.isclose(values["limit"].max(), 2_000)


def test_a_run_without_rate_limit_headers_plots_a_note() -> None:
    r = result_for("ietf")
    r = Result(df=r.df, experiment=r.experiment, meta=r.meta,
               headers=r.headers.iloc[0:0])  # fmt: skip
    assert hv.header_values(r).empty
    ax = hv.plot_headers(r)
    assert not ax.get_lines()
    assert [t.get_text() for t in ax.texts] == ["no 'remaining' headers recorded"]
    plt.close(ax.figure)
