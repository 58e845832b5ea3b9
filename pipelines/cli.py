"""`llamapipe`: the core without Dagster, for people running single stages on their own files.

The commands call the same stage classes and runner the assets call; only `crawls add` talks
to a Dagster instance (imported lazily, so the rest starts fast).

Long because it is one argparse front end over every command; each command is a short
function calling the core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from curation.core.executor import LocalExecutor, ShardExecutor
from curation.core.inputs import (
    ARCHIVE_SUFFIXES,
    WIKI_DUMP_SUFFIXES,
    MissingInput,
    archive_shards,
    file_shard,
    parquet_parts,
)
from curation.core.manifest import MANIFEST_NAME, Manifest, read_manifest
from curation.core.progress import ProgressSink, ProgressUpdate
from curation.core.runner import run_stage
from curation.core.stage import ShardInput, Stage
from curation.core.storage import OutputWriteError, Storage
from training.evaluation.suites import SUITES


def _files(suffixes: tuple[str, ...]) -> Callable[[Storage, str], list[ShardInput]]:
    """Input finder: one file, or every file with one of `suffixes` in a directory."""

    def find(storage: Storage, path: str) -> list[ShardInput]:
        if os.path.isdir(path):
            return archive_shards(storage, path, suffixes)
        return [file_shard(storage, path)]

    return find


def _local_disk() -> Storage:
    """The local disk, with relative paths in a setting (`--benchmarks`, `--models-dir`)
    taken from the working directory, as the file options are; absolute paths unchanged."""
    return Storage(os.getcwd())


def _stages() -> dict[str, tuple[type[Stage], Callable]]:
    """Stage name -> (stage class, how to find its input shards), for every stage of the
    recipe's table (curation/recipe.py; global dedup has its own command). Stages that read
    raw files say which; the others read contract Parquet. Imported on use."""
    from curation.commoncrawl.documents import CCDocuments
    from curation.dedup.near_dedup import Deduplicated
    from curation.dedup.signatures import MinHashSignatures
    from curation.recipe import stage_steps
    from curation.sources import arxiv, books, github, stackexchange
    from curation.sources.wikipedia import WikipediaText

    raw = {
        CCDocuments: _files(ARCHIVE_SUFFIXES),
        WikipediaText: _files(WIKI_DUMP_SUFFIXES),
        github.GitHubFilter: _files(github.SUFFIXES),
        books.BooksClean: books.book_shards,
        arxiv.ArxivClean: _files(arxiv.SUFFIXES),
        stackexchange.StackExchangeClean: stackexchange.site_shards,
    }
    steps = [s for s in stage_steps() if s.stage is not Deduplicated]
    stages = {s.stage.name: (s.stage, raw.get(s.stage, parquet_parts)) for s in steps}
    # The signature assets run this stage once per upstream partition.
    return {**stages, MinHashSignatures.name: (MinHashSignatures, parquet_parts)}


def cmd_stage(args: argparse.Namespace) -> int:
    cls, find_inputs = _stages()[args.name]
    stage = cls(**{name: getattr(args, name) for name in _config_fields(cls)})
    storage = _local_disk()
    inputs = find_inputs(storage, os.path.abspath(args.input))
    output = os.path.abspath(args.output)
    if args.name == "cc_perplexity":
        stage = _perplexity_with_cutoffs(stage, inputs, output, storage, args)
    manifest = run_stage(stage, inputs, output, storage, _executor(args), args.force, _bar())
    if args.name == "decontaminated":
        _write_overlap_report(storage, stage, manifest, output)
    _print_summary(manifest, output)
    return _exit_status(manifest)


def _write_overlap_report(storage: Storage, stage: Stage, manifest: Manifest, output: str) -> None:
    """lm-eval's overlap report beside the partition, as the asset writes it, so that
    `llamapipe eval --contamination` can read what this run found."""
    from curation.decontamination.report import report_dir, write_report
    from curation.decontamination.stage import contaminated_items

    directory = report_dir(output)
    write_report(storage, directory, contaminated_items(manifest.summary), stage.ngram_size)
    print(f"overlap report: {directory}")


def cmd_deduplicated(args: argparse.Namespace) -> int:
    """Signatures of every input directory first (beside the output, reused while current),
    then global dedup over all of them, in the order given."""
    from curation.dedup.corpus import CorpusGroup, corpus_inputs
    from curation.dedup.near_dedup import Deduplicated
    from curation.dedup.signatures import MinHashSignatures

    storage, executor = _local_disk(), _executor(args)
    output = os.path.abspath(args.output)
    groups = []
    for n, directory in enumerate(map(os.path.abspath, args.input)):
        name = f"{n:03d}-{os.path.basename(directory.rstrip('/'))}"
        signatures = os.path.join(f"{output}.signatures", name)
        inputs = parquet_parts(storage, directory)
        run_stage(MinHashSignatures(), inputs, signatures, storage, executor, args.force, _bar())
        groups.append(CorpusGroup(name, directory, signatures))
    stage = Deduplicated(**{name: getattr(args, name) for name in _config_fields(Deduplicated)})
    inputs = corpus_inputs(storage, groups)
    manifest = run_stage(stage, inputs, output, storage, executor, args.force, _bar())
    _print_summary(manifest, output)
    return _exit_status(manifest)


def cmd_tokenizer(args: argparse.Namespace) -> int:
    from curation.tokens.tokenizer import TokenizerConfig, train_tokenizer

    config = TokenizerConfig(**{n: getattr(args, n) for n in _config_fields(TokenizerConfig)})
    inputs = [os.path.abspath(p) for p in args.input]
    trained = train_tokenizer(
        inputs,
        os.path.abspath(args.output),
        _local_disk(),
        config,
        _executor(args),
        args.force,
    )
    total = trained.fertility["total"]
    print(
        f"tokenizer: vocabulary {trained.vocab_size}, {total['tokens_per_word']} tokens/word "
        f"on held-out text -> {trained.model_path}"
    )
    return 0


def cmd_tokenized_shards(args: argparse.Namespace) -> int:
    from curation.tokens.shards import TokenShardsConfig, write_token_shards

    config = TokenShardsConfig(**{n: getattr(args, n) for n in _config_fields(TokenShardsConfig)})
    manifest = write_token_shards(
        [os.path.abspath(p) for p in args.input],
        os.path.abspath(args.tokenizer),
        os.path.abspath(args.output),
        _local_disk(),
        _executor(args),
        config,
        force=args.force,
    )
    for split, body in manifest.splits.items():
        print(
            f"{split}: {body.documents} documents, {body.tokens} tokens, {len(body.shards)} shards"
        )
    print(f"output: {os.path.abspath(args.output)}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """One process; for several, run `torchrun ... -m training.train --config FILE`."""
    from training.train import main as train_main

    return train_main(["--config", args.config])


def _add_plan_parsers(commands: argparse._SubParsersAction) -> None:
    """`llamapipe plan memory|run|table15`: sizing a run before it starts (training/planning/)."""
    plan = commands.add_parser("plan", help="memory, compute and carbon of a run, before it")
    plans = plan.add_subparsers(dest="plan_command", required=True)

    def csv_ints(text: str) -> list[int]:
        return [int(v) for v in text.split(",") if v.strip()]

    memory = plans.add_parser("memory", help="bytes per GPU; whether each Table 2 model fits")
    memory.add_argument("--model", default="65B", help="a model preset (default 65B)")
    memory.add_argument("--mesh", default="dp=256,tp=8", help="e.g. dp=256,tp=8 (FSDP x TP)")
    memory.add_argument("--gpu", default="a100-80gb", help="a100-40gb a100-80gb h100-80gb h200")
    memory.add_argument("--ac", default="selective", choices=["off", "selective", "full"])
    memory.add_argument("--seq-len", type=csv_ints, default=[2048], help="comma-separated")
    memory.add_argument("--micro-batch", type=csv_ints, default=[1, 2, 4, 8])
    memory.add_argument("--eager", action="store_true", help="blocks not compiled")
    memory.set_defaults(func=cmd_plan_memory)

    run = plans.add_parser("run", help="steps, FLOPs, GPU-hours, days, energy, tCO2eq")
    run.add_argument("--model", default="65B")
    run.add_argument("--tokens", default="", help="e.g. 1.4T (default: the model's Table 2)")
    run.add_argument("--gpus", type=int, default=2048)
    run.add_argument("--gpu", default="a100-80gb")
    run.add_argument(
        "--tokens-per-gpu-second", type=float, default=None,
        help="default: this project's benchmark of the GPU and model, where there is one",
    )  # fmt: skip
    run.add_argument("--seq-len", type=int, default=2048)
    run.add_argument("--batch-tokens", default="4194304", help="tokens per step (4M)")
    _add_carbon_options(run)
    run.set_defaults(func=cmd_plan_run)

    table15 = plans.add_parser("table15", help="the paper's Table 15 by its own method")
    _add_carbon_options(table15)
    table15.set_defaults(func=cmd_plan_table15)


def _add_carbon_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--power-w", type=float, default=None, help="default: the GPU's rated")
    parser.add_argument("--pue", type=float, default=1.1)
    parser.add_argument("--kg-co2-per-kwh", type=float, default=0.385)


def cmd_plan_memory(args: argparse.Namespace) -> int:
    from training.planning.memory import NOTES, MemorySpec, Mesh, render_breakdown, render_fits

    try:
        spec = MemorySpec.preset(
            args.model,
            mesh=Mesh.parse(args.mesh),
            gpu=args.gpu,
            seq_len=args.seq_len[0],
            ac=args.ac,
            compiled=not args.eager,
        )
        print(render_breakdown(spec, args.micro_batch, args.seq_len))
        print()
        print(f"Table 2 models, {args.ac} AC, each at its recipe's micro-batch:")
        print(render_fits(spec))
    except (KeyError, ValueError) as exc:
        print(f"llamapipe: error: {exc}", file=sys.stderr)
        return 2
    print()
    print(NOTES)
    return 0


def cmd_plan_run(args: argparse.Namespace) -> int:
    from training.config import RECIPES
    from training.planning.compute import NoThroughput, RunSpec, plan_run, render_run_plan
    from training.planning.tables import parse_count

    try:
        spec = RunSpec(
            model=args.model,
            tokens=parse_count(args.tokens) if args.tokens else RECIPES[args.model].tokens,
            gpus=args.gpus,
            gpu=args.gpu,
            tokens_per_gpu_s=args.tokens_per_gpu_second,
            seq_len=args.seq_len,
            batch_tokens=parse_count(args.batch_tokens),
            power_w=args.power_w,
            pue=args.pue,
            kg_co2_per_kwh=args.kg_co2_per_kwh,
        )
        print(render_run_plan(plan_run(spec)))
    except (KeyError, ValueError, NoThroughput) as exc:
        print(f"llamapipe: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_plan_table15(args: argparse.Namespace) -> int:
    from training.planning.carbon import CarbonMethod
    from training.planning.compute import render_table15

    power = 400.0 if args.power_w is None else args.power_w
    print(render_table15(CarbonMethod(power, args.pue, args.kg_co2_per_kwh)))
    return 0


def _tokenizer_of(trainer_state: dict, given: str) -> str:
    """The tokenizer given, or the one a checkpoint's tokens were made with."""
    from training.checkpoint import tokenizer_of

    path = given or tokenizer_of(trainer_state)
    if not os.path.isfile(path):
        raise MissingInput(f"no tokenizer at {path}: pass --tokenizer")
    return path


def cmd_export_hf(args: argparse.Namespace) -> int:
    import torch

    from model.hf import export_hf
    from training.checkpoint import load_model

    model, trainer = load_model(args.checkpoint)
    tokenizer = _tokenizer_of(trainer, args.tokenizer)
    dtype = getattr(torch, args.dtype)
    out = export_hf(model, tokenizer, os.path.abspath(args.out), dtype=dtype)
    print(f"exported step {trainer['state']['step']} of {args.checkpoint} -> {out}")
    return 0


def cmd_import_hf(args: argparse.Namespace) -> int:
    import shutil

    from model.hf import import_hf
    from training.checkpoint import save_model

    model, _ = import_hf(args.hf)
    out = os.path.abspath(args.out)
    data_dir = os.path.join(out, "data")
    os.makedirs(data_dir, exist_ok=True)
    tokenizer = "tokenizer.model"
    shutil.copyfile(os.path.join(args.hf, tokenizer), os.path.join(data_dir, tokenizer))
    path = save_model(model, out, {"state": {"step": 0}, "config": {"data_dir": data_dir}})
    print(f"imported {args.hf} -> {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    import sentencepiece as spm
    import torch

    from model.generate import Generator, Sampling
    from training.checkpoint import load_model

    model, trainer = load_model(args.checkpoint)
    if torch.cuda.is_available():
        model = model.to("cuda", torch.bfloat16)
    sp = spm.SentencePieceProcessor(model_file=_tokenizer_of(trainer, args.tokenizer))
    prompts = [[sp.bos_id(), *sp.encode(p)] for p in args.prompt]
    sampling = Sampling(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        eos_id=sp.eos_id(),
    )
    streamed: list[int] = []

    def show(step: list[int | None]) -> None:
        """The first prompt's continuation, printed as it grows (SentencePiece decodes
        whole pieces, so print the new suffix of the decoded text)."""
        if len(prompts) == 1 and step[0] is not None and step[0] != sp.eos_id():
            before = sp.decode(streamed)
            streamed.append(step[0])
            print(sp.decode(streamed)[len(before) :], end="", flush=True)

    if len(prompts) == 1:
        print(args.prompt[0], end="", flush=True)
    result = Generator(model).generate(prompts, sampling, on_step=show)
    if len(prompts) == 1:
        print()
    else:
        for prompt, tokens in zip(args.prompt, result.tokens, strict=True):
            print(f"{prompt}{sp.decode([t for t in tokens if t != sp.eos_id()])}\n")
    print(f"[{result.new_tokens} tokens, {result.tokens_per_s:.1f} tokens/s]", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """With --mixture, the whole evaluation (held-out, tasks, sample, suites); without, the
    suites alone, on a checkpoint or (--hf) its Hugging Face export."""
    from training.evaluation.config import EvaluationConfig, results_table
    from training.evaluation.paper import suite_tables

    config = EvaluationConfig(
        max_tokens=args.max_tokens,
        limit=args.limit,
        suites=tuple(s for s in args.suite.split(",") if s),
        benchmarks=args.benchmarks,
        offline=args.offline,
        max_gen_toks=args.max_gen_toks,
        contamination=args.contamination,
    )
    out = os.path.abspath(args.out)
    if args.mixture and args.hf:
        raise SystemExit("--mixture needs --checkpoint: an HF export has no held-out shards")
    if args.mixture:
        from curation.core.inputs import parquet_parts
        from training.evaluation.run import evaluate_run

        mixture = [s.path for s in parquet_parts(_local_disk(), os.path.abspath(args.mixture))]
        report = evaluate_run(args.checkpoint, mixture, out, config)
        print(results_table(report, {}))
        print(f"\nsample: {report['sample']}")
        suites = report.get("suites")
    else:
        from training.evaluation.run import suite_settings
        from training.evaluation.suite_run import run_suites
        from training.evaluation.suites import suites_named

        model = args.hf or args.checkpoint
        suites = run_suites(
            model, suites_named(config.suites), out, suite_settings(config), hf=bool(args.hf)
        )
    if suites:
        for name, table in suite_tables(suites["suites"], suites["paper_size"]).items():
            print(f"\n{name} (paper {suites['paper_size']})\n{table}")
    return 0


def _print_summary(manifest: Manifest, output: str) -> None:
    dropped = sum(manifest.dropped.values())
    print(f"{manifest.stage}: in {manifest.n_in}, kept {manifest.kept}, dropped {dropped}")
    for reason, n in manifest.dropped.items():
        print(f"  dropped {reason}: {n}")
    for name, hist in manifest.histograms.items():
        top = ", ".join(f"{k} {v}" for k, v in list(hist.items())[:12])
        print(f"  {name}: {top}")
    for shard in manifest.quarantined:
        why = shard.quarantined
        print(f"quarantined {shard.input}: {why['reason']}: {why['detail']}")
    print(f"output: {output}")


def _exit_status(manifest: Manifest) -> int:
    """0, or 1 with a message on stderr when every input shard was quarantined: an output
    made of nothing must not pass for a result in a script."""
    if len(manifest.quarantined) < len(manifest.shards):
        return 0
    print(
        f"llamapipe: error: every input shard of {manifest.stage} was quarantined "
        f"({len(manifest.shards)} of {len(manifest.shards)}): nothing was read",
        file=sys.stderr,
    )
    return 1


def cmd_show(args: argparse.Namespace) -> int:
    """The given partitions, or with `--root` every finished partition of the recipe's
    stages, in the table's order."""
    storage = _local_disk()
    for path in args.partitions or _recipe_partitions(storage, args.root):
        manifest = read_manifest(storage, os.path.abspath(path))
        if manifest is None:
            raise MissingInput(f"no finished partition (no manifest) at {path}")
        _print_summary(manifest, os.path.abspath(path))
    return 0


def _recipe_partitions(storage: Storage, root: str | None) -> list[str]:
    from curation.recipe import stage_steps

    if root is None:
        raise SystemExit("llamapipe show: give partition directories or --root")
    found = []
    for step in (s for s in stage_steps() if s.in_recipe):
        asset_dir = os.path.join(os.path.abspath(root), "stages", step.asset)
        partitions = storage.list_dirs(asset_dir) if os.path.isdir(asset_dir) else []
        found += [p for p in partitions if (Path(p) / MANIFEST_NAME).exists()]
    return found


def _perplexity_with_cutoffs(stage, inputs, output: str, storage: Storage, args) -> Stage:
    """The perplexity stage over every language it scores (those with models when none is
    given), with `--cutoffs` or, without them, cutoffs computed from a sample of its own
    input, whose scores the stage then reads back (under `<output>.cutoffs/`)."""
    from curation.commoncrawl.perplexity_cutoffs import crawl_cutoffs, scorer_for, write_cutoffs

    directory = f"{output}.cutoffs"
    scorer = scorer_for(
        storage, stage.models_dir, directory, stage.languages,
        scoring=stage.scoring, max_chars=stage.max_chars,
        keep_buckets=tuple(stage.keep_buckets), keep_unmodelled=stage.keep_unmodelled,
    )  # fmt: skip
    print(f"cc_perplexity: scoring {', '.join(scorer.languages) or 'no language'}")
    if stage.cutoffs:
        return dataclasses.replace(scorer, cutoffs=stage.cutoffs, scores_dir="")
    executor = _executor(args)
    cutoffs, scores = crawl_cutoffs(
        scorer, inputs, storage, executor, args.sample_documents, args.percentiles
    )
    write_cutoffs(storage, directory, scorer, cutoffs)
    sampled = sum(len(v) for v in scores.values())
    print(f"cutoffs from {sampled} sampled documents -> {directory}")
    _print_cutoffs(cutoffs)
    return dataclasses.replace(scorer, cutoffs=cutoffs)


def _print_cutoffs(cutoffs: dict[str, list[float]]) -> None:
    for language, (low, high) in sorted(cutoffs.items()):
        print(f"  {language}: head < {low:.1f} <= middle < {high:.1f} <= tail")


def cmd_train_lm(args: argparse.Namespace) -> int:
    from curation.commoncrawl.perplexity_models import (
        language_texts,
        model_files,
        train_kenlm,
        train_lm_tokenizer,
    )

    texts = language_texts(_local_disk(), os.path.abspath(args.articles), args.language)
    files = model_files(os.path.abspath(args.models_dir), args.language)
    train_lm_tokenizer(texts, files.tokenizer.parent, args.vocab_size, args.seed)
    train_kenlm(texts, files.tokenizer, files.kenlm.parent, order=args.order)
    print(f"{args.language}: {len(texts)} articles -> {files.tokenizer}, {files.kenlm}")
    return 0


def cmd_cutoffs(args: argparse.Namespace) -> int:
    """Cutoffs of a crawl's language-identified documents, from a sample of them, as JSON
    for `llamapipe stage cc_perplexity --cutoffs`."""
    from curation.commoncrawl.perplexity_cutoffs import crawl_cutoffs, scorer_for

    storage = _local_disk()
    output = os.path.abspath(args.output)
    scorer = scorer_for(
        storage, os.path.abspath(args.models_dir), f"{output}.scores", args.languages,
        scoring=args.scoring,
    )  # fmt: skip
    inputs = parquet_parts(storage, os.path.abspath(args.documents))
    executor = LocalExecutor(args.workers)
    cutoffs, _ = crawl_cutoffs(
        scorer, inputs, storage, executor, args.sample_documents, args.percentiles
    )
    storage.write_bytes(output, json.dumps(cutoffs, indent=2).encode())
    _print_cutoffs(cutoffs)
    return 0


def cmd_train_wikiref(args: argparse.Namespace) -> int:
    from curation.commoncrawl.wikiref import (
        cited_url_set,
        crawl_pages,
        train_classifier,
        training_set,
    )

    storage = _local_disk()
    cited = cited_url_set(storage, os.path.abspath(args.articles))
    pages = crawl_pages(storage, os.path.abspath(args.documents))
    examples = training_set(pages, cited, args.seed)
    report = train_classifier(examples, os.path.abspath(args.output), args.seed)
    print(
        f"wikiref: {report.train_positives}+{report.train_negatives} train, held-out AUC "
        f"{report.auc:.3f}, precision {report.precision:.3f}, recall {report.recall:.3f}"
    )
    return 0


def cmd_sample_build(args: argparse.Namespace) -> int:
    from sample_world.build import build_sample_world

    out = build_sample_world(Path(args.out), Path(args.cache), seed=args.seed, force=args.force)
    print(f"sample world: {out}")
    return 0


def cmd_sample_scale(args: argparse.Namespace) -> int:
    from sample_world.scale import scale_world

    fraction = {} if args.edit_fraction is None else {"fraction": args.edit_fraction}
    out = scale_world(
        Path(args.sample),
        Path(args.out or f"data/scale-{args.factor}"),
        args.factor,
        seed=args.seed,
        workers=args.workers or os.cpu_count() or 1,
        force=args.force,
        **fraction,
    )
    print(f"scale world: {out}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """The data root's partitions, then (with a Dagster instance) the crawls it knows that
    have no output yet: a sensor-requested run that failed or has not started."""
    from curation.core.status import partition_statuses, status_table

    storage = Storage(args.root if "://" in args.root else os.path.abspath(args.root))
    from curation.recipe import STEPS

    statuses = partition_statuses(storage, storage.path("stages"), [s.asset for s in STEPS])
    print(status_table(statuses) if statuses else f"nothing materialized under {args.root}")
    if os.environ.get("DAGSTER_HOME"):
        from dagster import DagsterInstance

        from assets.partitions import crawls

        with DagsterInstance.get() as instance:
            known = instance.get_dynamic_partitions(crawls.name)
        on_disk = {s.partition for s in statuses if s.asset == "cc_documents"}
        waiting = [c for c in known if c not in on_disk]
        print(f"\ncrawl partitions: {len(known)} registered; without documents: {waiting or '-'}")
    return 0


def cmd_crawls_add(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from assets.partitions import crawls

    with DagsterInstance.get() as instance:
        known = set(instance.get_dynamic_partitions(crawls.name))
        new = [c for c in args.crawls if c not in known]
        if new:
            instance.add_dynamic_partitions(crawls.name, new)
    print(f"crawls partitions: added {new or 'nothing'}; known {sorted(known | set(new))}")
    return 0


def _crawl_id(value: str) -> str:
    """A crawl id becomes a directory name under the data root: refuse an unsafe one."""
    from curation.commoncrawl.crawl_index import CrawlIndexError, validate_crawl_id

    try:
        return validate_crawl_id(value)
    except CrawlIndexError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _executor(args: argparse.Namespace) -> ShardExecutor:
    """The shard map the options ask for: a process pool, a Ray cluster or Slurm arrays."""
    if args.executor == "ray":
        from curation.core.ray_executor import RayExecutor

        return RayExecutor(args.ray_address)
    if args.executor == "slurm":
        from curation.core.slurm_executor import SlurmExecutor

        if not args.slurm_workdir:
            raise SystemExit("llamapipe: --executor slurm needs --slurm-workdir")
        return SlurmExecutor(args.slurm_workdir, partition=args.slurm_partition)
    return LocalExecutor(args.workers)


def _bar(stream: TextIO = sys.stderr) -> ProgressSink:
    """A progress bar redrawn in place on a terminal; one line per update in a log file."""
    interactive = stream.isatty()

    def show(update: ProgressUpdate) -> None:
        if interactive:
            end = "\n" if update.shards_done == update.shards_total else ""
            stream.write(f"\r{update.bar()}\x1b[K{end}")
        else:
            stream.write(update.line() + "\n")
        stream.flush()

    return show


def _config_fields(cls: type[Stage]) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("config", True)}


def _summary(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


def _add_common(parser: argparse.ArgumentParser, input_help: str, many: bool = False) -> None:
    parser.add_argument("--input", required=True, nargs="+" if many else None, help=input_help)
    parser.add_argument("--output", required=True, help="directory to write")
    parser.add_argument("--workers", type=int, default=0, help="processes (0: every CPU)")
    parser.add_argument("--executor", choices=["local", "ray", "slurm"], default="local")
    parser.add_argument(
        "--ray-address", default="auto", help='with --executor ray ("" starts a local Ray)'
    )
    parser.add_argument(
        "--slurm-workdir", help="with --executor slurm: a directory every node mounts"
    )
    parser.add_argument("--slurm-partition", default="", help="with --executor slurm")
    parser.add_argument("--force", action="store_true", help="recompute even if up to date")


def _add_config_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One option per config field of the dataclass `cls`: the CLI never drifts from it."""
    hints = typing.get_type_hints(cls)
    for name, field in _config_fields(cls).items():
        flag = "--" + name.replace("_", "-")
        hint = hints[name]
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            parser.add_argument(flag, dest=name, required=True, type=str)
            continue
        if hint is bool:
            parser.add_argument(
                flag, dest=name, default=default, action=argparse.BooleanOptionalAction
            )
        elif hint in (int, float, str):
            parser.add_argument(flag, dest=name, default=default, type=hint)
        elif typing.get_origin(hint) is typing.Literal:
            parser.add_argument(flag, dest=name, default=default, choices=typing.get_args(hint))
        else:  # containers: JSON on the command line
            parser.add_argument(flag, dest=name, default=default, type=json.loads, help="JSON")


def _add_stage_parser(stages, cls: type[Stage], input_help: str, many: bool = False) -> None:
    parser = stages.add_parser(cls.name, help=_summary(cls))
    _add_common(parser, input_help, many)
    _add_config_options(parser, cls)
    if cls.name == "cc_perplexity":
        _add_sample_options(parser)
    parser.set_defaults(func=cmd_deduplicated if many else cmd_stage)


def _add_sample_options(parser: argparse.ArgumentParser) -> None:
    """How perplexity cutoffs are computed when none are given (perplexity_cutoffs.py)."""
    from curation.commoncrawl.perplexity_cutoffs import DEFAULT_PERCENTILES, SAMPLE_DOCUMENTS

    parser.add_argument("--percentiles", type=float, nargs=2, default=list(DEFAULT_PERCENTILES))
    parser.add_argument(
        "--sample-documents", type=int, default=SAMPLE_DOCUMENTS, help="0: every document"
    )


def _add_token_parsers(stages) -> None:
    from curation.tokens.shards import TokenShardsConfig
    from curation.tokens.tokenizer import TokenizerConfig

    inputs = "contract Parquet files or partition directories, in stream order"
    tokenizer = stages.add_parser("tokenizer", help="SentencePiece BPE as in the paper")
    _add_common(tokenizer, inputs, many=True)
    _add_config_options(tokenizer, TokenizerConfig)
    tokenizer.set_defaults(func=cmd_tokenizer)

    shards = stages.add_parser("tokenized_shards", help="documents to fixed-size token shards")
    _add_common(shards, inputs, many=True)
    shards.add_argument("--tokenizer", required=True, help="a SentencePiece .model file")
    _add_config_options(shards, TokenShardsConfig)
    shards.set_defaults(func=cmd_tokenized_shards)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llamapipe", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    stage = commands.add_parser("stage", help="run one curation stage on local files")
    stages = stage.add_subparsers(dest="name", required=True)
    for cls, find_inputs in _stages().values():
        source = "a partition or any directory of contract Parquet"
        if find_inputs is not parquet_parts:
            source = "file or directory"
        _add_stage_parser(stages, cls, f"input: {source}")
    from curation.dedup.near_dedup import Deduplicated

    _add_stage_parser(stages, Deduplicated, "directories of contract Parquet", True)
    _add_token_parsers(stages)

    from curation.commoncrawl.perplexity import SCORING_MODES
    from curation.commoncrawl.perplexity_models import CCNET_VOCAB_SIZE

    lm = commands.add_parser("train-lm", help="SentencePiece + KenLM for one language")
    lm.add_argument("--articles", required=True, help="a wikipedia partition directory")
    lm.add_argument("--language", required=True)
    lm.add_argument("--models-dir", required=True)
    lm.add_argument("--vocab-size", type=int, default=CCNET_VOCAB_SIZE)
    lm.add_argument("--order", type=int, default=5)
    lm.add_argument("--seed", type=int, default=0)
    lm.set_defaults(func=cmd_train_lm)

    cutoffs = commands.add_parser("cutoffs", help="per-language perplexity cutoffs of a crawl")
    cutoffs.add_argument("--documents", required=True, help="a cc_language partition directory")
    cutoffs.add_argument("--models-dir", required=True)
    cutoffs.add_argument("--languages", nargs="*", default=[], help="default: every modelled")
    cutoffs.add_argument("--scoring", choices=SCORING_MODES, default="ccnet")
    cutoffs.add_argument("--output", required=True, help="cutoffs JSON file to write")
    cutoffs.add_argument("--workers", type=int, default=0, help="processes (0: every CPU)")
    _add_sample_options(cutoffs)
    cutoffs.set_defaults(func=cmd_cutoffs)

    wikiref = commands.add_parser("train-wikiref", help="the Wikipedia-reference classifier")
    wikiref.add_argument("--articles", required=True, help="a wikipedia partition directory")
    wikiref.add_argument("--documents", required=True, help="a cc_language partition directory")
    wikiref.add_argument("--output", required=True, help="model file (.bin) to write")
    wikiref.add_argument("--seed", type=int, default=0)
    wikiref.set_defaults(func=cmd_train_wikiref)

    show = commands.add_parser("show", help="summarize finished partitions from their manifests")
    show.add_argument("partitions", nargs="*", help="partition directories")
    show.add_argument("--root", help="or every recipe stage's partitions under this data root")
    show.set_defaults(func=cmd_show)

    status = commands.add_parser(
        "status", help="which partitions of which assets are materialized, with their counts"
    )
    status.add_argument(
        "--root",
        default=os.environ.get("LLAMAPIPE_DATA_ROOT", "data"),
        help="the data root (default: $LLAMAPIPE_DATA_ROOT or ./data)",
    )
    status.set_defaults(func=cmd_status)

    sample = commands.add_parser("sample", help="the embedded sample world")
    sample_commands = sample.add_subparsers(dest="sample_command", required=True)
    build = sample_commands.add_parser("build", help="build it from Debian packages")
    build.add_argument("--out", default="data/sample")
    build.add_argument("--cache", default=".cache/debian")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--force", action="store_true")
    build.set_defaults(func=cmd_sample_build)
    scale = sample_commands.add_parser("scale", help="an N times larger world made from it")
    scale.add_argument("--factor", type=int, required=True, help="copies of every file")
    scale.add_argument("--sample", default="data/sample")
    scale.add_argument("--out", default="", help="default: data/scale-FACTOR")
    scale.add_argument("--seed", type=int, default=0)
    scale.add_argument("--edit-fraction", type=float, help="of the copies (default 0.3)")
    scale.add_argument("--workers", type=int, default=0, help="processes (0: every CPU)")
    scale.add_argument("--force", action="store_true")
    scale.set_defaults(func=cmd_sample_scale)

    train = commands.add_parser("train", help="pre-train a LLaMA (one process; see torchrun)")
    train.add_argument("--config", required=True, help="a TrainConfig JSON file")
    train.set_defaults(func=cmd_train)
    _add_plan_parsers(commands)

    export = commands.add_parser("export-hf", help="a checkpoint as a Hugging Face directory")
    export.add_argument("--checkpoint", required=True, help="a checkpoint or a run directory")
    export.add_argument("--out", required=True)
    export.add_argument("--tokenizer", default="", help="default: the run's data directory's")
    export.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16")
    export.set_defaults(func=cmd_export_hf)

    imported = commands.add_parser("import-hf", help="an HF LLaMA directory as a checkpoint")
    imported.add_argument("--hf", required=True, help="a LlamaForCausalLM directory")
    imported.add_argument("--out", required=True, help="run directory to write")
    imported.set_defaults(func=cmd_import_hf)

    generate = commands.add_parser("generate", help="continue prompts with a checkpoint")
    generate.add_argument("--checkpoint", required=True, help="a checkpoint or a run directory")
    generate.add_argument("--prompt", required=True, action="append", help="repeat for a batch")
    generate.add_argument("--max-new-tokens", type=int, default=64)
    generate.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--tokenizer", default="", help="default: the run's data directory's")
    generate.set_defaults(func=cmd_generate)

    evaluate = commands.add_parser(
        "eval", help="held-out perplexity, lm-eval tasks, a sample; the paper's suites"
    )
    model = evaluate.add_mutually_exclusive_group(required=True)
    model.add_argument("--checkpoint", help="a checkpoint or a run directory")
    model.add_argument("--hf", default="", help="a Hugging Face export (suites only)")
    evaluate.add_argument("--mixture", default="", help="the mixture the shards came from")
    evaluate.add_argument("--out", required=True, help="work directory (task files, samples)")
    evaluate.add_argument("--max-tokens", type=int, default=200_000)
    evaluate.add_argument("--limit", type=int, default=100, help="items per task (0: all)")
    evaluate.add_argument("--suite", default="", help="comma-separated: " + ", ".join(SUITES))
    evaluate.add_argument("--benchmarks", default="", help="local copies: <dataset>/<split>.jsonl")
    evaluate.add_argument("--offline", action="store_true", help="never reach the Hub")
    evaluate.add_argument("--max-gen-toks", type=int, default=0, help="0: each task's own")
    evaluate.add_argument(
        "--contamination", default="", help="an overlap report (stages/decontaminated/*.overlaps)"
    )
    evaluate.set_defaults(func=cmd_eval)

    crawls = commands.add_parser("crawls", help="crawl partitions of the Dagster instance")
    crawls_commands = crawls.add_subparsers(dest="crawls_command", required=True)
    add = crawls_commands.add_parser("add", help="register crawl ids as partitions")
    add.add_argument("crawls", nargs="+", type=_crawl_id)
    add.set_defaults(func=cmd_crawls_add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except MissingInput as exc:
        print(f"llamapipe: error: {exc}", file=sys.stderr)
        return 2
    except OutputWriteError as exc:  # disk full, read-only: the path and why, no traceback
        print(f"llamapipe: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
