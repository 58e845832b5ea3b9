"""The suite's reliability ledger: what the fault tests tried, printed when the suite ends.

Tests that feed hostile input or inject a fault record it here; tests that check a stage's
conservation record the records in and the records found again on disk (kept + quarantined).
The summary line is the suite's claim in numbers: cases tried, faults injected, records lost.

A test records its figures before it asserts on them: a case that fails still counts, so the
summary can report a loss instead of a 0 that nothing could have contradicted.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Ledger:
    hostile: Counter[str] = field(default_factory=Counter)  # cases tried, per stage
    faults: Counter[str] = field(default_factory=Counter)  # faults injected, per kind
    records_in: int = 0
    # Counted per case, so that one case's surplus cannot hide another case's loss.
    lost: int = 0  # records in but neither kept nor quarantined
    extra: int = 0  # rows read back beyond the records in

    def hostile_case(self, stage: str, n: int = 1) -> None:
        self.hostile[stage] += n

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] += n

    def records(self, n_in: int, kept: int, quarantined: int) -> None:
        """One conservation check: the records in, and the rows read back from the files."""
        self.records_in += n_in
        self.lost += max(n_in - kept - quarantined, 0)
        self.extra += max(kept + quarantined - n_in, 0)

    def summary(self) -> list[str]:
        per_stage = ", ".join(f"{k} {v}" for k, v in sorted(self.hostile.items()))
        per_kind = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return [
            f"hostile cases tried: {sum(self.hostile.values())} ({per_stage or '-'})",
            f"faults injected: {sum(self.faults.values())} ({per_kind or '-'})",
            f"records checked: {self.records_in}; records lost: {self.lost}"
            f"; records extra: {self.extra}",
        ]


LEDGER = Ledger()
