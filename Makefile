# Two entry points for a fresh machine: `make demo` (the main offline job) and `make test`.
# Both create .venv on first use; torch 2.13.0 is installed first so pip does not pull a CUDA build.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: demo test install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/avseg demo

test: install
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) avseg-demo
