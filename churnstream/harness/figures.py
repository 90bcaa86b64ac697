"""Figures rounded to what they mean, with their units, for the printed report and TEST_RESULTS.md.

A latency of 63.9 ms, not 63.91234; 154 ms, not 154.0; a rate of 4,999/s; a ratio of 1.17x; a
difference from the offline model of 6e-17, not 5.551115123125783e-17. A figure that was not
measured reads "not measured", never "n/a/s". Pure functions.
"""

from __future__ import annotations

MISSING = "not measured"


def ms(value: float | None) -> str:
    """Milliseconds: one decimal below 100 ms (the client's resolution matters there), whole above."""
    if value is None:
        return MISSING
    if abs(value) >= 100:
        return f"{value:,.0f} ms"
    return f"{value:.1f} ms"


def ms_bare(value: float | None) -> str:
    """:func:`ms` without the unit, for table cells under a "ms" heading."""
    text = ms(value)
    return text.removesuffix(" ms")


def seconds(value: float | None) -> str:
    if value is None:
        return MISSING
    if abs(value) >= 100:
        return f"{value:,.0f} s"
    if abs(value) >= 10:
        return f"{value:.1f} s"
    return f"{value:.2f} s"


def rate(value: float | None, unit: str = "/s") -> str:
    """Events per second: whole numbers with thousands separators (one decimal below 10)."""
    if value is None:
        return MISSING
    if abs(value) < 10:
        return f"{value:.1f}{unit}"
    return f"{value:,.0f}{unit}"


def count(value: int | None) -> str:
    return MISSING if value is None else f"{value:,}"


def ratio(value: float | None) -> str:
    """A multiple: 1.17x; 31x above 10."""
    if value is None:
        return MISSING
    if abs(value) >= 10:
        return f"{value:,.0f}x"
    return f"{value:.2f}x"


def percent(value: float | None) -> str:
    """A share given as a fraction: 0.856 -> 86%."""
    return MISSING if value is None else f"{value * 100:.0f}%"


def tiny(value: float | None) -> str:
    """A difference that should be zero: one significant digit (6e-17), 0 when it is."""
    if value is None:
        return MISSING
    if value == 0:
        return "0"
    if abs(value) < 1e-3:
        return f"{value:.0e}"
    return f"{value:.3g}"


def spread_ms(summary: dict[str, float | None]) -> str:
    """A median and its range over repeats: "63.9 ms (58.2-71.0)"."""
    if summary.get("median") is None:
        return MISSING
    low, high = ms_bare(summary["min"]), ms_bare(summary["max"])
    return f"{ms(summary['median'])} ({low}-{high})"
