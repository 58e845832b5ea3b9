"""The Dagster code location: `defs` is what `workspace.yaml` loads."""

import os

from dagster import Definitions, in_process_executor, multiprocess_executor

from assets.graph import ASSETS, CHECKS
from curation.core.executor import available_cpus
from pipelines.jobs import JOBS
from pipelines.new_crawls import SCHEDULES, SENSORS, with_retraining
from pipelines.resources import RESOURCES

defs = Definitions(
    assets=with_retraining(ASSETS),
    asset_checks=CHECKS,
    jobs=list(JOBS.values()),
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=RESOURCES,
    # The multiprocess executor sizes itself from the host's cores, not the container's
    # quota; say how many steps may run at once. LLAMAPIPE_STEP_EXECUTOR=in_process runs a
    # run's steps in its one process instead (no code-location import per step: small
    # machines, the daemon test); the shard maps inside a step still use every core.
    executor=in_process_executor
    if os.environ.get("LLAMAPIPE_STEP_EXECUTOR") == "in_process"
    else multiprocess_executor.configured({"max_concurrent": available_cpus()}),
)
