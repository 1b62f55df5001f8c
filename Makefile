# Two commands matter: `make demo` (install, fetch assets, adapt SmolLM2 to Russian, report)
# and `make test` (install, run the test suite). Everything lands in .venv; assets are cached
# in $VOCADAPT_CACHE (default ~/.cache/vocadapt), never in the repository.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= out/demo

.PHONY: install demo demo-quick test test-fast bench bench-tokenizer bench-quality clean

# Installs stay quiet (pip's own output is pages long) but say what they do: the first `make`
# takes a minute or two, mostly downloading torch and transformers.
$(STAMP): pyproject.toml
	@echo "[1/4] creating $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@echo "[2/4] upgrading pip"
	@$(BIN)/python -m pip install --quiet --upgrade pip
	@# The CPU wheel of torch; a bare `torch` requirement would pull several GB of CUDA packages.
	@echo "[3/4] installing torch 2.13.0 (CPU wheel, ~200 MB download)"
	@$(BIN)/python -m pip install --quiet torch==2.13.0
	@echo "[4/4] installing vocadapt with all extras (transformers, tokenizers, fasttext, gensim, lm-eval, ...)"
	@$(BIN)/python -m pip install --quiet -e ".[all,test]"
	@touch $(STAMP)
	@echo "installed: $(BIN)/vocadapt"

install: $(STAMP)

demo: install
	$(BIN)/vocadapt demo --out $(DEMO_OUT)

# The same pipeline, small: about 10 minutes on a 2-core CPU (README has the timing).
demo-quick: install
	$(BIN)/vocadapt demo --quick

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not real"

# Benchmarks print tables (see benchmarks/*.py for what each measures).
bench: install
	$(BIN)/python benchmarks/init_memory.py

bench-tokenizer: install
	$(BIN)/python benchmarks/tokenizer_stats.py

bench-quality: install
	$(BIN)/python benchmarks/init_quality.py

clean:
	rm -rf $(VENV) out
