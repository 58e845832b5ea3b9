"""Safe by construction, checked over the whole source tree: no shell, no unpickling of what a
user or the web supplies, archives read and never extracted, services on 127.0.0.1, secrets
from the environment. Each rule is an AST or text scan, so a new file is covered the day it
is added; the loaders' behaviour itself is tested beside them (test_train's evil checkpoint,
test_arxiv's hostile archives, test_hf's pickle-free import)."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from curation.core.slurm_executor import ArrayRun, UntrustedRunDirectory

PACKAGES = ("assets", "curation", "model", "pipelines", "training", "bench", "scripts")
UNPICKLING_MODULES = {"pickle", "cPickle", "dill", "shelve", "marshal", "cloudpickle", "joblib"}
# The Slurm shard executor hands its tasks the shard function and gets their results back as
# pickles, as a process pool or Ray does, through a run directory only its owner can write;
# it checks that before loading anything (the test below).
PICKLE_EXCHANGE = {"curation/core/slurm_executor.py"}
# lm-eval's decontamination reads pickled sets of item ids: the overlap report writes them and
# never loads one (checked below).
PICKLE_WRITERS = {"curation/decontamination/report.py"}
UNPICKLING_CALLS = {"pickle.load", "pickle.loads", "pickle.Unpickler"}


def python_files() -> Iterator[Path]:
    for package in PACKAGES:
        yield from sorted((REPO / package).rglob("*.py"))


def calls(path: Path) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def name_of(node: ast.expr) -> str:
    """`torch.load` for `torch.load(...)`, `load` for `load(...)`."""
    if isinstance(node, ast.Attribute):
        return f"{name_of(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value == value
        for k in call.keywords
    )


def where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(REPO)}:{node.lineno}"


def test_commands_never_meet_a_shell():
    """Commands are argv lists: a configured value never meets a shell parser."""
    offenders = []
    for path in python_files():
        for call in calls(path):
            shell = [k for k in call.keywords if k.arg == "shell"]
            if shell and not keyword_is(call, "shell", False):
                offenders.append(where(path, call))
            if name_of(call.func) in {"os.system", "os.popen", "subprocess.getoutput"}:
                offenders.append(where(path, call))
    assert offenders == []


def test_nothing_is_unpickled():
    """Tensors load with `weights_only=True` (or from safetensors), arrays without pickles,
    and no module that executes a pickle stream is imported at all."""
    offenders = []
    for path in python_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                modules.append(getattr(node, "module", None) or "")
                unpickles = any(m.split(".")[0] in UNPICKLING_MODULES for m in modules)
                allowed = PICKLE_EXCHANGE | PICKLE_WRITERS
                if unpickles and str(path.relative_to(REPO)) not in allowed:
                    offenders.append(f"{where(path, node)} imports {modules}")
        for call in calls(path):
            name = name_of(call.func)
            if name in UNPICKLING_CALLS and str(path.relative_to(REPO)) in PICKLE_WRITERS:
                offenders.append(f"{where(path, call)} {name} in a module that only writes")
            if name == "torch.load" and not keyword_is(call, "weights_only", True):
                offenders.append(f"{where(path, call)} torch.load without weights_only=True")
            if name == "np.load" and not keyword_is(call, "allow_pickle", False):
                offenders.append(f"{where(path, call)} np.load without allow_pickle=False")
            if name == "yaml.load" or name.endswith("yaml.unsafe_load"):
                offenders.append(f"{where(path, call)} {name}")
    assert offenders == []


def test_archives_are_read_member_by_member_never_extracted():
    """Archive members are read into memory after an allow-list check (regular files, paths
    and link targets inside the archive: curation/sources/arxiv.py); nothing is ever written
    out by `extract`/`extractall`, which would follow a hostile member's path."""
    offenders = [
        where(path, call)
        for path in python_files()
        for call in calls(path)
        if isinstance(call.func, ast.Attribute) and call.func.attr in {"extract", "extractall"}
        and "trafilatura" not in name_of(call.func)
    ]  # fmt: skip
    assert offenders == []


# A command line (in the Makefile, a doc's code block) that starts the web server.
WEB_COMMAND = re.compile(r"^[\t ]*(?:\S*/)?(?:dagster dev|dagster-webserver)\b.*$", re.MULTILINE)


def documented_text() -> Iterator[tuple[str, str]]:
    paths = [REPO / "Makefile", REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    paths += sorted((REPO / "deploy").glob("*"))
    paths += [p for p in python_files()] + sorted((REPO / "tests").glob("*.py"))
    for path in paths:
        if path.is_file():
            yield str(path.relative_to(REPO)), path.read_text()


def test_services_listen_on_localhost_unless_told_otherwise():
    """The web UI, the daemon's servers, Ray and PostgreSQL in tests bind to 127.0.0.1; no
    committed command or config opens a port on every interface."""
    offenders = []
    for name, text in documented_text():
        if name == "tests/test_safety.py":
            continue
        for match in WEB_COMMAND.finditer(text):
            if "127.0.0.1" not in match.group(0):
                offenders.append(f"{name}: {match.group(0).strip()}")
        if "0.0.0.0" in text:
            offenders.append(f"{name}: binds 0.0.0.0")
    assert offenders == []


SECRET_NAME = re.compile(r"(^|_)(pass(word)?|secret|token|api_?key|access_key)($|_)", re.IGNORECASE)


def secret_values(node: object, path: str = "") -> Iterator[str]:
    """Keys of a YAML document that look like secrets and hold a literal, not `env:`."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{path}.{key}" if path else str(key)
            if SECRET_NAME.search(str(key)) and not (isinstance(value, dict) and "env" in value):
                yield here
            yield from secret_values(value, here)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from secret_values(value, f"{path}[{i}]")


def test_secrets_come_from_the_environment():
    """Database passwords and object-store keys are `env:` references in committed YAML and
    `EnvVar`/environment reads in code, never literals."""
    offenders = []
    for path in [*(REPO / "deploy").glob("*.yaml"), *(REPO / "pipelines").rglob("*.yaml")]:
        offenders += [
            f"{path.name}: {key}" for key in secret_values(yaml.safe_load(path.read_text()))
        ]
    for path in python_files():
        for call in calls(path):
            for keyword in call.keywords:
                literal = isinstance(keyword.value, ast.Constant) and keyword.value.value
                if keyword.arg and SECRET_NAME.search(keyword.arg) and isinstance(literal, str):
                    offenders.append(f"{where(path, call)} {keyword.arg}=<literal>")
    assert offenders == []
    assert list(secret_values({"db": {"password": "hunter2"}})) == ["db.password"]
    assert list(secret_values({"db": {"password": {"env": "PG_PASSWORD"}}})) == []


def test_the_slurm_executor_loads_nothing_from_a_directory_others_can_write(tmp_path):
    run = ArrayRun.create(tmp_path / "work", abs, [1, -2])
    run.run_task(1)
    assert run.outcome(1) == (True, 2)
    run.directory.chmod(0o777)  # anyone could now have replaced the function or the items
    with pytest.raises(UntrustedRunDirectory, match="not private to its owner"):
        run.run_task(0)
    with pytest.raises(UntrustedRunDirectory):
        run.outcome(1)
