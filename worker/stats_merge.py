"""Column statistics of an append, from the parent snapshot's statistics and the new files'
alone, so an incremental view's run costs what its new rows cost, not its history.

count, nulls and completeness add up exactly; min and max combine; mean and the sample
standard deviation combine exactly (pooled, from each side's count, mean and deviation);
approx_count_distinct, which cannot be combined from two estimates, becomes the larger of
the two (a lower bound of the true value; a full refresh recomputes it).
"""

from __future__ import annotations

import math
from typing import Any


def _pick(a: Any, b: Any, choose: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    try:
        return choose(a, b)
    except TypeError:
        return None


def _pooled(n1: int, m1: Any, s1: Any, n2: int, m2: Any, s2: Any) -> tuple[Any, Any]:
    if not n1:
        return m2, s2
    if not n2:
        return m1, s1
    if m1 is None or m2 is None:
        return None, None
    n = n1 + n2
    mean = (n1 * m1 + n2 * m2) / n
    if n < 2:
        return mean, None
    ss1 = (s1 or 0.0) ** 2 * (n1 - 1) + n1 * (m1 - mean) ** 2
    ss2 = (s2 or 0.0) ** 2 * (n2 - 1) + n2 * (m2 - mean) ** 2
    return mean, math.sqrt((ss1 + ss2) / (n - 1))


def merge_column_stats(parent: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    merged: dict[str, dict[str, Any]] = {}
    for name, add in new.items():
        old = parent.get(name)
        if old is None or old.get("type") != add.get("type"):
            return {}  # the schema changed: nothing sound to say (callers recompute)
        count = int(old.get("count") or 0) + int(add.get("count") or 0)
        nulls = int(old.get("nulls") or 0) + int(add.get("nulls") or 0)
        total = count + nulls
        mean, deviation = _pooled(int(old.get("count") or 0), old.get("mean"), old.get("standard_deviation"),
                                  int(add.get("count") or 0), add.get("mean"), add.get("standard_deviation"))
        merged[name] = {
            **add, "count": count, "nulls": nulls, "completeness": (count / total) if total else None,
            "min": _pick(old.get("min"), add.get("min"), min),
            "max": _pick(old.get("max"), add.get("max"), max),
            "mean": mean if add.get("mean") is not None or old.get("mean") is not None else None,
            "standard_deviation": deviation,
            "approx_count_distinct": max(int(old.get("approx_count_distinct") or 0),
                                         int(add.get("approx_count_distinct") or 0)),
        }
    return merged
