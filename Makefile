# Two entry points: `make reproduce` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.rpl-installed
QUICK ?= 0
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: reproduce test venv

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

# The reproduction: fetch SIFT Flow when it is missing (resumable; offline it stops within
# seconds, saying what to download by hand), check it, extract the proposals into the cache, then every run of
# rpl.experiments (train, evaluate, results/<run>.json) in JOBS single-threaded processes that
# share the list (each run is locked by the process on it, resumable, skipped once finished),
# then the figures and the notebooks in order, in place. QUICK=1: the same steps on the quick
# preset (runs, results and executed notebooks under cache/, figures in cache/figures-quick),
# in minutes, leaving the committed notebooks, results and figures alone.
JOBS ?= 2
ifeq ($(QUICK),1)
PROPOSALS := --split test --color-spaces rgb
QUICKFLAG := --quick
NBOUT := --output-dir cache/notebooks-quick
WHERE := cache/quick-results hold the numbers, cache/notebooks-quick the notebooks, cache/figures-quick the figures
else
PROPOSALS := --split all --color-spaces rgb,hsv,lab
QUICKFLAG :=
NBOUT := --inplace
WHERE := results/ hold the numbers, notebooks/ the tables, figures/ the figures
endif

reproduce: $(STAMP)
	@$(PY) -m rpl fetch siftflow
	@$(PY) -m rpl check siftflow
	@echo "== proposals: Selective Search into the cache ($(PROPOSALS))"
	$(PY) -m rpl proposals --dataset siftflow $(PROPOSALS)
	@echo "== training and evaluating every experiment in $(JOBS) processes (python -m rpl reproduce $(QUICKFLAG))"
	@pids=""; for i in $$(seq $(JOBS)); do \
		OMP_NUM_THREADS=1 NUMBA_NUM_THREADS=1 $(PY) -m rpl reproduce $(QUICKFLAG) --no-progress & pids="$$pids $$!"; \
		sleep 2; done; \
	status=0; for p in $$pids; do wait $$p || status=1; done; exit $$status
	@echo "== figures"
	$(PY) -m rpl figures $(QUICKFLAG)
	@for nb in $(NOTEBOOKS); do \
		echo "== running $$nb (RPL_QUICK=$(QUICK))"; \
		RPL_QUICK=$(QUICK) $(PY) -m jupyter nbconvert --to notebook --execute $(NBOUT) $$nb || exit 1; \
	done
	@echo "== done: $(WHERE)"
