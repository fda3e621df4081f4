"""The explorer's controls: what each name changes, its range or choices, and its widget.

A control is named after an :class:`~ratelab.Experiment` field (``workers``, ``requests``,
``timeout_s``, ``seed``; any field given a list of choices, e.g. ``strategy=[...]``), a
:class:`~ratelab.LocalServer` field (``latency_s``: a fixed service latency,
``max_concurrency``; ``latency`` and ``rate_limit`` as lists of choices), or one of three
shorthands:

* ``rate``: the ``max_rate`` of the strategy's (first) ``RateLimit`` (one is put in front
  if the strategy has none);
* ``connections``: the ``limit`` of its ``ConnectionLimit`` (one is added if it has none);
* ``algorithm``: the algorithm of the server's rate limit(s) (``fixed_window``,
  ``sliding_window``, ``token_bucket``, ``gcra``).

Each is given as a ``(low, high)`` range (or ``(low, high, step)``), which becomes a slider,
or a list of choices, which becomes buttons or a drop-down. Everything is checked when the
explorer is built: an unknown name, a bad range or a choice that would make a bad
Experiment raises :class:`~ratelab.errors.ConfigError` naming the control, before anything
is simulated or drawn.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ratelab.errors import ConfigError
from ratelab.experiment.distributions import Fixed
from ratelab.experiment.experiment import Experiment
from ratelab.experiment.strategies import (
    ConnectionLimit,
    RateLimit,
    Strategy,
    Unlimited,
)

if TYPE_CHECKING:
    from ratelab.server.local import LocalServer

__all__ = [
    "ALGORITHMS",
    "Control",
    "ServerConfig",
    "apply_setting",
    "default_controls",
    "make_controls",
    "setting_label",
]

#: the server rate-limit algorithms (``ratelab.server.policies.ALGORITHMS``, repeated here so
#: building controls does not import the server; a test keeps them equal)
ALGORITHMS = ("fixed_window", "sliding_window", "token_bucket", "gcra")

#: Experiment fields a range can drive: name -> (integer?, smallest value allowed)
_EXPERIMENT_NUMBERS: dict[str, tuple[bool, float]] = {
    "requests": (True, 1),
    "workers": (True, 1),
    "timeout_s": (False, 0.001),
    "seed": (True, 0),
}
#: server fields and shorthands a range can drive: name -> (integer?, smallest value allowed)
_OTHER_NUMBERS: dict[str, tuple[bool, float]] = {
    "rate": (False, 1),  # aiolimiter's max_rate is a count >= 1 per period_s
    "connections": (True, 1),
    "latency_s": (False, 0),
    "max_concurrency": (True, 1),
}
#: names that take only a list of choices (besides any other Experiment field)
_CHOICES_ONLY = ("algorithm", "latency", "rate_limit")
_EXPERIMENT_FIELDS = tuple(f.name for f in dataclasses.fields(Experiment))
_NOT_CONTROLS = ("target", "processes", "loop", "request", "polite", "name")
KNOWN = tuple(
    dict.fromkeys(
        [*_EXPERIMENT_NUMBERS, *_OTHER_NUMBERS, *_CHOICES_ONLY]
        + [f for f in _EXPERIMENT_FIELDS if f not in _NOT_CONTROLS]
    )
)


@dataclass
class ServerConfig:
    """A LocalServer's configuration as keyword arguments (never started by the explorer's
    simulations); :meth:`build` makes a fresh LocalServer from it."""

    kwargs: dict[str, Any]

    @classmethod
    def of(cls, server: LocalServer | None) -> ServerConfig | None:
        if server is None:
            return None
        return cls(
            {
                "latency": server.latency,
                "seed": server.seed,
                "rate_limit": tuple(server.rate_limit),
                "max_concurrency": server.max_concurrency,
                "overload_status": server.overload_status,
                "faults": server.faults,
            }
        )

    @classmethod
    def empty(cls) -> ServerConfig:
        """A server with no latency and no policies (what ``rl.simulate`` takes for None)."""
        from ratelab.server.local import OVERLOAD_STATUS

        return cls(
            {"latency": None, "seed": None, "rate_limit": (), "max_concurrency": None,
             "overload_status": OVERLOAD_STATUS, "faults": None}
        )  # fmt: skip

    def replace(self, **changes: Any) -> ServerConfig:
        return ServerConfig({**self.kwargs, **changes})

    def build(self) -> LocalServer:
        """A new LocalServer (127.0.0.1, any free port, not started) with this configuration."""
        from ratelab.server.local import LocalServer

        kwargs = dict(self.kwargs)
        kwargs["rate_limit"] = list(kwargs["rate_limit"]) or None
        return LocalServer(host="127.0.0.1", port=0, **kwargs)


@dataclass
class Control:
    """One control: its name, a range (``low``, ``high``, ``step``, ``integer``) or
    ``choices``, and the value it starts at."""

    name: str
    value: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    integer: bool = False
    choices: tuple[Any, ...] | None = None

    @property
    def is_range(self) -> bool:
        return self.choices is None

    def widget(self) -> Any:
        """The ipywidgets widget for this control (a slider, buttons or a drop-down)."""
        w = ipywidgets()
        style = {"description_width": "110px"}
        layout = w.Layout(width="460px")
        if self.choices is None:
            cls = w.IntSlider if self.integer else w.FloatSlider
            extra = {} if self.integer else {"readout_format": _readout(self.step or 1.0)}
            return cls(
                value=self.value, min=self.low, max=self.high, step=self.step,
                description=self.name, continuous_update=True, style=style, layout=layout,
                **extra,
            )  # fmt: skip
        options = [(_label(c), c) for c in self.choices]
        index = self.choices.index(self.value)
        if len(options) <= 4 and all(len(label) <= 16 for label, _ in options):
            return w.ToggleButtons(
                options=options, index=index, description=self.name,
                style={**style, "button_width": "110px"},
            )  # fmt: skip
        return w.Dropdown(
            options=options, index=index, description=self.name, style=style, layout=layout
        )


def ipywidgets() -> Any:
    """The ipywidgets module, or an ImportError naming the extra that installs it."""
    try:
        import ipywidgets as w
    except ImportError as e:
        raise ImportError("rl.explore needs ipywidgets: pip install 'ratelab[notebooks]'") from e
    return w


def _label(choice: object) -> str:
    return choice if isinstance(choice, str) else repr(choice)


def _readout(step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step))) if step > 0 else 2
    return f".{decimals}f"


def _nice_step(low: float, high: float) -> float:
    """A power of ten giving at most 200 steps from low to high."""
    return float(10 ** math.ceil(math.log10((high - low) / 200)))


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v))


def _current(name: str, exp: Experiment, server: ServerConfig | None) -> Any:
    """The value a control would read from the experiment and server as given (None: unset)."""
    if name in _EXPERIMENT_FIELDS:
        return getattr(exp, name)
    if name == "rate":
        parts = [p for p in exp.strategy.parts if isinstance(p, RateLimit)]
        return parts[0].max_rate if parts else None
    if name == "connections":
        parts = [p for p in exp.strategy.parts if isinstance(p, ConnectionLimit)]
        return parts[0].limit if parts else None
    if server is None:
        return 0.0 if name == "latency_s" else None
    if name == "algorithm":
        limits = server.kwargs["rate_limit"]
        return limits[0].algorithm if limits else None
    if name == "latency_s":
        latency = server.kwargs["latency"]
        if latency is None:
            return 0.0
        return latency.value_s if isinstance(latency, Fixed) else None
    if name == "rate_limit":
        limits = server.kwargs["rate_limit"]
        return limits[0] if len(limits) == 1 else None
    return server.kwargs.get(name)


def _range(name: str, spec: object, current: Any) -> Control:
    integer, minimum = {**_EXPERIMENT_NUMBERS, **_OTHER_NUMBERS}[name]
    kind = "integers" if integer else "numbers"
    valid = (
        f"must be a (low, high) or (low, high, step) range of {kind} with {minimum:g} <= low "
        "< high, or a list of choices"
    )
    if not isinstance(spec, tuple) or len(spec) not in (2, 3) or not all(map(_is_number, spec)):
        raise ConfigError(name, spec, valid)
    if integer and not all(isinstance(v, numbers.Integral) for v in spec):
        raise ConfigError(name, spec, valid)
    low, high = spec[0], spec[1]
    if not minimum <= low < high:
        raise ConfigError(name, spec, valid)
    if len(spec) == 3:
        step = spec[2]
        if not 0 < step <= high - low:
            raise ConfigError(name, spec, f"the step must be > 0 and at most high - low ({valid})")
    else:
        step = 1 if integer else min(_nice_step(low, high), 1.0)
    value = high if current is None or not _is_number(current) else min(max(current, low), high)
    if integer:
        return Control(name, int(value), int(low), int(high), int(step), integer=True)
    return Control(name, float(value), float(low), float(high), float(step))


def _choices(name: str, spec: Sequence[Any], current: Any) -> Control:
    choices = tuple(spec)
    if not choices:
        raise ConfigError(name, spec, "must list at least one choice")
    if name == "algorithm":
        bad = [c for c in choices if c not in ALGORITHMS]
        if bad:
            raise ConfigError(name, bad[0], f"each choice must be one of {', '.join(ALGORITHMS)}")
    if name == "strategy":
        bad = [c for c in choices if not isinstance(c, Strategy)]
        if bad:
            raise ConfigError(
                name, bad[0], "each choice must be a strategy such as rl.RateLimit(20)"
            )
    value = current if any(current == c for c in choices) else choices[0]
    return Control(name, value, choices=choices)


def make_controls(
    experiment: Experiment, server: LocalServer | None, specs: Mapping[str, object]
) -> dict[str, Control]:
    """Check every control and give each its starting value (the experiment's, kept within
    the range; the high end when the experiment has none). Raises ConfigError naming the
    first bad control."""
    config = ServerConfig.of(server)
    out: dict[str, Control] = {}
    for name, spec in specs.items():
        if name not in KNOWN:
            raise ConfigError(
                name, spec,
                f"is not a control: use one of {', '.join(KNOWN)} (an Experiment or server "
                "field, or rate / connections / algorithm)",
            )  # fmt: skip
        if name in ("algorithm", "rate_limit", "latency", "max_concurrency") and config is None:
            raise ConfigError(
                name, spec,
                "needs a server: pass server=rl.LocalServer(...) describing it",
            )  # fmt: skip
        if name == "algorithm" and not config.kwargs["rate_limit"]:  # type: ignore[union-attr]
            raise ConfigError(
                name, spec,
                "needs a server with a rate limit: server=rl.LocalServer(rate_limit="
                "rl.ServerRateLimit(20))",
            )  # fmt: skip
        current = _current(name, experiment, config)
        if isinstance(spec, list):
            control = _choices(name, spec, current)
        elif name in _EXPERIMENT_NUMBERS or name in _OTHER_NUMBERS:
            control = _range(name, spec, current)
        else:
            raise ConfigError(name, spec, "takes a list of choices, e.g. [choice1, choice2]")
        out[name] = control
    # every value of every control must make a valid Experiment and server
    start = {n: c.value for n, c in out.items()}
    for name, control in out.items():
        values = control.choices if control.choices is not None else (control.low, control.high)
        for v in values:
            try:
                apply_setting(experiment, config, {**start, name: v})
            except ConfigError as e:
                raise ConfigError(name, v, f"would not make a valid experiment: {e}") from e
    return out


def default_controls(experiment: Experiment, server: LocalServer | None) -> dict[str, object]:
    """The controls used when none are given, from what the strategy and server have:
    ``workers``; ``rate`` if the strategy has a RateLimit; ``connections`` if it has a
    ConnectionLimit; ``latency_s`` if the server's latency is fixed; ``algorithm`` if the
    server has a rate limit."""
    config = ServerConfig.of(server)
    out: dict[str, object] = {"workers": (1, max(100, 2 * experiment.workers))}
    rate = _current("rate", experiment, config)
    if rate is not None:
        out["rate"] = (1, max(60, 3 * math.ceil(rate)))
    conns = _current("connections", experiment, config)
    if conns is not None:
        out["connections"] = (1, max(50, 3 * conns))
    if config is not None:
        latency = _current("latency_s", experiment, config)
        if latency is not None:
            out["latency_s"] = (0.0, max(1.0, 2 * latency))
        if config.kwargs["rate_limit"]:
            out["algorithm"] = list(ALGORITHMS)
    return out


def _with_part(strategy: Strategy, kind: type, change: Callable[[Any], Strategy], new: Strategy,
               *, first: bool) -> Strategy:  # fmt: skip
    parts = list(strategy.parts)
    for i, p in enumerate(parts):
        if isinstance(p, kind):
            parts[i] = change(p)
            break
    else:
        parts.insert(0 if first else len(parts), new)
    if not parts:
        return Unlimited()
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def apply_setting(
    experiment: Experiment, server: ServerConfig | None, setting: Mapping[str, Any]
) -> tuple[Experiment, ServerConfig | None]:
    """The Experiment and server configuration a setting (control name -> value) gives.
    ``strategy`` is applied before ``rate`` and ``connections`` (which change its parts)."""
    changes = {k: v for k, v in setting.items() if k in _EXPERIMENT_FIELDS}
    exp = experiment.replace(**changes) if changes else experiment
    strategy = exp.strategy
    if "rate" in setting:
        rate = setting["rate"]
        strategy = _with_part(
            strategy, RateLimit, lambda p: dataclasses.replace(p, max_rate=rate),
            RateLimit(rate), first=True,
        )  # fmt: skip
    if "connections" in setting:
        n = int(setting["connections"])
        strategy = _with_part(
            strategy, ConnectionLimit,
            lambda p: ConnectionLimit(n, per_host=min(p.per_host, n)),
            ConnectionLimit(n), first=False,
        )  # fmt: skip
    if strategy is not exp.strategy:
        exp = exp.replace(strategy=strategy)
    config = server
    server_changes: dict[str, Any] = {}
    if "latency_s" in setting:
        server_changes["latency"] = Fixed(float(setting["latency_s"]))
    if "latency" in setting:
        server_changes["latency"] = setting["latency"]
    if "max_concurrency" in setting:
        server_changes["max_concurrency"] = int(setting["max_concurrency"])
    if "rate_limit" in setting:
        server_changes["rate_limit"] = (setting["rate_limit"],)
    if "algorithm" in setting and config is not None:
        from ratelab.server.policies import ServerRateLimit

        limits = server_changes.get("rate_limit", config.kwargs["rate_limit"])
        server_changes["rate_limit"] = tuple(
            ServerRateLimit(
                r.limit, r.window_s, algorithm=setting["algorithm"],
                routes=None if r.routes is None else list(r.routes),
            )
            for r in limits
        )  # fmt: skip
    if server_changes:
        config = (config or ServerConfig.empty()).replace(**server_changes)
        config.build()  # checks the values (ConfigError) without starting anything
    return exp, config


def setting_label(setting: Mapping[str, Any]) -> str:
    """``rate=20, connections=10``: a setting as a short label (for legends and pins)."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:g}"
        return _label(v)

    return ", ".join(f"{k}={fmt(v)}" for k, v in setting.items())
