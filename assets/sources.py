"""Curated sources of the mixture (paper Table 1): Wikipedia, GitHub, Books, ArXiv,
StackExchange.

Each reads its raw dump in its native format (the sample world's by default, `input_dir` for
a real one) and cleans it with its curation stage (`curation/sources/`); the assets come
from the recipe's table. The curated sources re-read their output with the source's own
verifier (`rules_hold_on_output`).
"""

import posixpath
from collections.abc import Callable

import pyarrow.parquet as pq
from dagster import MaterializeResult

from assets.checks import rules_hold
from assets.resources import DataRoot
from assets.stage_assets import StageHooks, StageRun
from curation.core.inputs import WIKI_DUMP_SUFFIXES, archive_shards
from curation.sources import arxiv, books, github, stackexchange

INPUT_DIR = "input_dir"
INPUT_HELP = "the dump's directory; '' = the sample world's copy of the source"


def _dump(
    source: str, find: Callable | None = None, suffixes: tuple[str, ...] = (), option=INPUT_DIR
):
    """Input shards: the configured dump directory, or the sample world's copy of `source`."""

    def inputs(context, config, data_root: DataRoot):
        directory = getattr(config, option) or posixpath.join(data_root.sample_dir(), source)
        storage = data_root.storage()
        return find(storage, directory) if find else archive_shards(storage, directory, suffixes)

    return inputs


def _verified(verify: Callable) -> Callable:
    """The run's result with the source's verifier (of the kept rows and the stage that made
    them) re-reading every kept row."""

    def report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
        kept = pq.read_table(run.output, filesystem=data_root.storage().fs)
        return run.result(checks=[rules_hold(verify(kept, run.stage))])

    return report


def _source(name: str, verify: Callable, kinds: set[str], find=None, suffixes=()) -> StageHooks:
    return StageHooks(
        inputs=_dump(name, find, suffixes),
        report=_verified(verify),
        options={INPUT_DIR: (str, "", INPUT_HELP)},
        kinds=frozenset({"parquet", *kinds}),
    )


HOOKS = {
    "wikipedia": StageHooks(
        inputs=_dump("wikipedia", suffixes=WIKI_DUMP_SUFFIXES, option="dumps_dir"),
        options={"dumps_dir": (str, "", "a directory of *.xml[.bz2] exports; '' = the sample's")},
        kinds=frozenset({"parquet", "wikipedia"}),
    ),
    "stackexchange": _source(
        "stackexchange",
        lambda table, stage: stackexchange.verify_stackexchange(table),
        {"xml"},
        stackexchange.site_shards,
    ),
    "books": _source("books", books.verify_books, {"datasketch"}, books.book_shards),
    "github": _source("github", github.verify_github, {"github"}, suffixes=github.SUFFIXES),
    "arxiv": _source(
        "arxiv", lambda table, stage: arxiv.verify_arxiv(table), {"latex"}, suffixes=arxiv.SUFFIXES
    ),
}
