"""Union-find over integer items: how groups of different kinds are merged when they share a clip."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class UnionFind:
    """Disjoint sets over ``0..n-1`` with path halving and union by size."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.size = [1] * n

    def find(self, x: int) -> int:
        parent = self.parent
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: int, b: int) -> bool:
        """Join the sets of ``a`` and ``b``; True when they were apart."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return False
        if self.size[ra] < self.size[rb]:
            ra, rb = rb, ra
        self.parent[rb] = ra
        self.size[ra] += self.size[rb]
        return True

    def union_pairs(self, pairs: Iterable[tuple[int, int]]) -> int:
        joined = 0
        for a, b in pairs:
            joined += self.union(int(a), int(b))
        return joined

    def union_labels(self, labels: np.ndarray) -> None:
        """Join every set of items that share a label (label < 0 means "no label")."""
        labels = np.asarray(labels)
        idx = np.flatnonzero(labels >= 0)
        if not idx.size:
            return
        order = idx[np.argsort(labels[idx], kind="stable")]
        lab = labels[order]
        same = np.flatnonzero(lab[1:] == lab[:-1])
        for k in same:
            self.union(int(order[k]), int(order[k + 1]))

    def roots(self) -> np.ndarray:
        return np.fromiter(
            (self.find(i) for i in range(len(self.parent))), dtype=np.int64, count=len(self.parent)
        )
