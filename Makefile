# BinBot. `make demo` sets everything up and runs the whole pipeline on generated images;
# `make test` runs the test suite (`make test-fast` the part for the edit loop); `make docs` builds the
# docs site. All create and reuse the virtual environment in $(VENV).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The demo's base weights: 'imagenet' downloads them; offline, pass a local no-top .h5:
#   make demo WEIGHTS=path/to/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5
WEIGHTS ?= imagenet
DEMO ?= .demo

.PHONY: install demo test test-fast docs pi-check clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c "import ensurepip, venv" 2>/dev/null || { \
	  echo "error: $(PYTHON) cannot create virtual environments; install them with: sudo apt install python3-venv" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,device,dev]'
	touch $@

demo: install
	rm -rf $(DEMO)
	$(BIN)/python -m binbot.train.synthetic $(DEMO)/images --per-class 40 --seed 1
	$(BIN)/python -m binbot.train.synthetic $(DEMO)/holdout --per-class 10 --seed 2
	$(BIN)/binbot train --data $(DEMO)/images --out $(DEMO)/run --weights $(WEIGHTS) \
	  --epochs 3 --fine-tune-epochs 1 --batch-size 16
	$(BIN)/binbot evaluate $(DEMO)/run/model.keras --data $(DEMO)/holdout --out $(DEMO)/holdout-evaluation
	$(BIN)/binbot convert $(DEMO)/run/model.keras --out $(DEMO)/bundle --mode int8
	$(BIN)/binbot bundle inspect $(DEMO)/bundle
	@echo "the daemon on the replayed hold-out images, paced to 10 fps, for 6 seconds (events, then its fps):"
	timeout --preserve-status -s TERM 6 $(BIN)/binbot run --bundle $(DEMO)/bundle \
	  --source replay:$(DEMO)/holdout --fps 10 --window 3 --http off
	@echo "the bundle's latency on this machine, stage by stage (binbot bench):"
	$(BIN)/binbot bench $(DEMO)/bundle --source replay:$(DEMO)/holdout --runs 100
	@echo "demo done: see $(DEMO)/run/report.md, $(DEMO)/holdout-evaluation/report.md and the bundle in $(DEMO)/bundle"

test: install
	$(BIN)/python -m pytest

# The edit loop's subset, about a minute: no test that trains a model, starts a daemon, sshd or install.sh
# (slow), needs root or drives Chromium; tests/conftest.py gives the markers. `make test` is still the suite.
test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not root and not browser"

# docs/ as a site, in mkdocs.yml's reading order, into build/site; --strict makes a broken link or anchor,
# or a page left out of the nav, an error. `$(BIN)/mkdocs serve` shows it while you edit.
docs: install
	$(BIN)/mkdocs build --strict

# Proof that the device side installs and runs on a Pi's CPU: an emulated Debian arm64 root (cached in
# .cache/pi-check), binbot[device] from aarch64 wheels, decoding, resizing, classify and run compared
# with this machine, on TrashNet photos from ../shared/data/trashnet when it is there.
# Takes minutes the first time; needs root:  sudo make pi-check [BUNDLE=dir] [IMAGES="files or folders"]
pi-check: install
	VENV=$(VENV) tests/pi_check.sh $(if $(BUNDLE),--bundle $(BUNDLE)) $(IMAGES)

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache build/site
