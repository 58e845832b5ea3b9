"""Jobs: named selections of the asset graph that people and CI run, in this order on a new
deployment: `reference` (Wikipedia text), `sources` (GitHub, Books, ArXiv,
StackExchange), `perplexity_models` (one run per language
partition), then `crawl` (one run per crawl partition), then `corpus` (everything that
reads all crawls and sources at once), then `train` (pre-training on the token shards,
then evaluation and the Hugging Face export)."""

from dagster import AssetSelection, define_asset_job

reference_job = define_asset_job(
    "reference",
    selection=AssetSelection.assets("wikipedia"),
    description="Wikipedia exports -> clean article text per language.",
)

perplexity_models_job = define_asset_job(
    "perplexity_models",
    selection=AssetSelection.assets("lm_tokenizer", "kenlm_model"),
    description="Per language partition: SentencePiece + KenLM 5-gram on Wikipedia text.",
)

sources_job = define_asset_job(
    "sources",
    selection=AssetSelection.groups("sources"),
    description="The curated sources: GitHub, Books, ArXiv, StackExchange dumps -> documents.",
)

crawl_job = define_asset_job(
    "crawl",
    selection=AssetSelection.groups("commoncrawl"),
    description="One crawl partition through CCNet and RedPajama's CommonCrawl processing.",
)

corpus_job = define_asset_job(
    "corpus",
    selection=AssetSelection.groups("corpus", "tokens"),
    description="Every processed crawl and source -> global dedup -> mixture -> tokenizer -> "
    "token shards -> data card.",
)

train_job = define_asset_job(
    "train",
    selection=AssetSelection.assets("pretrain", "evaluation", "hf_export"),
    description="Token shards -> the LLaMA trainer under torchrun, on the training_launcher "
    "resource's backend (local, Slurm, Kubernetes), reporting through Dagster Pipes.",
)

JOBS = [reference_job, sources_job, perplexity_models_job, crawl_job, corpus_job, train_job]
