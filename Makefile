# minprune: make demo | make test | make lab | make bench | make notebooks | make baselines | make student | make nbgrader | make html
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
# The reference kernels: the shipped baselines and the committed notebook outputs come from this setting.
REFERENCE_KERNELS := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OMP_NUM_THREADS=2 \
	MINPRUNE_DEVICE=cpu

.PHONY: install demo test lint unit nbval nbval-other-cpu lab bench notebooks notebook baselines baselines-check gpu-check \
	student nbgrader html clean

# The tested set of every package is pinned in constraints.txt; pyproject.toml only gives ranges.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m minprune demo

lint: install
	$(VENV)/bin/ruff check .

unit: install
	$(PY) -m pytest tests/

# The committed outputs are CPU outputs: a machine with a GPU checks them on its CPU (make gpu-check for the GPU).
nbval: install
	MINPRUNE_DEVICE=cpu MINPRUNE_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:randomly notebooks/

# The checked cells again with other CPU kernels and one thread (what a learner's laptop may run):
# tools/other_cpu.sh picks a kernel set different from this machine's best one.
nbval-other-cpu: install
	env $$(tools/other_cpu.sh) MINPRUNE_DEVICE=cpu MINPRUNE_FAST=1 OMP_NUM_THREADS=1 $(PY) -m pytest --nbval-lax --nbval-current-env \
		-p no:randomly notebooks/

test: lint unit nbval nbval-other-cpu

# On a machine with a CUDA GPU: the GPU tests and a short GPU run of the pipeline (exit 77: no GPU here).
gpu-check: install
	tools/gpu_check.sh

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	for script in bench/*.py; do $(PY) $$script || exit 1; done

# Rebuild one notebook from its source in notebooks/src/ and execute it (FAST mode, reference kernels, outputs
# committed).
notebook: install
	$(PY) tools/py2nb.py notebooks/src/$(notdir $(basename $(NB))).py $(NB)
	cd notebooks && $(REFERENCE_KERNELS) MINPRUNE_FAST=1 ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 $(notdir $(NB))

notebooks: install
	for nb in $(NOTEBOOKS); do $(MAKE) notebook NB=$$nb || exit 1; done

# The shipped baselines (minprune/assets/baselines/), trained with the fixed recipes on the reference kernels.
baselines: install
	$(REFERENCE_KERNELS) $(PY) tools/make_baselines.py

baselines-check: install
	$(REFERENCE_KERNELS) $(PY) tools/make_baselines.py --check

# Student notebooks (solutions replaced by stubs, outputs cleared) for a lab hand-out.
student: install
	$(PY) -m minprune course student student/

# The course as an nbgrader course in grading/ (one assignment per notebook with exercises), released into
# grading/release/; then nbgrader autograde (docs/instructor.md). nbgrader calls `alembic`: the venv's bin/ on PATH.
nbgrader: install
	$(PY) -m minprune course nbgrader grading/
	cd grading && PATH=$(abspath $(VENV))/bin:$$PATH $(abspath $(PY)) -m nbgrader generate_assignment "*" --force

# The course as static HTML pages (with the committed outputs) for a course website; each live widget becomes a note
# (a saved page has no kernel to run it) above the explorer's static snapshot.
html: install
	$(PY) -m minprune course html site/

clean:
	rm -rf build *.egg-info .pytest_cache
