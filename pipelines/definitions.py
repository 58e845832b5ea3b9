"""The Dagster code location: `defs` is what `workspace.yaml` loads."""

from dagster import Definitions, load_assets_from_modules, multiprocess_executor

from assets import (
    c4,
    commoncrawl,
    corpus,
    evaluation,
    quality,
    reference,
    sources,
    tokens,
    training,
)
from curation.executor import available_cpus
from pipelines.jobs import JOBS
from pipelines.resources import RESOURCES

defs = Definitions(
    assets=load_assets_from_modules(
        [commoncrawl, quality, c4, reference, sources, corpus, tokens, training, evaluation]
    ),
    jobs=JOBS,
    resources=RESOURCES,
    # The multiprocess executor sizes itself from the host's cores, not the container's
    # quota; say how many steps may run at once.
    executor=multiprocess_executor.configured({"max_concurrent": available_cpus()}),
)
