"""Reading a response's rate-limit headers back, in any style the server may speak.

:func:`read_headers` finds the style from the header names present (case-insensitively) and
returns the quotas they announce (:class:`~ratelab.protocol.quota.Quota`); a value that is
missing or malformed is skipped, never raised. :func:`retry_after_s` reads how long a
refusal asks the client to wait. The styles are described in
:mod:`ratelab.protocol.header_styles`, which writes them; a quota read back equals the one
written up to the style's rounding (remaining down, resets up).

What each style gives back: ``"ietf"`` one quota per ``RateLimit`` Item, named as the policy
(limit, window and unit from the ``RateLimit-Policy`` Item of that name; without one the
limit is NaN); ``"ietf-06"`` one quota named ``"ratelimit"``; ``"openai"`` quotas
``"requests"`` and ``"tokens"``; ``"anthropic"`` ``"requests"``, ``"tokens"``,
``"input-tokens"``, ``"output-tokens"`` (the ones present); ``"github"`` one quota named as
``x-ratelimit-resource`` (``"core"`` without it). Absolute resets (GitHub's epoch seconds,
Anthropic's dates) become seconds from ``now_epoch_s``, at least 0.

The IETF fields are Structured Field Lists (RFC 9651): a small parser here reads the part the
draft uses (Items that are Strings or Tokens, with Parameters); a field it cannot parse is
skipped whole, as RFC 9651 asks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime

from ratelab.protocol.quota import Quota

__all__ = ["detect_styles", "parse_duration", "read_headers", "retry_after_s"]

_Bare = int | float | str | bool | bytes
_TOKEN_RE = re.compile(r"[A-Za-z*][A-Za-z0-9:/!#$%&'*+\-.^_`|~]*")
_KEY_RE = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_NUMBER_RE = re.compile(r"-?\d{1,15}(\.\d{1,3})?")
_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|us|µs|ns|m|s)")
_DURATION_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_IETF_UNITS = {
    "requests": "requests",
    "request": "requests",
    "tokens": "tokens",
    "concurrent-requests": "concurrent",
}


class _SFError(ValueError):
    pass


class _SF:
    """A Structured Field List parser (RFC 9651 section 4.2), for Items and Inner Lists with
    Parameters. Raises :class:`_SFError` on anything malformed."""

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0

    def _ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def _peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def parse_list(self) -> list[tuple[_Bare | list, dict[str, _Bare]]]:
        out: list[tuple[_Bare | list, dict[str, _Bare]]] = []
        self._ws()
        while self.i < len(self.s):
            if self._peek() == "(":
                out.append((self._inner(), self._params()))
            else:
                out.append((self._bare(), self._params()))
            self._ws()
            if self.i >= len(self.s):
                return out
            if self._peek() != ",":
                raise _SFError("expected ','")
            self.i += 1
            self._ws()
            if self.i >= len(self.s):
                raise _SFError("trailing ','")
        return out

    def _inner(self) -> list:
        self.i += 1
        items: list = []
        while True:
            while self._peek() == " ":
                self.i += 1
            if self._peek() == ")":
                self.i += 1
                return items
            items.append((self._bare(), self._params()))
            if self._peek() not in (" ", ")"):
                raise _SFError("bad inner list")

    def _params(self) -> dict[str, _Bare]:
        params: dict[str, _Bare] = {}
        while self._peek() == ";":
            self.i += 1
            while self._peek() == " ":
                self.i += 1
            m = _KEY_RE.match(self.s, self.i)
            if m is None:
                raise _SFError("bad key")
            self.i = m.end()
            value: _Bare = True
            if self._peek() == "=":
                self.i += 1
                value = self._bare()
            params[m.group()] = value
        return params

    def _bare(self) -> _Bare:
        c = self._peek()
        if c == '"':
            return self._string()
        if c == "-" or c.isdigit():
            m = _NUMBER_RE.match(self.s, self.i)
            if m is None:
                raise _SFError("bad number")
            self.i = m.end()
            return float(m.group()) if m.group(1) else int(m.group())
        if c == "?":
            v = self.s[self.i + 1 : self.i + 2]
            if v not in ("0", "1"):
                raise _SFError("bad boolean")
            self.i += 2
            return v == "1"
        if c == ":":
            end = self.s.find(":", self.i + 1)
            if end < 0:
                raise _SFError("bad byte sequence")
            raw = self.s[self.i + 1 : end]
            self.i = end + 1
            return raw.encode()
        m = _TOKEN_RE.match(self.s, self.i)
        if m is None:
            raise _SFError("bad item")
        self.i = m.end()
        return m.group()

    def _string(self) -> str:
        out = []
        self.i += 1
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                if self._peek() not in ('"', "\\"):
                    raise _SFError("bad escape")
                out.append(self._peek())
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif not " " <= c <= "~":
                raise _SFError("bad character")
            else:
                out.append(c)
        raise _SFError("unterminated string")


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Names lower-cased; a name repeated (a multidict) joined with ", " (RFC 9110 5.3)."""
    out: dict[str, str] = {}
    for key, value in headers.items():
        k = str(key).lower()
        out[k] = f"{out[k]}, {value}" if k in out else str(value)
    return out


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        x = float(value.strip())
    except ValueError:
        return None
    return x if math.isfinite(x) else None


def parse_duration(text: str) -> float | None:
    """A Go duration (``"6m0s"``, ``"20ms"``, ``"1.5s"``, ``"1h2m3s"``) or a plain number of
    seconds -> seconds; None if it is neither."""
    text = text.strip()
    plain = _number(text)
    if plain is not None:
        return plain
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _DURATION_S[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos > 0 else None


def _date(text: str) -> float | None:
    """An RFC 3339 date (``2026-12-01T11:40:05Z``) or an HTTP date -> epoch seconds."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def detect_styles(headers: Mapping[str, str]) -> list[str]:
    """The header styles present in ``headers`` (usually one)."""
    names = set(_lower(headers))
    out = []
    if "ratelimit" in names or "ratelimit-policy" in names:
        out.append("ietf")
    if "ratelimit-remaining" in names or "ratelimit-limit" in names:
        out.append("ietf-06")
    if any(n.startswith("x-ratelimit-") and n.endswith(("-requests", "-tokens")) for n in names):
        out.append("openai")
    if any(n.startswith("anthropic-ratelimit-") for n in names):
        out.append("anthropic")
    if "x-ratelimit-remaining" in names or "x-ratelimit-limit" in names:
        out.append("github")
    return out


def _sf_list(value: str | None) -> list[tuple[_Bare | list, dict[str, _Bare]]]:
    if not value:
        return []
    try:
        return _SF(value).parse_list()
    except (_SFError, IndexError):
        return []


def _int_param(params: Mapping[str, _Bare], key: str) -> float | None:
    v = params.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
        return None
    return float(v)


def _ietf(h: Mapping[str, str]) -> list[Quota]:
    policies: dict[str, tuple[float, float | None, str]] = {}
    for name, params in _sf_list(h.get("ratelimit-policy")):
        q = _int_param(params, "q")
        if not isinstance(name, str) or q is None:
            continue
        unit_raw = params.get("qu", "requests")
        unit = _IETF_UNITS.get(unit_raw, unit_raw) if isinstance(unit_raw, str) else "requests"
        policies.setdefault(name, (q, _int_param(params, "w"), unit))
    out = []
    for name, params in _sf_list(h.get("ratelimit")):
        r = _int_param(params, "r")
        if not isinstance(name, str) or r is None:
            continue
        limit, window, unit = policies.get(name, (math.nan, None, "requests"))
        out.append(Quota(name, limit, r, _int_param(params, "t"), window, unit))
    return out


def _ietf_06(h: Mapping[str, str]) -> list[Quota]:
    remaining = _number(h.get("ratelimit-remaining"))
    if remaining is None or remaining < 0:
        return []
    limit = _number(h.get("ratelimit-limit"))
    reset = _number(h.get("ratelimit-reset"))
    return [
        Quota(
            "ratelimit",
            math.nan if limit is None else limit,
            remaining,
            None if reset is None else max(0.0, reset),
        )
    ]


def _openai(h: Mapping[str, str]) -> list[Quota]:
    out = []
    for unit in ("requests", "tokens"):
        remaining = _number(h.get(f"x-ratelimit-remaining-{unit}"))
        if remaining is None or remaining < 0:  # Azure sends -1 for "not enforced"
            continue
        limit = _number(h.get(f"x-ratelimit-limit-{unit}"))
        reset_text = h.get(f"x-ratelimit-reset-{unit}")
        reset = None if reset_text is None else parse_duration(reset_text)
        out.append(Quota(unit, math.nan if limit is None else limit, remaining, reset, None, unit))
    return out


def _anthropic(h: Mapping[str, str], now_epoch_s: float) -> list[Quota]:
    out = []
    for name in ("requests", "tokens", "input-tokens", "output-tokens"):
        remaining = _number(h.get(f"anthropic-ratelimit-{name}-remaining"))
        if remaining is None or remaining < 0:
            continue
        limit = _number(h.get(f"anthropic-ratelimit-{name}-limit"))
        reset_text = h.get(f"anthropic-ratelimit-{name}-reset")
        when = None if reset_text is None else _date(reset_text)
        reset = None if when is None else max(0.0, when - now_epoch_s)
        unit = "requests" if name == "requests" else "tokens"
        out.append(Quota(name, math.nan if limit is None else limit, remaining, reset, None, unit))
    return out


def _github(h: Mapping[str, str], now_epoch_s: float) -> list[Quota]:
    remaining = _number(h.get("x-ratelimit-remaining"))
    if remaining is None or remaining < 0:
        return []
    limit = _number(h.get("x-ratelimit-limit"))
    if limit is None:
        used = _number(h.get("x-ratelimit-used"))
        limit = math.nan if used is None else used + remaining
    when = _number(h.get("x-ratelimit-reset"))
    reset = None if when is None else max(0.0, when - now_epoch_s)
    name = (h.get("x-ratelimit-resource") or "core").strip() or "core"
    return [Quota(name, limit, remaining, reset)]


def read_headers(headers: Mapping[str, str], *, now_epoch_s: float) -> list[Quota]:
    """The quotas ``headers`` announce, in whichever style(s) they are written (see the
    module doc); ``[]`` when there are none. Never raises on what a server sent."""
    h = _lower(headers)
    out: list[Quota] = []
    for style in detect_styles(h):
        if style == "ietf":
            out += _ietf(h)
        elif style == "ietf-06":
            out += _ietf_06(h)
        elif style == "openai":
            out += _openai(h)
        elif style == "anthropic":
            out += _anthropic(h, now_epoch_s)
        else:
            out += _github(h, now_epoch_s)
    return out


def retry_after_s(headers: Mapping[str, str], *, now_epoch_s: float) -> float | None:
    """How long a response asks the client to wait, in seconds (never negative), or None if
    it does not say. ``X-Retry-After-Ms`` (ratelab's) or ``retry-after-ms`` (milliseconds)
    when present, as they are the more precise; else ``Retry-After`` as delta-seconds or an
    HTTP date (read against ``now_epoch_s``)."""
    h = _lower(headers)
    for name in ("x-retry-after-ms", "retry-after-ms"):
        ms = _number(h.get(name))
        if ms is not None:
            return max(0.0, ms / 1000)
    value = h.get("retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return max(0.0, seconds)
    when = _date(value)
    return None if when is None else max(0.0, when - now_epoch_s)
