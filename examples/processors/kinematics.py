"""Local helper shared by the example processors: shipped as source with each of them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def invariant_mass(mu1: dict[str, float], mu2: dict[str, float]) -> float:
    """Mass of a pair of massless muons from (pt, eta, phi)."""
    m2 = (
        2.0
        * mu1["pt"]
        * mu2["pt"]
        * (math.cosh(mu1["eta"] - mu2["eta"]) - math.cos(mu1["phi"] - mu2["phi"]))
    )
    return math.sqrt(max(m2, 0.0))


class Histogram:
    """Fixed-width bins over [low, high); values outside are counted apart."""

    def __init__(self, bins: int, low: float, high: float) -> None:
        self.bins, self.low, self.high = bins, low, high
        self.counts = [0] * bins
        self.outside = 0

    def fill(self, values: Iterable[float]) -> None:
        width = (self.high - self.low) / self.bins
        for v in values:
            i = math.floor((v - self.low) / width)
            if 0 <= i < self.bins:
                self.counts[i] += 1
            else:
                self.outside += 1

    def to_dict(self) -> dict[str, object]:
        return {
            "bins": self.bins,
            "low": self.low,
            "high": self.high,
            "counts": self.counts,
            "outside": self.outside,
        }


def add_counts(a: Sequence[int], b: Sequence[int]) -> list[int]:
    return [x + y for x, y in zip(a, b, strict=True)]
