# minprune: make demo | make test | make lab | make bench | make notebooks | make student | make html
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))

.PHONY: install demo test lint unit nbval lab bench notebooks notebook student html clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) -m minprune demo

lint: install
	$(VENV)/bin/ruff check .

unit: install
	$(PY) -m pytest tests/

nbval: install
	MINPRUNE_FAST=1 $(PY) -m pytest --nbval-lax --nbval-current-env -p no:randomly notebooks/

test: lint unit nbval

lab: install
	$(VENV)/bin/jupyter lab notebooks/

bench: install
	$(PY) -m pip install -q -e ".[bench]"
	for script in bench/*.py; do $(PY) $$script || exit 1; done

# Rebuild one notebook from its source in notebooks/src/ and execute it (FAST mode, outputs committed).
notebook: install
	$(PY) tools/py2nb.py notebooks/src/$(notdir $(basename $(NB))).py $(NB)
	cd notebooks && MINPRUNE_FAST=1 ../$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=600 $(notdir $(NB))

notebooks: install
	for nb in $(NOTEBOOKS); do $(MAKE) notebook NB=$$nb || exit 1; done

# Student notebooks (solutions replaced by stubs, outputs cleared) for a lab hand-out.
student: install
	$(PY) -m minprune course student student/

# The course as static HTML pages (with the committed outputs) for a course website.
html: install
	$(VENV)/bin/jupyter nbconvert --to html --output-dir site/ $(NOTEBOOKS)

clean:
	rm -rf build *.egg-info .pytest_cache
