"""One quota as a response announces it, in any header style.

The server writes a response's quotas with :func:`ratelab.protocol.header_styles.format_headers`
and a client reads them back with :func:`ratelab.protocol.header_reading.read_headers`; a
quota read back from the headers equals the one written, up to each style's rounding."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COST_HEADER", "UNITS", "Quota"]

#: The request header carrying a request's cost (tokens) when the Experiment has a ``cost``:
#: a decimal integer. The server charges a ``unit="tokens"`` quota this much.
COST_HEADER = "X-Ratelab-Cost"

#: What a quota counts.
UNITS = ("requests", "tokens", "concurrent")


@dataclass(frozen=True, slots=True)
class Quota:
    """A quota's state in one response.

    ``name``: the policy's name (``"requests"``, ``"tokens"``, ``"input-tokens"``, ...);
    ``limit``: what one window allows; ``remaining``: what is left now; ``reset_s``:
    seconds from the response until the quota is whole again (``None`` if not said);
    ``window_s``: the window's length (``None`` if the style does not say it);
    ``unit``: one of :data:`UNITS`."""

    name: str
    limit: float
    remaining: float
    reset_s: float | None = None
    window_s: float | None = None
    unit: str = "requests"
