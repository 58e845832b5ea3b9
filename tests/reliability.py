"""The suite's reliability ledger: what the fault tests tried, printed when the suite ends.

Tests that feed hostile input or inject a fault record it here; tests that check a stage's
conservation record the records in and the records found again on disk (kept + quarantined).
The summary line is the suite's claim in numbers: cases tried, faults injected, records lost.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class Ledger:
    hostile: Counter[str] = field(default_factory=Counter)  # cases tried, per stage
    faults: Counter[str] = field(default_factory=Counter)  # faults injected, per kind
    records_in: int = 0
    records_found: int = 0  # kept + quarantined rows read back from the output files

    def hostile_case(self, stage: str, n: int = 1) -> None:
        self.hostile[stage] += n

    def fault(self, kind: str, n: int = 1) -> None:
        self.faults[kind] += n

    def records(self, n_in: int, kept: int, quarantined: int) -> None:
        self.records_in += n_in
        self.records_found += kept + quarantined

    @property
    def lost(self) -> int:
        return self.records_in - self.records_found

    def summary(self) -> list[str]:
        per_stage = ", ".join(f"{k} {v}" for k, v in sorted(self.hostile.items()))
        per_kind = ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items()))
        return [
            f"hostile cases tried: {sum(self.hostile.values())} ({per_stage or '-'})",
            f"faults injected: {sum(self.faults.values())} ({per_kind or '-'})",
            f"records checked: {self.records_in}; records lost: {self.lost}",
        ]


LEDGER = Ledger()
