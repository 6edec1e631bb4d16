"""The double-entry ledger and the exact accrual arithmetic.

Every movement of money is one LedgerEntry moving `amount` (> 0, integer micro-units) FROM
`debit` TO `credit`. Balances live on the records (Account.balance, Deployment.escrow) for speed;
the "mint" source's balance is minus MarketState.total_minted. So at every moment

    Σ account balances + Σ escrows == total minted,

no balance but the mint's is negative, and replaying the entries from zero gives every balance.
audit() checks exactly that.

Accrual: a lease billed for `ms` milliseconds in total at `rate` per hour owes
money.accrued(rate, ms) = floor(rate × ms / 3,600,000) in total; each settlement pays
(owed − paid), so no fraction is lost between settlements.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from marketplace.core import money
from marketplace.core.errors import InsufficientFunds
from marketplace.core.state import MINT, AuditReport, LedgerEntry, MarketState


@dataclass(frozen=True, slots=True)
class Billing:
    """One open lease's billing line: billed from `start_ms` at `rate` per hour, `paid` so far,
    billing frozen at `stop_ms` when set (e.g. a provider's last heartbeat)."""

    rate: int
    start_ms: int
    paid: int
    stop_ms: int | None = None

    def owed(self, t_ms: int) -> int:
        end = t_ms if self.stop_ms is None else min(t_ms, self.stop_ms)
        return money.accrued(self.rate, end - self.start_ms)


def due(lines: Iterable[Billing], t_ms: int) -> int:
    """What the lines owe at `t_ms` beyond what they were paid."""
    return sum(line.owed(t_ms) - line.paid for line in lines)


def run_dry_at(lines: list[Billing], funds: int, from_ms: int) -> int | None:
    """The first millisecond t ≥ from_ms at which the lines owe more than `funds` (beyond what
    they were paid), or None if that never happens; if they owe more already at from_ms, the
    first millisecond they did. Exact: a closed form for one line, else a binary search on the
    integer accrual (which only grows with t) between tight bounds."""
    if due(lines, from_ms) > funds:
        return _first_over(lines, funds, min(line.start_ms for line in lines), from_ms)
    # past every start and stop, live lines accrue linearly and the others stay constant
    t0 = max([from_ms] + [line.start_ms for line in lines] + [line.stop_ms or 0 for line in lines])
    if due(lines, t0) > funds:
        return _first_over(lines, funds, from_ms, t0)
    live = [line for line in lines if line.stop_ms is None and line.rate > 0]
    if not live:
        return None
    fixed = due([line for line in lines if line.stop_ms is not None or line.rate == 0], t0)
    need = funds - fixed + sum(line.paid for line in live)  # live accrual must pass this
    if len(live) == 1:
        line = live[0]
        # floor(r·(t−s)/H) ≥ need+1  ⇔  r·(t−s) ≥ (need+1)·H
        return max(t0, line.start_ms + -(-(need + 1) * money.MS_PER_HOUR // line.rate))
    rates = sum(line.rate for line in live)
    weighted = sum(line.rate * line.start_ms for line in live)
    # floors lose less than 1 each: Σx ≥ Σfloor(x) > Σx − k bounds the answer on both sides
    lo = max(t0, (money.MS_PER_HOUR * need + weighted) // rates)
    hi = max(lo, (money.MS_PER_HOUR * (need + len(live)) + weighted) // rates + 1)
    return _first_over(lines, funds, lo, hi)


def _first_over(lines: list[Billing], funds: int, lo: int, hi: int) -> int:
    """Smallest t in [lo, hi] with due(lines, t) > funds (due(hi) > funds is given)."""
    while lo < hi:
        mid = (lo + hi) // 2
        if due(lines, mid) > funds:
            hi = mid
        else:
            lo = mid + 1
    return lo


class Ledger:
    """Moves money between account keys and records the entries.

    `balance_of`/`add_to` read and change the balance behind a key (the market keeps them on its
    records); `on_entry` sees every new entry (the journal); `keep` stores entries in the state.
    """

    def __init__(
        self,
        state: MarketState,
        balance_of: Callable[[str], int],
        add_to: Callable[[str, int], None],
        on_entry: Callable[[LedgerEntry], None] | None = None,
        keep: bool = True,
    ) -> None:
        self.state = state
        self._balance_of = balance_of
        self._add_to = add_to
        self._on_entry = on_entry
        self._keep = keep

    def balance(self, key: str) -> int:
        if key == MINT:
            return -self.state.total_minted
        return self._balance_of(key)

    def transfer(
        self, time_ms: int, debit: str, credit: str, amount: int, memo: str, lease_id: str = ""
    ) -> LedgerEntry | None:
        """Move `amount` from `debit` to `credit`. Zero moves nothing (and records nothing)."""
        if amount < 0:
            raise ValueError(f"a transfer amount must not be negative: {amount}")
        if amount == 0:
            return None
        if debit != MINT and self.balance(debit) < amount:
            raise InsufficientFunds(
                f"{debit} holds {money.format_amount(self.balance(debit))}, "
                f"needs {money.format_amount(amount)}"
            )
        if debit == MINT:
            self.state.total_minted += amount
        else:
            self._add_to(debit, -amount)
        self._add_to(credit, amount)
        entry = LedgerEntry(
            id=self.state.next_ledger_id,
            time_ms=time_ms,
            debit=debit,
            credit=credit,
            amount=amount,
            memo=memo,
            lease_id=lease_id,
        )
        self.state.next_ledger_id += 1
        if self._keep:
            self.state.ledger.append(entry)
        if self._on_entry is not None:
            self._on_entry(entry)
        return entry


@dataclass(slots=True)
class Replay:
    """What replaying ledger entries from zero gives: how many, the total minted, every key's
    balance, and the entries that move no money (each a problem)."""

    entries: int = 0
    minted: int = 0
    balances: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, entries: Iterable[LedgerEntry]) -> Replay:
        """Replay `entries` on top of this (in place); returns self."""
        balances = self.balances
        for entry in entries:
            self.entries += 1
            if entry.amount <= 0 and len(self.problems) < 50:
                self.problems.append(f"entry {entry.id} moves {entry.amount}")
            if entry.debit == MINT:
                self.minted += entry.amount
            else:
                balances[entry.debit] = balances.get(entry.debit, 0) - entry.amount
            balances[entry.credit] = balances.get(entry.credit, 0) + entry.amount
        return self


def audit(state: MarketState, replay: bool = True, stored: Replay | None = None) -> AuditReport:
    """Check the books (see the module docstring). `replay` also replays the entries: `stored`
    (the replay of those no longer in memory, which precede state.ledger), then the kept ones."""
    problems: list[str] = []
    balances: dict[str, int] = {}
    for account in state.accounts.values():
        balances[f"acct:{account.address}"] = account.balance
    for dep in state.deployments.values():
        balances[f"escrow:{dep.id}"] = dep.escrow
    for key, value in balances.items():
        if value < 0:
            problems.append(f"{key} is negative: {value}")
    total = sum(balances.values())
    if total != state.total_minted:
        problems.append(f"balances sum to {total}, minted {state.total_minted}")
    replayed_entries = 0
    if replay:
        done = (stored or Replay()).add(state.ledger)
        problems += done.problems
        replayed, minted, replayed_entries = done.balances, done.minted, done.entries
        if minted != state.total_minted:
            problems.append(f"ledger mints {minted}, state says {state.total_minted}")
        for key in balances.keys() | replayed.keys():
            if balances.get(key, 0) != replayed.get(key, 0):
                problems.append(
                    f"{key}: balance {balances.get(key, 0)}, ledger {replayed.get(key, 0)}"
                )
    return AuditReport(
        balanced=not problems,
        entries=replayed_entries if replay else state.next_ledger_id - 1,
        total_minted=state.total_minted,
        problems=tuple(problems[:50]),
    )
