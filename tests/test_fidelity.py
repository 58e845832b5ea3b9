"""The fidelity table (docs/FIDELITY.md) against the code: every asset config field has a row,
every default is the one the table names and says where it comes from, the sample's run
configs hold exactly the overrides the table lists, and the named configurations are valid run
configs of their jobs."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO
from dagster import Config, validate_run_config

from curation.recipe import step
from pipelines.definitions import defs

RUN_OPTIONS = {"force"}
SOURCES = ("paper", "CCNet", "project")
ROW = re.compile(
    r"^\| (?P<step>[^|]+) \| `(?P<asset>\w+)\.(?P<field>\w+)` \| `(?P<default>[^`]*)` "
    r"\| (?P<source>[^|]+) \| (?:`(?P<sample>[^`]*)`|-) \| (?P<options>[^|]+) \|$"
)


def table() -> dict[tuple[str, str], dict[str, str]]:
    rows = {}
    for line in (REPO / "docs" / "FIDELITY.md").read_text().splitlines():
        if line.startswith("| ") and "`" in line.split("|")[2]:
            match = ROW.match(line)
            assert match, f"not a row of the table: {line}"
            key = (match["asset"], match["field"])
            assert key not in rows, f"two rows for {key}"
            rows[key] = match.groupdict()
    return rows


def asset_configs() -> dict[str, type[Config]]:
    """Each recipe asset's Pythonic config class, from its function's `config` parameter.
    Options outside the recipe (a step no job runs) document their own sources."""
    configs = {}
    for assets_def in defs.assets:
        if not step(assets_def.op.name).in_recipe:
            continue
        parameters = inspect.signature(assets_def.op.compute_fn.decorated_fn).parameters
        if "config" in parameters:
            configs[assets_def.op.name] = parameters["config"].annotation
    return configs


def defaults() -> dict[tuple[str, str], Any]:
    values = {}
    for asset, config in asset_configs().items():
        for name, field in config.model_fields.items():
            if name not in RUN_OPTIONS:
                default = field.default_factory() if field.default_factory else field.default
                values[(asset, name)] = default
    return values


def sample_overrides() -> dict[tuple[str, str], Any]:
    values = {}
    for path in sorted((REPO / "pipelines" / "sample").glob("*.yaml")):
        for asset, op in yaml.safe_load(path.read_text())["ops"].items():
            for name, value in op["config"].items():
                values[(asset, name)] = value
    return values


def test_every_asset_config_field_has_a_row_and_every_row_a_field():
    rows, fields = table(), defaults()
    assert len(fields) > 100
    assert sorted(fields.keys() - rows.keys()) == [], "fields without a row in FIDELITY.md"
    assert sorted(rows.keys() - fields.keys()) == [], "rows for fields that do not exist"


def test_every_default_is_the_tables_and_says_where_it_comes_from():
    rows = table()
    for key, default in defaults().items():
        assert json.loads(rows[key]["default"]) == default, key
        assert rows[key]["source"].split(":")[0].strip() in SOURCES, key


def test_the_sample_files_hold_exactly_the_overrides_the_table_lists():
    rows, fields = table(), defaults()
    listed = {key: json.loads(row["sample"]) for key, row in rows.items() if row["sample"]}
    overrides = sample_overrides()
    assert overrides == listed
    for key, value in overrides.items():
        assert value != fields[key], f"{key}: a sample override equal to the default"


@pytest.mark.parametrize(
    "path",
    sorted([*(REPO / "pipelines" / "options").glob("*.yaml")]),
    ids=lambda p: p.name,
)
def test_named_configurations_are_valid_run_configs_of_their_job(path: Path):
    job = defs.resolve_job_def(path.name.split(".")[0])
    config = yaml.safe_load(path.read_text())
    assert validate_run_config(job, config)
    for asset, op in config["ops"].items():
        for name, value in op["config"].items():
            assert value != defaults()[(asset, name)], f"{path.name}: {asset}.{name} is the default"
