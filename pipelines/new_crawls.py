"""New crawls without a person acting: a sensor and a schedule over the crawl index, the
automation that brings the corpus up to date, and the choice to retrain on new data.

- `new_crawls` (sensor): reads the crawl index, adds each new crawl as a `crawls` partition
  and requests one `crawl` job run for it (which fetches its segments, then CCNet and C4).
  Its cursor lists the crawls it requested, so each is requested once, even if its
  partition is deleted later. Evaluated every `LLAMAPIPE_NEW_CRAWLS_INTERVAL_S` (a week).
- `new_crawls_weekly` (schedule): the same check at a fixed time (cron
  `LLAMAPIPE_NEW_CRAWLS_CRON`, Mondays 06:00 UTC), for deployments that want one. A schedule
  cannot return partition requests or keep a cursor: it adds the partitions itself, and the
  partition set is what keeps it from requesting a crawl twice. Both check the partitions,
  so running both is redundant, not harmful.
- `automation_conditions`: evaluates the assets' automation conditions. `deduplicated`,
  `decontaminated`, `mixture` and `data_card` are eager: once every crawl partition's
  `crawl_signatures` is materialized (a new crawl's run finished), they run again, in that
  order. Without this sensor running (Dagster's own default automation sensor is stopped by
  default) nothing downstream of a crawl runs by itself.
- Retraining is a deployment's choice, off by default: `LLAMAPIPE_RETRAIN_ON_NEW_DATA` =
  `tokenizer` makes the tokenizer and the token shards eager too, `model` also pre-training,
  evaluation and the export.

`LLAMAPIPE_NEW_CRAWLS` = `sensor` or `schedule` starts that instigator and the automation
sensor as running in a fresh instance (default `off`: a laptop's `make ui` asks nothing of
Common Crawl). See docs/OPERATIONS.md, "New crawls".
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.partitions import crawls
from assets.resources import CrawlSource
from curation.commoncrawl.crawl_index import read_crawl_index, select_new_crawls
from pipelines.jobs import JOBS
from pipelines.resources import env_choice

WEEK_S = 7 * 24 * 3600
MODES = ("off", "sensor", "schedule")
RETRAIN = {
    "none": (),
    "tokenizer": ("tokenizer", "tokenized_shards"),
    "model": ("tokenizer", "tokenized_shards", "pretrain", "evaluation", "hf_export"),
}


MODE = env_choice("LLAMAPIPE_NEW_CRAWLS", MODES)
RETRAIN_POLICY = env_choice("LLAMAPIPE_RETRAIN_ON_NEW_DATA", tuple(RETRAIN))


def crawls_to_request(source: CrawlSource, known: set[str]) -> tuple[list[str], int]:
    """The crawls of the index to request now (see `select_new_crawls`), and how many it lists."""
    index = [c.id for c in read_crawl_index(source.index_url, source.timeout_s)]
    return select_new_crawls(index, known, source.since, source.max_new), len(index)


def crawl_run_request(crawl: str, source: CrawlSource) -> RunRequest:
    """One `crawl` job run for a partition, with the deployment's segment settings spelled out
    in its run config (visible in the UI; a person re-running it gets the same)."""
    fmt = source.input_format
    return RunRequest(
        run_key=crawl,
        partition_key=crawl,
        run_config={
            "ops": {
                "crawl_segments": {
                    "config": {"input_format": fmt, "max_segments": source.max_segments}
                },
                "cc_documents": {"config": {"input_format": fmt}},
            }
        },
        tags={"llamapipe/new_crawl": crawl, "llamapipe/crawl_index": source.index_url},
    )


def _skip_reason(source: CrawlSource, listed: int) -> str:
    return f"no new crawl among the {listed} in {source.index_url}"


@sensor(
    name="new_crawls",
    job=JOBS["crawl"],
    minimum_interval_seconds=int(os.environ.get("LLAMAPIPE_NEW_CRAWLS_INTERVAL_S", WEEK_S)),
    default_status=DefaultSensorStatus.RUNNING if MODE == "sensor" else DefaultSensorStatus.STOPPED,
    description="Reads the crawl index; each new crawl becomes a `crawls` partition and one "
    "`crawl` run (fetch, CCNet, C4). The cursor lists the crawls requested.",
)
def new_crawls(context: SensorEvaluationContext, crawl_source: CrawlSource) -> SensorResult:
    """Each crawl is requested once: the cursor remembers what this sensor requested, and a
    crawl already a partition (added by hand, or by the schedule) is left alone."""
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    known = set(context.instance.get_dynamic_partitions(crawls.name)) | requested
    new, listed = crawls_to_request(crawl_source, known)
    if not new:
        return SensorResult(skip_reason=_skip_reason(crawl_source, listed), cursor=context.cursor)
    context.log.info(f"new crawls: {', '.join(new)}")
    return SensorResult(
        run_requests=[crawl_run_request(c, crawl_source) for c in new],
        dynamic_partitions_requests=[crawls.build_add_request(new)],
        cursor=json.dumps(sorted(requested | set(new))),
    )


@schedule(
    name="new_crawls_weekly",
    job=JOBS["crawl"],
    cron_schedule=os.environ.get("LLAMAPIPE_NEW_CRAWLS_CRON", "0 6 * * 1"),
    execution_timezone="UTC",
    default_status=(
        DefaultScheduleStatus.RUNNING if MODE == "schedule" else DefaultScheduleStatus.STOPPED
    ),
    description="The `new_crawls` check at a fixed time: adds each new crawl as a partition "
    "and requests its `crawl` run.",
)
def new_crawls_weekly(
    context: ScheduleEvaluationContext, crawl_source: CrawlSource
) -> list[RunRequest] | SkipReason:
    """Schedules have no cursor and no partition requests: the partitions are added here,
    before the runs are requested, and are what marks a crawl as handled."""
    known = set(context.instance.get_dynamic_partitions(crawls.name))
    new, listed = crawls_to_request(crawl_source, known)
    if not new:
        return SkipReason(_skip_reason(crawl_source, listed))
    context.instance.add_dynamic_partitions(crawls.name, new)
    return [crawl_run_request(c, crawl_source) for c in new]


automation_conditions = AutomationConditionSensorDefinition(
    "automation_conditions",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING if MODE != "off" else DefaultSensorStatus.STOPPED,
    description="Evaluates the automation conditions: dedup, decontamination, mixture and "
    "data card follow new crawls; the tokenizer and the model only with "
    "LLAMAPIPE_RETRAIN_ON_NEW_DATA.",
)


def with_retraining(assets: Sequence, policy: str = RETRAIN_POLICY) -> list:
    """The assets, with eager automation on the ones `policy` retrains (none by default)."""
    keys = {AssetKey(name) for name in RETRAIN[policy]}

    def eager(spec):
        if spec.key not in keys:
            return spec
        return spec.replace_attributes(automation_condition=AutomationCondition.eager())

    return [
        a.map_asset_specs(eager) if isinstance(a, AssetsDefinition) and keys & a.keys else a
        for a in assets
    ]


SENSORS = [new_crawls, automation_conditions]
SCHEDULES = [new_crawls_weekly]
