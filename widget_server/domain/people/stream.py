"""The random stream of one persona: SHA-256 in counter mode over (generator version, seed), so that the same
seed gives the same draws on every Python, machine and run (no `random`, no `hash()`, no process state).

Every draw is integer arithmetic or IEEE-754 `+ - * /` on values made from integers, which are exact the same
everywhere; `exp` is computed by repeated squaring rather than libm's, whose last bit may differ by platform.
"""

from __future__ import annotations

import hashlib
import struct
from bisect import bisect_right
from collections.abc import Sequence

TWO_53 = float(1 << 53)
WORDS = struct.Struct(">4Q")
SQRT_3 = 1.7320508075688772  # the variance of a sum of four uniforms is 1/3


class Draws:
    """Draws for one persona, in the order the generator asks for them."""

    def __init__(self, version: str, seed: str) -> None:
        self._key = hashlib.sha256(f"persona\x00{version}\x00{seed}".encode("utf-8", "surrogatepass")).digest()
        self._counter = 0
        self._words: list[int] = []

    def u64(self) -> int:
        if not self._words:
            block = hashlib.sha256(self._key + self._counter.to_bytes(8, "big")).digest()
            self._counter += 1
            self._words = list(WORDS.unpack(block))
            self._words.reverse()  # popped from the end: the block's first word first
        return self._words.pop()

    def unit(self) -> float:
        """Uniform in [0, 1), 53 bits."""
        if not self._words:
            return (self.u64() >> 11) / TWO_53
        return (self._words.pop() >> 11) / TWO_53

    def below(self, n: int) -> int:
        """Uniform integer in [0, n) (the modulo bias of a 64-bit word is below 2^-40 for any n used here)."""
        return self.u64() % n

    def chance(self, p: float) -> bool:
        return self.unit() < p

    def normal(self) -> float:
        """Approximately standard normal: the Irwin-Hall sum of four 16-bit uniforms, centred and scaled to unit
        variance (tails end at ±3.46 SD, which bodies and incomes are clamped to anyway)."""
        word = self.u64()
        total = (word & 0xFFFF) + (word >> 16 & 0xFFFF) + (word >> 32 & 0xFFFF) + (word >> 48)
        return (total / 65536.0 - 2.0) * SQRT_3

    def pick(self, table: Choice) -> str:
        return table.values[bisect_right(table.cumulative, self.unit() * table.total)]

    def pick_weighted(self, values: Sequence[str], weights: Sequence[float]) -> str:
        """`pick(Choice(values, weights))` without building the table (for weights that change per draw)."""
        total = 0.0
        for weight in weights:
            if weight > 0:
                total += float(weight)
        threshold, running, last = self.unit() * total, 0.0, ""
        for value, weight in zip(values, weights, strict=True):
            if weight > 0:
                running += float(weight)
                last = value
                if threshold < running:
                    return value
        return last


class Choice:
    """A weighted choice among values, its cumulative weights summed once in a fixed order."""

    __slots__ = ("values", "cumulative", "total")

    def __init__(self, values: Sequence[str], weights: Sequence[float]) -> None:
        if len(values) != len(weights) or not values:
            raise ValueError("a choice needs one weight per value")
        kept = [(v, float(w)) for v, w in zip(values, weights, strict=True) if w > 0]
        self.values = [v for v, _ in kept]
        self.cumulative: list[float] = []
        running = 0.0
        for _, weight in kept:
            running += weight
            self.cumulative.append(running)
        self.cumulative[-1] = float("inf")  # a draw of exactly the total still lands on the last value
        self.total = running

    @classmethod
    def of(cls, weights: dict[str, float]) -> Choice:
        return cls(list(weights), list(weights.values()))

    def probabilities(self) -> dict[str, float]:
        previous, out = 0.0, {}
        for value, cum in zip(self.values, self.cumulative, strict=True):
            cum = self.total if cum == float("inf") else cum
            out[value] = (cum - previous) / self.total
            previous = cum
        return out


def exp(x: float) -> float:
    """e**x for |x| < 8 to about 1e-9 relative, by (1 + x/2^20)^(2^20): only multiplications."""
    y = 1.0 + x / 1048576.0
    for _ in range(20):
        y *= y
    return y
