"""Nothing lost under faults: every attempt is a row, and summary counts errors by kind."""

from __future__ import annotations

import socket
import threading

import pytest

import ratelab as rl


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _complete(result: rl.Result, requests: int) -> None:
    """What must hold after any fault: a row per request, each with an outcome."""
    df = result.df
    assert sorted(df.request_id.unique()) == list(range(requests))
    assert (df.attempt >= 1).all()
    outcome = (df.status > 0) | df.error.notna()
    assert outcome.all(), "every attempt has a status or an error"
    assert df.done_s.notna().all()


def test_server_errors(fresh_server) -> None:
    srv = fresh_server(faults=rl.Faults(error_rate=0.5, seed=3))
    result = rl.run(rl.Experiment(target=srv, requests=40, workers=8), progress=False)
    _complete(result, 40)
    kinds = rl.summary(result).iloc[0]["errors_by_kind"]
    n500 = int((result.df.status == 500).sum())
    assert 0 < n500 < 40 and kinds == {"HTTP 500": n500}
    assert (result.server_log.decision == "fault").sum() == n500


def test_connection_resets(fresh_server) -> None:
    srv = fresh_server(faults=rl.Faults(reset_rate=1.0, seed=1))
    result = rl.run(rl.Experiment(target=srv, requests=10, workers=3), progress=False)
    _complete(result, 10)
    assert (result.df.status == 0).all()
    assert set(result.df.error.astype(str)) <= {"ServerDisconnectedError", "ClientOSError"}
    assert sum(rl.summary(result).iloc[0]["errors_by_kind"].values()) == 10


def test_stalls_past_the_timeout(fresh_server) -> None:
    srv = fresh_server(faults=rl.Faults(stall_rate=1.0, seed=1))
    exp = rl.Experiment(target=srv, requests=6, workers=6, timeout_s=0.2)
    result = rl.run(exp, progress=False)
    _complete(result, 6)
    assert (result.df.error == "TimeoutError").all()
    assert rl.summary(result).iloc[0]["errors_by_kind"] == {"TimeoutError": 6}


def test_server_stopped_mid_run(fresh_server) -> None:
    srv = fresh_server(latency=rl.Fixed(0.05))
    exp = rl.Experiment(target=srv.url, requests=60, workers=2, timeout_s=2)

    def stop_after_some() -> None:
        assert srv._wait_for_rows(6, timeout=10)
        srv.stop()

    stopper = threading.Thread(target=stop_after_some)
    stopper.start()
    result = rl.run(exp, progress=False)
    stopper.join()
    _complete(result, 60)
    ok = result.df.status == 200
    assert 6 <= ok.sum() < 60
    # after the stop, nothing answers: the rest are connection errors, not lost rows
    assert result.df.error[~ok].notna().all()


def test_refused_port() -> None:
    result = rl.run(
        rl.Experiment(target=f"http://127.0.0.1:{_closed_port()}", requests=5), progress=False
    )
    _complete(result, 5)
    assert rl.summary(result).iloc[0]["errors_by_kind"] == {"ConnectionRefusedError": 5}


def test_unresolvable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real lookup would leave the machine (the resolver is remote), so the name service
    # answers "no such host" here, exactly as the resolver would for an unknown name.
    real = socket.getaddrinfo

    def no_such_host(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host == "no-such-host.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    exp = rl.Experiment(target="http://no-such-host.invalid", requests=4, strategy=rl.RateLimit(5))
    result = rl.run(exp, progress=False)
    _complete(result, 4)
    assert (result.df.error == "ClientConnectorDNSError").all()


def test_429s_with_retry_after_are_retried_and_every_attempt_is_a_row(fresh_server) -> None:
    srv = fresh_server(rate_limit=rl.ServerRateLimit(5, 1.0))
    exp = rl.Experiment(
        target=srv, requests=8, workers=8,
        strategy=rl.Retry(max_attempts=2, backoff_s=0.01),
    )  # fmt: skip
    result = rl.run(exp, progress=False)
    _complete(result, 8)
    df = result.df
    first = df[df.attempt == 1]
    assert (first.status == 200).sum() == 5 and (first.status == 429).sum() == 3
    retries = df[df.attempt == 2]
    assert len(retries) == 3
    # the retry waited for the server's Retry-After (whole seconds, >= 1)
    assert ((retries.ready_s - retries.dequeued_s) >= 1.0 - 1e-6).all()
    assert (retries.status == 200).all()
    assert len(result.server_log) == 11
