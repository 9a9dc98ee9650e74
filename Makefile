# Two entry points: `make reproduce` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rpl-installed
QUICK ?= 0

.PHONY: reproduce notebooks test venv _runs _notebooks

venv: $(STAMP)

# Reinstalled when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

# ruff's lint and format check, then unit tests and every notebook (nbval: each cell must run; cells tagged
# nbval-check-output must reproduce their committed output), in quick mode; then the CUDA
# kernels under Numba's CUDA simulator, which must be switched on before Numba is imported.
test: $(STAMP)
	$(VENV)/bin/ruff check rpl tests benchmarks notebooks
	$(VENV)/bin/ruff format --check rpl tests benchmarks
	RPL_QUICK=1 $(PY) -m pytest --nbval-lax --nbval-current-env tests notebooks
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest tests/cuda

# The reproduction, into a folder of its own (OUT, default reproduction/; the committed results/,
# figures/ and notebooks/ are left alone): fetch SIFT Flow when it is missing (resumable; offline
# it stops within seconds, saying what to download by hand), check it, extract the proposals
# into the cache, then every run of rpl.experiments (train, evaluate, OUT/results/<run>.json) in
# JOBS single-threaded processes that share the list (each run is locked by the process on it,
# resumable, skipped once finished), the figures and the notebooks in order (the rerun's runs; the
# tables they show are the committed results'), and last the comparison: each rerun beside the committed result and the paper's,
# judged against the seeds' spread (OUT/comparison.md). About 6 h on 2 cores; QUICK=1: the same
# steps on the quick preset, in minutes, into reproduction-quick/.
JOBS ?= 2
ifeq ($(QUICK),1)
OUT ?= reproduction-quick
PROPOSALS := --split test --color-spaces rgb
QUICKFLAG := --quick
else
OUT ?= reproduction
PROPOSALS := --split all --color-spaces rgb,hsv,lab
QUICKFLAG :=
endif
HERE := $(abspath $(OUT))

reproduce: $(STAMP)
	@$(PY) -m rpl fetch siftflow
	@$(PY) -m rpl check siftflow
	@echo "== proposals: Selective Search into the cache ($(PROPOSALS))"
	$(PY) -m rpl proposals --dataset siftflow $(PROPOSALS)
	@echo "== training and evaluating every experiment in $(JOBS) processes, into $(OUT)/"
	@$(MAKE) --no-print-directory _runs RUNFLAGS="$(QUICKFLAG) --runs $(OUT)/runs --results $(OUT)/results"
	@echo "== figures"
	$(PY) -m rpl figures $(QUICKFLAG) --runs $(OUT)/runs --out $(OUT)/figures
	@$(MAKE) --no-print-directory _notebooks NBFLAGS="--output-dir '$(OUT)/notebooks' --times '$(OUT)/notebook_times.json' \
		--env 'RPL_RUNS=$(HERE)/runs' --env 'RPL_FIGURES=$(HERE)/figures'"
	@echo "== the rerun beside the committed results and the paper"
	$(PY) -m rpl compare $(OUT)/results --out $(OUT)/comparison.md
	@echo "== done: $(OUT)/ holds the runs, results, figures, notebooks and comparison.md"

# The runs the notebooks show (the baseline, the end-to-end model and the FCN: about 1 h on 2
# cores), into runs/ (their results into reproduction/notebook-results: the committed ones stay),
# then every notebook in order, in place.
notebooks: $(STAMP)
	@$(PY) -m rpl fetch siftflow
	$(PY) -m rpl proposals --dataset siftflow --split all --color-spaces rgb,hsv,lab
	@$(MAKE) --no-print-directory _runs RUNFLAGS="--only ablation_baseline --only e2s2_cpu --only fcn_cpu --first-seed \
		--runs runs --results reproduction/notebook-results"
	@$(MAKE) --no-print-directory _notebooks NBFLAGS="--times results/notebook_times.json"

_runs:
	@pids=""; for i in $$(seq $(JOBS)); do \
		OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(PY) -m rpl reproduce $(RUNFLAGS) --no-progress & pids="$$pids $$!"; \
		sleep 2; done; \
	status=0; for p in $$pids; do wait $$p || status=1; done; exit $$status

_notebooks:
	$(PY) -m rpl notebooks $(QUICKFLAG) $(NBFLAGS)
