# tokenbot: `make demo` to try it, `make test` to test it, `make bench` to measure it.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Three stamps: `tokenbot run` needs only tokenbot's own dependencies; the demo also needs the
# [sim] extra (the simulators' AllToken SDK and Pillow); tests, lint and benchmarks need
# [test,sim] (pytest, hypothesis, ruff, mypy … and the simulators they run against).
RUNTIME := $(VENV)/.installed-runtime
DEMO    := $(VENV)/.installed-demo
STAMP   := $(VENV)/.installed

.PHONY: demo test bench profile lint install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(RUNTIME): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(RUNTIME)

$(DEMO): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[sim]'
	touch $(DEMO) $(RUNTIME)

# The [test,sim] install includes the other two, so it satisfies every stamp.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test,sim]'
	touch $(STAMP) $(DEMO) $(RUNTIME)

install: $(RUNTIME)

demo: $(DEMO)
	$(BIN)/tokenbot console --sim

# Four workers on two cores: most tests spend their time waiting on sockets, subprocesses
# and simulated latency (two workers left the cores idle half the run: 9 min instead of 5).
# Tests are handed out two at a time, the ones marked slow first (tests/conftest.py).
test: $(STAMP)
	$(BIN)/python -m pytest -n 4 --dist load --maxschedchunk 2

bench: $(STAMP)
	$(BIN)/python -m bench

# One 1,000-command burst with py-spy sampling the bot: top functions on stderr and under
# tokenbot-out/profile/ (bench/profile.py).
profile: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,sim,profile]'
	BENCH_PROFILE_DIR=tokenbot-out/profile BENCH_REPEATS=1 $(BIN)/python -m bench bench_burst

lint: $(STAMP)
	$(BIN)/ruff check bot adapters tests bench
	$(BIN)/ruff format --check bot adapters tests bench
	$(BIN)/mypy bot adapters tests

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache tokenbot-out
