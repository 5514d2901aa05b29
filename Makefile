# The README's two commands, `make demo` and `make test`, work alone on a fresh machine:
# each depends on `install`, which builds .venv/ once and again when the package metadata changes.
# pip runs with -qq: warnings about a machine's extra package indexes would scroll by the hundred; errors still show.
# Install compiles stage one's numba code into numba's cache once (extract/numba_once.py), as the first run would.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# These releases lie on this project's machines' disk; elsewhere set TORCH_PINS= to keep your own.
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: install test test-slow test-quick demo bench gpu-check lint dist extract fuse cv docs

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -qq $(TORCH_PINS) -e '.[dev,dask,opensmile,clap]'
	$(BIN)/python -c 'from mvemo.extract.numba_once import compile_numba_once; compile_numba_once()'
	touch $@

# The tests run on every core (pytest-xdist, one thread each, at most 4 workers: each holds up to a GB), a test file
# on one worker (its module fixtures built once), but for the tests that time something, which run alone after.
# pytest exits 5 when no test is selected: that is not a failure.
PYTEST := $(BIN)/python -m pytest
PARALLEL := -n auto --maxprocesses 4 --dist loadfile
test: install
	$(PYTEST) $(PARALLEL) -m "not slow and not gpu and not timed"
	$(PYTEST) -m "timed and not slow and not gpu"; rc=$$?; [ $$rc -eq 5 ] || exit $$rc

# The slow tests are few and long: each file goes whole to the next free worker, in the order of the paths, so that
# a file's costly module fixture (the ready-made recipes, built small) is built once. The longest files go first
# (on 2 cores, about 4, 4, 3.5 and 2.5 minutes), so that no worker starts one while the other is nearly done; the
# files are named one by one, since pytest collects a folder's files in the folder's order.
SLOW_FIRST := tests/pipeline/test_readymade.py tests/pipeline/test_bench_smallest.py tests/pipeline/test_demo_cold.py \
	tests/pipeline/test_gpu_check.py
SLOW_ORDER = $(SLOW_FIRST) $(filter-out $(SLOW_FIRST),$(shell find tests -name 'test_*.py' | LC_ALL=C sort))
test-slow: install
	$(PYTEST) -n auto --maxprocesses 4 --dist loadfile --no-loadscope-reorder -m slow $(SLOW_ORDER); \
		rc=$$?; [ $$rc -eq 5 ] || exit $$rc

# The edit-run loop: the tests under half a second each, the failed ones of the last run first, stop at the first failure.
test-quick: install
	$(PYTEST) $(PARALLEL) -m "not slow and not gpu and not heavy and not timed" --failed-first -x

demo: install
	$(BIN)/mvemo demo --out demo-out

# The timeline bench needs the pretrained weights: ../shared/weights where it lies beside the clone, else WEIGHTS=DIR.
WEIGHTS ?= $(wildcard ../shared/weights)
bench: install
	$(BIN)/mvemo bench all $(if $(WEIGHTS),--weights-dir $(WEIGHTS))

# The GPU path checked in one run of at most ten minutes, printing one JSON document, also written to
# build/gpu-check.json after every part (pipeline/bench/gpu.py):
# the gpu tests, embedding throughput, fine-tuning over the MVED sample, the paper protocol's leak.
# DEVICE=cpu is its dry run on a tiny set. It reads ../shared (weights/, data/mved-sample/), or SHARED=DIR.
DEVICE ?= cuda
SHARED ?= ../shared
gpu-check: install
	$(BIN)/python -m mvemo.pipeline.bench.gpu --device $(DEVICE) --shared $(SHARED) --json-out build/gpu-check.json \
		$(if $(filter cpu,$(DEVICE)),--tiny)

# Lint, format, types and the import direction of ../shared/DESIGN.md (.importlinter).
# mypy and import-linter read packages from disk, where mvemo.extract is extract/: they read a view of
# symbolic links laid out as the installed package (links to files: import-linter walks no linked folder).
LINT_VIEW := build/lint-view
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	rm -rf $(LINT_VIEW) && mkdir -p $(LINT_VIEW)/mvemo
	ln -s $(CURDIR)/mvemo/__init__.py $(LINT_VIEW)/mvemo/__init__.py
	for p in manifests cache extract fuse pipeline; do cp -rs $(CURDIR)/$$p $(LINT_VIEW)/mvemo/$$p; done
	MYPYPATH=$(LINT_VIEW) $(BIN)/mypy -p mvemo
	cd $(LINT_VIEW) && $(CURDIR)/$(BIN)/lint-imports --config $(CURDIR)/.importlinter --no-cache

dist: install
	$(BIN)/python -m build --no-isolation --outdir dist .

# docs/cli.md, the command-line reference, rendered from the click commands (a test compares the two).
docs: install
	$(BIN)/python -m mvemo.pipeline.cli.reference > docs/cli.md.tmp && mv docs/cli.md.tmp docs/cli.md
	$(BIN)/python -m mvemo.pipeline.descriptor_reference > docs/descriptors.md.tmp && mv docs/descriptors.md.tmp docs/descriptors.md

# Stage one and two on your own data: make extract MANIFEST=m.csv [CACHE=runs/cache NETS=... FINETUNE=none|last|full];
# make fuse [CACHE=runs/cache OUT=runs/reports]. The cache and reports go under runs/ (ignored by git), never into a source folder.
# NETS are the papers' nets, fine-tuned; ENCODERS the music encoders, used as they are (fine-tuning musicnn in full cost
# it 5.8 points on 4q-dev: docs/results.md); ENCODERS= leaves them out.
MANIFEST ?= manifest.csv
CACHE ?= runs/cache
OUT ?= runs/reports
FOLDS ?= 6
NETS ?= onedcnn,twodcnn,c3d,i3d,crnn
ENCODERS ?= encoders
FINETUNE ?= full

extract: install
	$(BIN)/mvemo extract $(MANIFEST) --cache $(CACHE) --features mel,lld,descriptors --nets $(NETS) --finetune $(FINETUNE)
	$(if $(ENCODERS),$(BIN)/mvemo extract $(MANIFEST) --cache $(CACHE) --nets $(ENCODERS) --finetune none)

fuse: install
	$(BIN)/mvemo fuse $(CACHE) --out $(OUT)

cv: install
	$(BIN)/mvemo-cv --folds $(FOLDS) --cache $(CACHE) --out $(OUT)
