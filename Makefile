# tokenbot: `make demo` to try it, `make test` to test it, `make bench` to measure it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Two stamps: the demo and `tokenbot run` need only tokenbot's own dependencies; tests, lint
# and benchmarks also need the [test] extra (pytest, hypothesis, ruff, mypy …).
RUNTIME := $(VENV)/.installed-runtime
STAMP   := $(VENV)/.installed

.PHONY: demo test bench lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

# The [test] install includes the runtime one, so it satisfies both stamps.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(RUNTIME)

install: $(RUNTIME)

demo: $(RUNTIME)
	$(BIN)/tokenbot console --sim

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal

bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check bot adapters tests bench
	$(BIN)/ruff format --check bot adapters tests bench
	$(BIN)/mypy bot adapters

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tokenbot-out
