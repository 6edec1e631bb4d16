"""The cost-minimising assignment of a round's orders to providers (for allocative efficiency).

Hungarian algorithm (shortest augmenting paths with potentials), O(n²·m) for n orders and
m ≥ n candidate providers; rounds are small (a bid window's worth of orders).
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def min_cost_assignment(cost: Sequence[Sequence[float]]) -> tuple[float, list[int]]:
    """Assign each row to a distinct column minimising the total; math.inf marks a forbidden
    pair. Returns (total, column of each row). Needs rows ≤ columns; raises ValueError when no
    complete assignment exists."""
    n = len(cost)
    if n == 0:
        return 0.0, []
    m = len(cost[0])
    if m < n:
        raise ValueError(f"{n} rows cannot be assigned to {m} columns")
    u = [0.0] * (n + 1)  # row potentials
    v = [0.0] * (m + 1)  # column potentials
    owner = [0] * (m + 1)  # row (1-based) holding each column; 0 = free
    way = [0] * (m + 1)
    for row in range(1, n + 1):
        owner[0] = row
        col0 = 0
        minv = [math.inf] * (m + 1)
        used = [False] * (m + 1)
        while True:
            used[col0] = True
            r = owner[col0]
            delta = math.inf
            col1 = 0
            for col in range(1, m + 1):
                if not used[col]:
                    reduced = cost[r - 1][col - 1] - u[r] - v[col]
                    if reduced < minv[col]:
                        minv[col] = reduced
                        way[col] = col0
                    if minv[col] < delta:
                        delta = minv[col]
                        col1 = col
            if math.isinf(delta):
                raise ValueError("no complete assignment: some row has no allowed column left")
            for col in range(m + 1):
                if used[col]:
                    u[owner[col]] += delta
                    v[col] -= delta
                else:
                    minv[col] -= delta
            col0 = col1
            if owner[col0] == 0:
                break
        while col0:
            prev = way[col0]
            owner[col0] = owner[prev]
            col0 = prev
    columns = [0] * n
    for col in range(1, m + 1):
        if owner[col]:
            columns[owner[col] - 1] = col - 1
    total = sum(cost[i][columns[i]] for i in range(n))
    return total, columns
