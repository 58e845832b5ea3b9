"""The paper's suites during training (optional, `eval_suites`): benchmark values over training
tokens, the other half of the paper's Figure 2 beside the held-out curves.

At every checkpoint the trainer writes, rank 0 evaluates that checkpoint with the suite runner
(training/evaluation/suite_run.py: the same tasks, data and unavailability rules as the
`evaluation` asset) and appends one line to `suites.jsonl` in the run's files; the other ranks
wait at a barrier. Reading the checkpoint back rather than the live model keeps the harness
away from a sharded model (every rank would have to take part in every forward), at the cost
of one unsharded copy on rank 0's device while it runs: meant for small suites and limits.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist

from training.config import TrainConfig
from training.evaluation.suites import suites_named
from training.run_files import SUITES_FILE


class SuiteCurves:
    def __init__(self, config: TrainConfig, main: bool, run_files: Path, device: torch.device):
        self.suites = suites_named(config.eval_suites) if config.eval_suites else []
        self.config, self.main, self.run_files, self.device = config, main, run_files, device

    def evaluate(self, checkpoint: str | Path, step: int, tokens_seen: int) -> None:
        """Rank 0 scores `checkpoint` and appends the rows; every rank returns together."""
        if not self.suites:
            return
        if self.main:
            from training.evaluation.suite_run import SuiteSettings, run_suites

            config = self.config
            settings = SuiteSettings(
                benchmarks=config.eval_benchmarks,
                offline=bool(config.eval_benchmarks),
                limit=config.eval_suite_limit,
                device=str(self.device),
                seed=config.seed,
            )
            work = self.run_files / "suites" / f"step-{step:07d}"
            report = run_suites(str(checkpoint), self.suites, work, settings)
            line = {"step": step, "tokens_seen": tokens_seen, **report}
            with open(self.run_files / SUITES_FILE, "a") as f:
                f.write(json.dumps(line) + "\n")
        if dist.is_available() and dist.is_initialized():
            dist.barrier()
