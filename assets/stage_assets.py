"""Assets made from the recipe's table (curation/recipe.py): one factory, no wrappers.

A stage step becomes an asset that builds its stage from the config generated for it, runs
it over its input shards (by default the kept rows of the same partition of its first
upstream) and reports the run. What differs between stages is said in `StageHooks`, beside
the asset family that needs it; a step without hooks needs nothing but its table row.
Every stage step also gets `counts_conserve` and `output_schema` as asset checks of their own
(`assets/checks.py`): they read the files on disk, so they can be re-run alone, and they
block the assets downstream when they fail.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dagster import (
    AllPartitionMapping,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    AutomationCondition,
    Config,
    MaterializeResult,
    asset,
)

from assets.config import FORCE_HELP, build, config_class, settings_fields
from assets.partitions import PARTITIONS
from assets.resources import DataRoot, ShardExecutorResource
from assets.stage_run import StageRun, run_stage_asset
from curation.core.inputs import partition_shards
from curation.core.stage import ShardInput, Stage
from curation.recipe import ALL, PARTITION, Step, step

Inputs = Callable[[AssetExecutionContext, Config, DataRoot], Sequence[ShardInput]]
Computed = Callable[[AssetExecutionContext, Config, DataRoot], Mapping[str, Any]]
Report = Callable[[AssetExecutionContext, StageRun, Config, DataRoot], MaterializeResult]


@dataclass(frozen=True)
class StageHooks:
    """What one stage asset does beyond the default.

    `inputs` finds its input shards (default: the kept rows of its first upstream).
    `compute` returns the stage fields named in `computed`, which the asset works out (a
    path, a fingerprint, the partition), so they are not config. `make` builds the stage
    itself when it comes from files (the perplexity cutoffs). `report` turns the run into
    the result with the asset's own metadata and checks. `options` are run options beyond
    `force` (name -> (type, default, help)); `config` limits the config to these fields."""

    inputs: Inputs | None = None
    computed: tuple[str, ...] = ()
    compute: Computed | None = None
    make: Callable[[AssetExecutionContext, Config, DataRoot], Stage] | None = None
    report: Report | None = None
    options: Mapping[str, tuple[Any, Any, str]] = field(default_factory=dict)
    config: tuple[str, ...] | None = None
    kinds: frozenset[str] = frozenset({"parquet"})


def partition_of(context: AssetExecutionContext, of: Step) -> str:
    return context.partition_key if of.partitions != ALL else PARTITION


def asset_args(of: Step) -> dict[str, Any]:
    """The `@asset` arguments the table decides: name, group, partitions, lineage."""
    deps = []
    for name in of.upstream:
        upstream = step(name)
        crosses = upstream.partitions not in (ALL, of.partitions)
        deps.append(AssetDep(name, partition_mapping=AllPartitionMapping()) if crosses else name)
    args: dict[str, Any] = {"name": of.asset, "group_name": of.group, "deps": deps}
    if of.partitions != ALL:
        args["partitions_def"] = PARTITIONS[of.partitions]
    if of.checks:
        args["check_specs"] = [AssetCheckSpec(name, asset=of.asset) for name in of.checks]
    if of.eager:
        args["automation_condition"] = AutomationCondition.eager()
    return args


def config_for(of: Step, hooks: StageHooks) -> type[Config]:
    """The asset's config: its stage's fields (or `hooks.config` of them) with the step's
    presets as defaults, minus what the asset computes, plus `force` and the hooks' options."""
    exclude = set(hooks.computed)
    if hooks.config is not None:
        exclude |= set(settings_fields(of.stage)) - set(hooks.config)
    options = {"force": (bool, False, FORCE_HELP), **hooks.options}
    name = "".join(part.title() for part in of.asset.split("_")) + "Config"
    return config_class(name, of.stage, exclude, dict(of.preset), options)


def upstream_rows(
    context: AssetExecutionContext, data_root: DataRoot, of: Step
) -> list[ShardInput]:
    """The kept rows of the same partition of the step's first upstream."""
    directory = data_root.stage_dir(of.upstream[0], partition_of(context, of))
    return partition_shards(data_root.storage(), directory)


def stage_asset(name: str, hooks: StageHooks | None = None) -> AssetsDefinition:
    """The asset of stage step `name`, from its table row and `hooks`."""
    of = step(name)
    hooks = hooks or StageHooks()
    config_cls = config_for(of, hooks)

    def materialize(
        context: AssetExecutionContext,
        config: config_cls,  # type: ignore[valid-type]
        data_root: DataRoot,
        shard_executor: ShardExecutorResource,
    ) -> MaterializeResult:
        partition = partition_of(context, of)
        if hooks.make:
            stage = hooks.make(context, config, data_root)
        else:
            computed = hooks.compute(context, config, data_root) if hooks.compute else {}
            stage = build(of.stage, config, **computed)
        inputs = (hooks.inputs or _default_inputs(of))(context, config, data_root)
        run = run_stage_asset(
            context, stage, inputs, partition, data_root, shard_executor, config.force, of.asset
        )
        return hooks.report(context, run, config, data_root) if hooks.report else run.result()

    materialize.__name__ = of.asset
    materialize.__doc__ = _description(of)
    decorate = asset(**asset_args(of), code_version=of.stage.version, kinds=set(hooks.kinds))
    return decorate(materialize)


def _default_inputs(of: Step) -> Inputs:
    return lambda context, config, data_root: upstream_rows(context, data_root, of)


def _description(of: Step) -> str:
    """The stage class's docstring: the rules, said once, where they are implemented."""
    return (of.stage.__doc__ or of.asset).strip()
