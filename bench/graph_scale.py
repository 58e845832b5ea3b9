"""The whole data graph on a scale world, on one machine: the jobs `make demo` runs, through
the real `dagster job execute`, each timed, with what every step took and kept.

Why: the sample world shows that the graph is correct, not that it holds at 1 or 10 GB (the
memory of the global passes, size limits, paths under a data root of its own). This script
gives a scale world the data root docs/OPERATIONS.md ("Scale worlds") describes (`<root>/sample`
a link to the world, a Dagster instance of its own in `<root>/.dagster`), runs `reference`,
`sources`, `perplexity_models` per language, `crawl` (line dedup in groups of 8, one group per
copy), `corpus` and `train` with the sample's run configs (pipelines/sample/*.yaml), stops at the
first job that fails, and records per job: wall time, exit status, the peak memory of its
process tree (psutil, sampled every second), and per step the duration from Dagster's event
log and the documents in / kept / dropped from the stage's `_manifest.json`.

    python bench/graph_scale.py --world data/scale-40 --root runs/x40 \\
        --out bench/results/graph_scale40        # writes .txt and .json

Resuming: a stage reuses an output whose fingerprint (config, code, inputs) is unchanged, so
the same command again redoes only what is missing; `--from JOB` starts at JOB and takes the
earlier jobs' records from `<root>/graph_scale.json`, which every finished job updates
(`--until JOB` stops after JOB); `--report-only` rewrites the results from those records and
the instance. The 10 GB projection in the results is arithmetic on these measurements (the
time a job's steps ran x 420/40, plus its start-up time as measured), not a measurement.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
from report import machine_note, write_json

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LM_LANGUAGES = ("en",)  # the Makefile's LM_LANGUAGES
CRAWL = "sample"  # a scale world keeps the sample's crawl id
MB = 1024 * 1024
EXECUTE = ("job", "execute", "-m", "pipelines.definitions", "-a", "defs")  # the Makefile's


@dataclass(frozen=True)
class Job:
    """One `dagster job execute`: the job, its run config files, its partition."""

    name: str
    configs: tuple[str, ...] = ()
    partition: str | None = None

    @property
    def label(self) -> str:
        return f"{self.name}[{self.partition}]" if self.partition else self.name

    def command(self) -> list[str]:
        command = [str(BIN / "dagster"), *EXECUTE, "-j", self.name]
        command += [a for config in self.configs for a in ("-c", config)]
        if self.partition:
            command += ["--tags", json.dumps({"dagster/partition": self.partition})]
        return command


@dataclass
class StepRecord:
    step: str
    status: str
    seconds: float | None
    start: float | None  # epoch seconds, from the step's start and end events
    end: float | None
    outputs: list[dict] = field(default_factory=list)  # one per asset materialization


@dataclass
class JobRecord:
    job: str
    command: str
    returncode: int
    wall_s: float
    peak_rss_mb: float  # the job's process tree, summed (shared pages once per process)
    peak_process_mb: float  # the largest single process of the tree
    run_id: str | None = None
    run_status: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    checks: dict = field(default_factory=dict)  # asset checks: passed (a count), failed (names)


MEASURED = ("job", "command", "returncode", "wall_s", "peak_rss_mb", "peak_process_mb", "run_id")


def jobs(crawl_config: Path) -> list[Job]:
    """The Makefile's `demo` sequence; the crawl job with the scale world's line dedup."""
    sample = "pipelines/sample"
    return [
        Job("reference"),
        Job("sources", (f"{sample}/sources.yaml",)),
        *(
            Job("perplexity_models", (f"{sample}/perplexity_models.yaml",), lang)
            for lang in LM_LANGUAGES
        ),
        Job("crawl", (str(crawl_config),), CRAWL),
        Job("corpus", (f"{sample}/corpus.yaml",)),
        Job("train", (f"{sample}/train.yaml",)),
    ]


def prepare_root(world: Path, root: Path, group_size: int) -> tuple[dict[str, str], Path]:
    """`<root>/sample` -> the world, `<root>/.dagster` with the Makefile's instance settings,
    the crawl job's run config; returns the environment every command runs in."""
    root.mkdir(parents=True, exist_ok=True)
    link = root / "sample"
    if link.is_symlink() and link.resolve() != world.resolve():
        raise SystemExit(f"{link} points at {link.resolve()}, not {world}: use another --root")
    if not link.exists():
        link.symlink_to(world.resolve())
    home = root / ".dagster"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(
        "telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n"
    )
    crawl_config = root / "config" / "crawl.yaml"
    crawl_config.parent.mkdir(exist_ok=True)
    # JSON is YAML: one group of shards per copy of the sample (docs/OPERATIONS.md).
    crawl_config.write_text(
        json.dumps({"ops": {"cc_line_dedup": {"config": {"group_size": group_size}}}}) + "\n"
    )
    env = dict(os.environ, DAGSTER_HOME=str(home), LLAMAPIPE_DATA_ROOT=str(root))
    return env, crawl_config


def tree_rss(root: psutil.Process) -> list[int]:
    """The RSS of `root` and of each of its descendants alive now."""
    try:
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:  # the command has ended
        return []
    rss = []
    for process in processes:
        with contextlib.suppress(psutil.Error):  # ended since the listing
            rss.append(process.memory_info().rss)
    return rss


def run_measured(
    command: list[str], env: dict[str, str], log: Path
) -> tuple[int, float, float, float]:
    """Run `command` with its output in `log`; exit status, wall seconds, and the peak summed
    and single-process RSS (MB) of its process tree, sampled every second."""
    start = time.monotonic()
    peak_tree = peak_one = 0
    with open(log, "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid)
        while True:
            rss = tree_rss(root)
            peak_tree, peak_one = max(peak_tree, sum(rss)), max(peak_one, max(rss, default=0))
            try:
                returncode = proc.wait(timeout=1.0)
                break
            except subprocess.TimeoutExpired:
                continue
    return returncode, time.monotonic() - start, peak_tree / MB, peak_one / MB


def output_record(materialization) -> dict:
    """What one materialization wrote: asset, partition, whether the stage reused an up-to-date
    output, its numeric metadata, and the `counts` of the `_manifest.json` at its path."""
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    record = {
        "asset": materialization.asset_key.to_user_string(),
        "partition": materialization.partition,
        "reused": metadata.get("reused"),
        "numbers": {
            k: v for k, v in metadata.items() if isinstance(v, int | float) and k != "reused"
        },
        "counts": None,
    }
    if isinstance(metadata.get("path"), str):
        manifest = Path(metadata["path"]) / "_manifest.json"
        if manifest.exists():
            record["counts"] = json.loads(manifest.read_text()).get("counts")
    return record


def newest_run_id(home: Path, job: str, since: float) -> str | None:
    """The run of `job` created after `since` (epoch seconds), if the command got that far."""
    from dagster import DagsterInstance, RunsFilter

    with DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_run_records(filters=RunsFilter(job_name=job), limit=1)
    if records and records[0].create_timestamp.timestamp() >= since:
        return records[0].dagster_run.run_id
    return None


def describe(home: Path, record: JobRecord) -> None:
    """Fill in the run's status, its steps (duration from the step's start and end events,
    what it materialized) and its asset checks, from the instance's event log."""
    from dagster import DagsterEventType, DagsterInstance

    if record.run_id is None:
        return
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(record.run_id)
        record.run_status = run.status.value if run else None
        outputs: dict[str, list[dict]] = {}
        for entry in instance.all_logs(
            record.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION
        ):
            materialization = entry.dagster_event.event_specific_data.materialization
            outputs.setdefault(entry.step_key, []).append(output_record(materialization))
        checks = {"passed": 0, "failed": []}
        for entry in instance.all_logs(
            record.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        ):
            check = entry.dagster_event.event_specific_data
            if check.passed:
                checks["passed"] += 1
            else:
                checks["failed"].append(f"{check.asset_key.to_user_string()}:{check.check_name}")
        record.checks = checks
        record.steps = []
        for stats in sorted(
            instance.get_run_step_stats(record.run_id), key=lambda s: s.start_time or 0
        ):
            ended = stats.start_time and stats.end_time
            record.steps.append(
                StepRecord(
                    stats.step_key,
                    stats.status.value if stats.status else "?",
                    stats.end_time - stats.start_time if ended else None,
                    stats.start_time,
                    stats.end_time,
                    outputs.get(stats.step_key, []),
                )
            )


JOB_ROW = "{:26} {:>4} {:>8} {:>8} {:>12} {:>12} {:>12} {:>7}"
STEP_ROW = "{:20} {:30} {:17} {:>7} {:>10} {:>10} {:>8}  {}"


def count_summary(outputs: list[dict]) -> tuple[int | None, int | None, str]:
    """in, kept, dropped (the largest reasons) over a step's outputs with a manifest."""
    counts = [o["counts"] for o in outputs if o["counts"]]
    if not counts:
        return None, None, ""
    docs_in = sum(c.get("in", 0) for c in counts)
    kept = sum(c.get("kept", c.get("train", 0) + c.get("validation", 0)) for c in counts)
    dropped: dict[str, int] = {}
    for c in counts:
        for reason, n in (c.get("dropped") or {}).items():
            dropped[reason] = dropped.get(reason, 0) + n
    top = sorted(dropped.items(), key=lambda kv: -kv[1])[:3]
    text = ", ".join(f"{reason} {n:,}" for reason, n in top)
    if len(dropped) > 3:
        text += f", +{len(dropped) - 3} reasons"
    return docs_in, kept, text


def busy_s(record: JobRecord) -> float:
    """Seconds during which at least one of the job's steps ran (the union of their spans):
    the part of the wall time that grows with the data. The rest (a process per step importing
    the code location, the run's start and end) does not."""
    spans = sorted((s.start, s.end) for s in record.steps if s.start and s.end)
    busy, reach = 0.0, float("-inf")
    for start, end in spans:
        busy += max(0.0, end - max(start, reach))
        reach = max(reach, end)
    return busy


def projected_s(record: JobRecord, scale: float) -> float:
    """The steps' busy time x scale, plus the rest as measured; `train` as measured (a fixed
    number of steps)."""
    if record.job == "train":
        return record.wall_s
    busy = busy_s(record)
    return record.wall_s - busy + busy * scale


def checks_text(checks: dict) -> str:
    """passed/evaluated asset checks of a run."""
    if not checks:
        return ""
    return f"{checks['passed']}/{checks['passed'] + len(checks['failed'])}"


def report(header: list[str], records: list[JobRecord], scale: float) -> str:
    total = sum(r.wall_s for r in records)
    projected_total = sum(projected_s(r, scale) for r in records)
    lines = [f"# {h}" for h in header]
    lines += [
        f"# total wall time {total:,.0f} s ({total / 60:.1f} min) over {len(records)} jobs",
        "# checks: asset checks passed / evaluated in the run (failures listed under the steps)",
        "# peak tree MB: the job's processes' RSS summed (pages shared by forked workers count",
        "# once per process), sampled every second; peak proc MB: the largest single process",
        f"# busy s: while at least one step ran; projected s: busy x {scale:g} (linear in the "
        "world's size) + the rest as measured; train as measured (a fixed number of steps); "
        "projected, not measured",
        "",
        JOB_ROW.format(
            "job",
            "exit",
            "wall s",
            "busy s",
            "peak tree MB",
            "peak proc MB",
            "projected s",
            "checks",
        ),
    ]
    for r in records:
        lines.append(
            JOB_ROW.format(
                r.job,
                r.returncode,
                f"{r.wall_s:.1f}",
                f"{busy_s(r):.1f}",
                f"{r.peak_rss_mb:,.0f}",
                f"{r.peak_process_mb:,.0f}",
                f"{projected_s(r, scale):,.0f}",
                checks_text(r.checks),
            )
        )
    lines.append(
        JOB_ROW.format("total", "", f"{total:.1f}", "", "", "", f"{projected_total:,.0f}", "")
    )
    lines += [
        "",
        "# steps: seconds from Dagster's event log, start to end of the step (a job runs up to",
        "# one step per CPU at once); documents from the _manifest.json of each output",
        "# (tokenized_shards: kept = train + validation); in/s = documents in per second of the",
        "# step; (reused): the stage found its output up to date and kept it",
        STEP_ROW.format("job", "step", "status", "s", "in", "kept", "in/s", "dropped (largest)"),
    ]
    for r in records:
        check_steps = [s for s in r.steps if not s.outputs and s.status == "SUCCESS"]
        for s in r.steps:
            if s in check_steps:
                continue
            docs_in, kept, dropped = count_summary(s.outputs)
            reused = any(o["reused"] for o in s.outputs)
            lines.append(
                STEP_ROW.format(
                    r.job,
                    s.step,
                    s.status[:8] + (" (reused)" if reused else ""),
                    f"{s.seconds:.1f}" if s.seconds is not None else "",
                    f"{docs_in:,}" if docs_in is not None else "",
                    f"{kept:,}" if kept is not None else "",
                    f"{docs_in / s.seconds:,.0f}" if docs_in and s.seconds else "",
                    dropped,
                )
            )
        if check_steps:
            seconds = sum(s.seconds or 0 for s in check_steps)
            lines.append(f"{r.job:20} + {len(check_steps)} asset-check steps, {seconds:.1f} s")
        for name in r.checks.get("failed", []):
            lines.append(f"{r.job:20} ASSET CHECK FAILED: {name}")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--world", type=Path, required=True, help="a scale world")
    parser.add_argument("--root", type=Path, required=True, help="the data root to create, use")
    parser.add_argument("--out", default="bench/results/graph_scale40", help="path, no suffix")
    parser.add_argument("--group-size", type=int, default=8, help="cc_line_dedup's group")
    parser.add_argument("--project-factor", type=int, default=420, help="factor to project to")
    parser.add_argument("--from", dest="start", help="first job to run (a label: crawl[sample])")
    parser.add_argument("--until", help="last job to run (a label; default: through train)")
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the results from <root>'s records"
    )
    return parser.parse_args()


def load_state(state: Path) -> tuple[list[str], list[JobRecord]]:
    """The header and what was measured of each job, from `<root>/graph_scale.json`."""
    data = json.loads(state.read_text())
    return data["header"], [JobRecord(**{k: r[k] for k in MEASURED}) for r in data["jobs"]]


def write_results(out: str, header: list[str], records: list[JobRecord], scale: float) -> int:
    failed = next((r for r in records if r.returncode != 0), None)
    text = report(header, records, scale)
    if failed:
        text += f"\n# STOPPED: {failed.job} failed (exit {failed.returncode}); its log is in "
        text += f"<root>/logs/; after the fix, rerun with --from {failed.job}\n"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(f"{out}.txt").write_text(text)
    jobs_json = [asdict(r) for r in records]
    write_json(
        f"{out}.json", {"header": header, "failed": failed and failed.job, "jobs": jobs_json}
    )
    print(text)
    if failed:
        print(f"[graph_scale] stopped: {failed.job} failed", file=sys.stderr)
    return 1 if failed else 0


def main() -> int:
    args = parse_args()
    world, root = args.world.resolve(), args.root.resolve()
    stamp = json.loads((world / "_scale.json").read_text())
    scale = args.project_factor / stamp["factor"]
    home, state = root / ".dagster", root / "graph_scale.json"
    if args.report_only:
        header, records = load_state(state)
        for record in records:
            describe(home, record)
        return write_results(args.out, header, records, scale)

    env, crawl_config = prepare_root(world, root, args.group_size)
    (root / "logs").mkdir(exist_ok=True)
    todo = jobs(crawl_config)
    labels = [job.label for job in todo]
    for label in (args.start, args.until):
        if label and label not in labels:
            raise SystemExit(f"{label}: not a job of {labels}")
    if args.until:
        todo = todo[: labels.index(args.until) + 1]
    records: list[JobRecord] = []
    if args.start:
        done = {r.job: r for r in load_state(state)[1]} if state.exists() else {}
        for label in labels[: labels.index(args.start)]:
            if label not in done or done[label].returncode != 0:
                raise SystemExit(f"--from {args.start}: no successful {label} in {state}")
            describe(home, done[label])
            records.append(done[label])
        todo = todo[labels.index(args.start) :]

    add = subprocess.run([str(BIN / "llamapipe"), "crawls", "add", CRAWL], env=env, cwd=REPO)
    if add.returncode:
        raise SystemExit("llamapipe crawls add failed")
    size = sum(stamp["files"].values())  # the world's files, as its stamp lists them
    header = [
        " ".join(["bench/graph_scale.py", *map(shlex.quote, sys.argv[1:])]),
        f"{machine_note()}, {psutil.virtual_memory().total / 2**30:.0f} GiB memory",
        f"world: {args.world} (factor {stamp['factor']}), {size / 1e9:.2f} GB; data root "
        f"{args.root}, DAGSTER_HOME {args.root}/.dagster (SQLite); cc_line_dedup group_size "
        f"{args.group_size}",
        "each job: dagster job execute -m pipelines.definitions -a defs -j JOB [-c CONFIG] "
        "[--tags dagster/partition], multiprocess executor, LLAMAPIPE_SHARD_WORKERS "
        f"{env.get('LLAMAPIPE_SHARD_WORKERS', 'unset (every CPU)')}",
    ]
    for job in todo:
        command = job.command()
        log = root / "logs" / f"{job.label}.log"
        print(f"[graph_scale] {job.label}: running (log {log})", flush=True)
        started = time.time()
        returncode, wall, tree, one = run_measured(command, env, log)
        shown = " ".join(shlex.quote(a) for a in [Path(command[0]).name, *command[1:]])
        record = JobRecord(job.label, shown, returncode, wall, tree, one)
        record.run_id = newest_run_id(home, job.name, started)
        describe(home, record)
        records.append(record)
        print(
            f"[graph_scale] {job.label}: exit {returncode}, {wall:.1f} s, peak tree {tree:,.0f} MB",
            flush=True,
        )
        write_json(str(state), {"header": header, "jobs": [asdict(r) for r in records]})
        if returncode != 0:
            break
    return write_results(args.out, header, records, scale)


if __name__ == "__main__":
    sys.exit(main())
