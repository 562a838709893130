"""`--shard i/N`: one of N deterministic slices of an eval's selected cases, so N machines (a CI
matrix, Kubernetes jobs, Slurm array tasks, GNU parallel) split one eval, and `composite eval merge`
puts the slices back together.

Shard i takes the selected cases at positions i-1, i-1+N, i-1+2N, ...: the slices are balanced
(their sizes differ by at most one), they depend only on the file's bytes and the selection
(`--filter`, `--limit`), never on the machine, and every repeat of a case stays in its case's shard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from composite_cli.evals.runner import EvalError

T = TypeVar("T")
_SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class BadShard(EvalError):
    """`--shard` is not i/N with 1 ≤ i ≤ N, or asks for more shards than there are cases."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This shard's slice of `items` (the selection, in file order)."""
        if len(items) < self.count:
            raise BadShard(
                f"--shard {self}: the selection has {len(items)} case{'s' if len(items) != 1 else ''}, "
                f"fewer than the {self.count} shards; use at most {len(items)} shards"
            )
        return list(items[self.index - 1 :: self.count])

    def saved(self, selected: int) -> dict[str, Any]:
        """What an eval records about its shard: which one, of how many, out of how many cases."""
        return {"index": self.index, "count": self.count, "selected": selected}


def parse_shard(text: str) -> Shard:
    """`2/4` → Shard(2, 4). Anything else (0/2, 3/2, x/y, 1/0) → BadShard naming --shard."""
    match = _SHARD.match(text)
    if match:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count:
            return Shard(index, count)
    raise BadShard(f"--shard expects i/N with 1 ≤ i ≤ N (e.g. 2/4 is the second of four), got {text!r}")


def interleave(slices: Sequence[Sequence[T]]) -> list[T]:
    """The selection the slices were taken from (the inverse of Shard.take over all shards, in
    shard order): position p of the whole is slice p % N at p // N."""
    count = len(slices)
    total = sum(len(s) for s in slices)
    return [slices[p % count][p // count] for p in range(total)]
