"""The [server] table of an experiment file and `ratelab serve` take the quotas, the header
style and the vendor profiles."""

from __future__ import annotations

import pytest

from ratelab.cli.main import build_parser
from ratelab.cli.toml_files import experiment_from_toml
from ratelab.errors import ConfigError
from ratelab.server.policies import ServerRateLimit


def test_server_table_with_quotas_headers_and_actual_cost() -> None:
    server = {
        "rate_limit": [{"limit": 60, "window_s": 60, "name": "rpm"},
                       {"limit": 30000, "window_s": 60, "unit": "tokens", "name": "tpm"},
                       "100 concurrent"],
        "headers": "none",
        "actual_cost": "uniform:0.2,0.6",
    }  # fmt: skip
    _, local = experiment_from_toml({"requests": 3}, server, simulate=True)
    assert local is not None and local.headers is None
    assert local.rate_limit == (
        ServerRateLimit(60, 60, name="rpm"),
        ServerRateLimit(30000, 60, unit="tokens", name="tpm"),
        ServerRateLimit(100, unit="concurrent"),
    )
    assert local.actual_cost is not None


def test_server_table_with_a_profile() -> None:
    server = {"profile": {"kind": "openai", "rpm": 60, "tpm": 30000}}
    _, local = experiment_from_toml({"requests": 3}, server, simulate=True)
    assert local is not None and local.headers == "openai"
    assert [(r.name, r.limit, r.unit) for r in local.rate_limit] == [
        ("requests", 60, "requests"), ("tokens", 30000, "tokens")]  # fmt: skip
    with pytest.raises(ConfigError, match=r"server\.profile"):
        experiment_from_toml({}, {"profile": {"kind": "acme"}}, simulate=True)
    with pytest.raises(ConfigError, match=r"server\.profile"):
        experiment_from_toml({}, {"profile": {"kind": "github", "hourly": 5}}, simulate=True)
    with pytest.raises(ConfigError, match=r"profiles\.openai\(tpm\)"):
        experiment_from_toml({}, {"profile": {"kind": "openai", "rpm": 5}}, simulate=True)


def test_serve_takes_a_header_style_and_unit_quotas() -> None:
    args = build_parser().parse_args(
        ["serve", "--headers", "github", "--rate-limit", "30000 tokens/1m"]
    )
    assert args.headers == "github" and args.rate_limit == ["30000 tokens/1m"]
    assert build_parser().parse_args(["serve"]).headers == "ietf"
