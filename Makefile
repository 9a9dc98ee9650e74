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

# Unit tests and every notebook (nbval: each cell must run; cells tagged
# nbval-check-output must reproduce their committed output), in quick mode; then the CUDA
# kernels under Numba's CUDA simulator, which must be switched on before Numba is imported.
test: $(STAMP)
	RPL_QUICK=1 $(PY) -m pytest --nbval-lax --nbval-current-env tests notebooks
	NUMBA_ENABLE_CUDASIM=1 $(PY) -m pytest tests/cuda

# The reproduction, so far: check the data, extract the proposals into the cache, train and
# evaluate the end-to-end model and the baseline (each resumable, skipped once finished), then
# run the notebooks in order on the real data, writing their outputs in place and their figures
# to figures/. QUICK=1: the same steps, small (quick preset, runs under cache/quick-runs).
ifeq ($(QUICK),1)
PROPOSALS := --split test --color-spaces rgb
PRESET := quick
RUNS := cache/quick-runs
else
PROPOSALS := --split all --color-spaces rgb,hsv,lab
PRESET := cpu
RUNS := runs
endif

reproduce: $(STAMP)
	@$(PY) -m rpl check siftflow
	@echo "== proposals: Selective Search into the cache ($(PROPOSALS))"
	$(PY) -m rpl proposals --dataset siftflow $(PROPOSALS)
	@for model in e2s2 baseline; do \
		run=$(RUNS)/$${model}_$(PRESET); \
		if [ -f $$run/train.json ]; then echo "== $$run: trained already"; else \
			echo "== training $$run (resumable)"; \
			$(PY) -m rpl train --preset $(PRESET) --model $$model --out $$run --resume || exit 1; fi; \
		if [ "$(QUICK)" != 1 ]; then \
			$(PY) -m rpl evaluate $$run --results results/$${model}_$(PRESET).json || exit 1; fi; \
	done
	@for nb in $(NOTEBOOKS); do \
		echo "== running $$nb (RPL_QUICK=$(QUICK))"; \
		RPL_QUICK=$(QUICK) $(PY) -m jupyter nbconvert --to notebook --execute --inplace $$nb || exit 1; \
	done
	@echo "== done: notebooks/ hold the outputs, figures/ the figures"
