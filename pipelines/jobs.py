"""Jobs: named selections of the asset graph that people and CI run, in this order on a new
deployment: `reference` (Wikipedia text), `sources` (GitHub, Books, ArXiv, StackExchange),
`perplexity_models` (one run per language partition), then `crawl` (one run per crawl
partition), then `corpus` (everything that reads all crawls and sources at once), then
`train` (pre-training on the token shards, then evaluation and the Hugging Face export).
Which asset belongs to which job is a column of the recipe's table (curation/recipe.py)."""

from dagster import AssetSelection, define_asset_job

from curation.recipe import job_assets

DESCRIPTIONS = {
    "reference": "Wikipedia exports -> clean article text per language.",
    "sources": "The curated sources: GitHub, Books, ArXiv, StackExchange dumps -> documents.",
    "perplexity_models": "Per language partition: SentencePiece + KenLM 5-gram on Wikipedia text.",
    "crawl": "One crawl partition through CCNet and RedPajama's CommonCrawl processing.",
    "corpus": "Every processed crawl and source -> global dedup -> benchmark decontamination -> "
    "mixture -> tokenizer -> token shards -> data card.",
    "train": "Token shards -> the LLaMA trainer under torchrun, on the training_launcher "
    "resource's backend (local, Slurm, Kubernetes), reporting through Dagster Pipes.",
}

JOBS = {
    name: define_asset_job(
        name, selection=AssetSelection.assets(*job_assets(name)), description=description
    )
    for name, description in DESCRIPTIONS.items()
}
