# Two commands for a newcomer: `make demo` (the main job) and `make test` (the tests).
# Both run the idempotent set-up first (apt packages, .venv, editable install, data).
PY := .venv/bin/python
LAYERS ?= 4x2000

.PHONY: setup data-ecg demo test test-slow clean

setup:
	@bash scripts/setup.sh

# opt-in: MIT-BIH ECG records 100 and 101 (sha256-checked) for `--dataset ecg`
data-ecg:
	@bash scripts/setup.sh --ecg

demo: setup
	$(PY) -m ffaccel.gen --layers $(LAYERS)

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

clean:
	rm -rf .pytest_cache .hypothesis build sim_build
