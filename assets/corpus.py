"""Where the sources meet: the mixture plan (paper Table 1) and the data card.

`mixture` samples the deduplicated corpus by the paper's shares; `data_card` describes every
stage. Both are unpartitioned and eager: they depend on every crawl partition and are brought
up to date when an input changes (the `corpus` job runs them explicitly).
"""

import json
import posixpath
from pathlib import Path

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets import plots
from assets.resources import DataRoot
from assets.stage_assets import StageHooks, StageRun, asset_args
from curation.core.manifest import read_manifest
from curation.core.runner import CODE_VERSION, publish, staging_path
from curation.corpus.data_card import Card, StageOutput, build_card, mixture_section
from curation.corpus.mixture import shares_off_plan
from curation.recipe import (
    CRAWL,
    EVERY_STAGE_CONSERVES,
    PARTITION,
    SHARES_ON_PLAN,
    rows_from,
    stage_steps,
    step,
)
from curation.tokens.shards_manifest import TokenShardsManifest, read_shards_manifest

# What `make bench` projects a real crawl to cost (bench/cost.py), shown on the card.
COST_PROJECTION = Path(__file__).resolve().parents[1] / "bench" / "results" / "cost_projection.json"

CARD_NAME = "DATA_CARD.md"
SHARE_TOLERANCE = "share_tolerance"


def _mixture_report(context, run: StageRun, config, data_root: DataRoot) -> MaterializeResult:
    summary = run.manifest.summary
    for row in summary["plan"]:
        if row["warning"]:
            context.log.warning(f"mixture: {row['warning']}")
    card = Card()
    mixture_section(card, run.manifest)
    problems = shares_off_plan(summary, run.manifest.histograms, config.share_tolerance)
    return run.result(
        metadata={
            "plan": MetadataValue.md(_inline_images(card)),
            "target_tokens": summary["target_tokens"],
            "warnings": "; ".join(r["warning"] for r in summary["plan"] if r["warning"]) or "none",
        },
        checks=[
            AssetCheckResult(
                check_name=SHARES_ON_PLAN,
                passed=not problems,
                severity=AssetCheckSeverity.ERROR,
                metadata={"off_plan": "; ".join(problems) or "none"},
            )
        ],
    )


HOOKS = {
    "mixture": StageHooks(
        report=_mixture_report,
        options={
            SHARE_TOLERANCE: (
                float,
                0.01,
                "the shares_on_plan check's allowance, of the training stream, beyond what "
                "sampling whole documents allows",
            )
        },
    )
}


def _inline_images(card: Card) -> str:
    """The card's markdown with its PNGs inlined: the web UI shows no relative images."""
    markdown = card.markdown
    for name, data in card.images.items():
        markdown = markdown.replace(f"]({name})", f"]({plots.data_uri(data)})")
    return markdown


def _stage_outputs(data_root: DataRoot) -> list[StageOutput]:
    """Every finished partition of the recipe's stages, in the table's order: each crawl's
    stages, then the unpartitioned ones."""
    storage = data_root.storage()
    crawls = [
        name
        for name in map(
            posixpath.basename, storage.list_dirs(storage.path("stages", "cc_documents"))
        )
        if not name.startswith(".")  # staging and previous outputs
    ]
    recipe = [s for s in stage_steps() if s.in_recipe]
    wanted = [
        *((s, crawl) for crawl in crawls for s in recipe if s.partitions == CRAWL),
        *((s, PARTITION) for s in recipe if s.partitions != CRAWL),
    ]
    outputs = []
    for of, partition in wanted:
        manifest = read_manifest(storage, data_root.stage_dir(of.asset, partition))
        source = rows_from(of)
        if manifest is not None:
            upstream = f"{source.asset}[{partition}]" if source else ""
            outputs.append(StageOutput(of.asset, partition, manifest, upstream))
    return outputs


def _tokens_by_corpus(shards_manifest: TokenShardsManifest) -> dict[str, dict[str, int]]:
    return {
        split: {corpus: n.tokens for corpus, n in body.sources.items()}
        for split, body in shards_manifest.splits.items()
    }


@asset(**asset_args(step("data_card")), kinds={"markdown"})
def data_card(context: AssetExecutionContext, data_root: DataRoot) -> MaterializeResult:
    """DATA_CARD.md: the funnel of every stage, languages, perplexity buckets, classifier
    scores, dedup clusters, planned versus realised mixture, token counts and provenance,
    all read from the manifests. Written with its plots to `<data root>/card/`."""
    storage = data_root.storage()
    stages = _stage_outputs(data_root)
    mixture_manifest = next((s.manifest for s in stages if s.asset == "mixture"), None)
    shards = read_shards_manifest(storage, data_root.output("tokenized_shards"))
    tokens = _tokens_by_corpus(shards) if shards else None
    projection = json.loads(COST_PROJECTION.read_text()) if COST_PROJECTION.exists() else None
    card = build_card(stages, mixture_manifest, tokens, CODE_VERSION, projection)
    directory = storage.path("card")
    staging = staging_path(directory)
    storage.remove_tree(staging)
    storage.makedirs(staging)
    for name, data in card.images.items():
        storage.write_bytes(posixpath.join(staging, name), data)
    storage.write_bytes(posixpath.join(staging, CARD_NAME), card.markdown.encode())
    publish(storage, staging, directory, last=CARD_NAME)
    unbalanced = [
        s.label
        for s in stages
        if s.manifest.n_in != s.manifest.kept + sum(s.manifest.dropped.values())
    ]
    context.log.info(f"data card: {len(stages)} stage outputs -> {directory}/DATA_CARD.md")
    return MaterializeResult(
        metadata={
            "card": MetadataValue.md(_inline_images(card)),
            "path": MetadataValue.path(posixpath.join(directory, CARD_NAME)),
            "stages": len(stages),
        },
        check_results=[
            AssetCheckResult(
                check_name=EVERY_STAGE_CONSERVES,
                passed=not unbalanced,
                metadata={"unbalanced": ", ".join(unbalanced) or "none"},
            )
        ],
    )
