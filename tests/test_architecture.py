"""The architecture as rules the code keeps: one table of stages that the graph is made from,
config written once, the dependency direction without import circles, and long modules that
say why they are long."""

from __future__ import annotations

import ast
import dataclasses
import re

import pytest
from conftest import REPO
from dagster import AssetKey

from assets.config import config_value, settings_fields
from curation.recipe import ALL, STEPS, stage_steps
from pipelines.definitions import defs

PACKAGES = ("curation", "assets", "pipelines", "training", "model", "sample_world")
# Configs of assets that set no dataclass: each field is the asset's own (a URL, a dtype).
OWN_CONFIGS = {"crawl_segments", "lm_tokenizer", "kenlm_model", "hf_export"}
LONG = 500  # lines; a longer module says why in its docstring ("Long because ...")


def asset_config(assets_def):
    import inspect

    parameters = inspect.signature(assets_def.op.compute_fn.decorated_fn).parameters
    return parameters["config"].annotation if "config" in parameters else None


def test_the_graph_is_the_table():
    """Every step is one asset with the table's group, partitions and upstream assets; no
    asset is outside the table."""
    graph = defs.resolve_asset_graph()
    assets = {key.path[-1] for key in graph.get_all_asset_keys()}
    assert assets == {s.asset for s in STEPS}
    for step in STEPS:
        node = graph.get(AssetKey(step.asset))
        assert node.group_name == step.group, step.asset
        partitions = node.partitions_def
        assert (partitions is None) == (step.partitions == ALL), step.asset
        assert {k.path[-1] for k in node.parent_keys} == set(step.upstream), step.asset


def test_every_stage_has_blocking_checks_that_run_alone_and_its_own():
    graph = defs.resolve_asset_graph()
    for step in stage_steps():
        checks = {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(step.asset)}
        assert checks == {"counts_conserve", "output_schema", *step.checks}, step.asset
        for name in ("counts_conserve", "output_schema"):
            spec = next(
                s for c in defs.asset_checks for s in c.check_specs
                if s.asset_key == AssetKey(step.asset) and s.name == name
            )  # fmt: skip
            assert spec.blocking, (step.asset, name)


def test_asset_configs_are_generated_from_their_dataclasses():
    """Config written once: each asset's config is its dataclass's fields with the same
    defaults (or the step's presets), less what the asset computes, plus run options."""
    presets = {s.asset: dict(s.preset) for s in STEPS}
    checked = set()
    for assets_def in defs.assets:
        config = asset_config(assets_def)
        name = assets_def.op.name
        if config is None or name in OWN_CONFIGS:
            continue
        settings = config.__settings__  # only generated classes have it
        fields = settings_fields(settings)
        for field_name, field in config.model_fields.items():
            if field_name not in fields:
                continue  # a run option (force, input_dir, run_name, ...)
            declared = fields[field_name][1]
            default = (
                declared.default
                if declared.default is not dataclasses.MISSING
                else declared.default_factory()
            )
            expected = config_value(presets.get(name, {}).get(field_name, default))
            actual = field.default_factory() if field.default_factory else field.default
            assert actual == expected, (name, field_name)
        checked.add(name)
    assert checked >= {s.asset for s in stage_steps()} | {"pretrain", "tokenizer", "evaluation"}


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        graph[name] = imported
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle among the project's modules, lazy imports included, or None."""
    internal = {m: {d for d in deps if d in graph and d != m} for m, deps in graph.items()}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(internal[module]):
            if state.get(dep) == 1:
                return path[path.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(internal):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_circle_and_the_dependency_direction_holds():
    graph = _module_graph()
    assert _cycle(graph) is None
    layers = {"curation": {"dagster"}, "training": {"dagster"}, "model": set(PACKAGES)}
    for module, imported in graph.items():
        top = module.split(".")[0]
        for forbidden in layers.get(top, ()):
            if forbidden == top:
                continue
            assert not any(i == forbidden or i.startswith(forbidden + ".") for i in imported), (
                f"{module} imports {forbidden}"
            )


@pytest.mark.parametrize("package", PACKAGES)
def test_long_modules_say_why(package):
    for path in (REPO / package).rglob("*.py"):
        if len(path.read_text().splitlines()) > LONG:
            docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
            assert "Long because" in docstring, f"{path.relative_to(REPO)} is over {LONG} lines"


def test_the_readme_names_the_groups_the_code_has():
    readme = (REPO / "README.md").read_text()
    sentence = re.search(r"Assets are in the (.+?) groups", readme, re.S)
    named = set(re.findall(r"`(\w+)`", sentence[1]))
    assert named == {s.group for s in STEPS}


def test_the_makefile_takes_its_lists_from_the_table():
    makefile = (REPO / "Makefile").read_text()
    for step in STEPS:
        assert not re.search(rf"^\w+\s*:=.*\b{step.asset}\b", makefile, re.M), step.asset


def test_no_stage_directory_is_a_string_literal():
    """Asset directories come from the table's names, not from literals scattered over the
    asset modules."""
    names = "|".join(s.asset for s in STEPS)
    literal = re.compile(rf"stage_dir\(\s*\"({names})\"")
    for path in (REPO / "assets").glob("*.py"):
        assert not literal.search(path.read_text()), path.name
