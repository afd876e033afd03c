# Async Batch Workbook. Every target creates .venv and installs requirements.txt the
# first time it is needed; later runs reuse it (reinstalling only if requirements change).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9]*.ipynb))
BUILD  := build
PORT   ?= 8888
# Extra pytest arguments, e.g. `make test PYTEST_ARGS="-k mock -x"`.
PYTEST_ARGS ?=
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with tests/sanitize.cfg --nbval-cell-timeout 300

.PHONY: help lab test run execute student bench costs clean

help:
	@echo "make lab      open the workbook in JupyterLab (mock model, no API key needed)"
	@echo "make test     unit tests + strict nbval over every notebook"
	@echo "make run      execute every notebook headless, write HTML to $(BUILD)/html"
	@echo "make execute  re-execute every notebook in place (refreshes stored outputs)"
	@echo "make student  write the hand-out (learner copies, solutions removed) to student/ and $(BUILD)/student.zip"
	@echo "make bench    benchmark every batch runner (~12 min; BENCH_ARGS=--quick for ~3 min),"
	@echo "              write $(BUILD)/bench/results.md and .json and README's Performance section"
	@echo "make costs    run every notebook on a second OpenAI-compatible server (not the mock) and write"
	@echo "              README's table of the requests and tokens a real-backend Run All sends (~5 min)"
	@echo "make clean    remove build output (keeps .venv)"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed; set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $(STAMP)

# Jupyter refuses to start as root unless told; containers and classroom VMs often run as root.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)
# The repository root is served, so the README and the notebooks' links to it work; lesson 01 opens
# first, and .jupyter/lab-settings/overrides.json turns JupyterLab's news and update prompt off.
FIRST  := notebooks/01_basic_abatch.ipynb
LAB    := $(VENV)/bin/jupyter lab --ip=127.0.0.1 --port=$(PORT) --notebook-dir=. \
          --LabApp.default_url=/lab/tree/$(FIRST) --LabApp.app_settings_dir=$(CURDIR)/.jupyter/lab-settings $(ALLOW_ROOT)

lab: $(STAMP)
	$(LAB)

test: $(STAMP)
	WORKBOOK_BACKEND=mock $(PY) -m pytest $(NBVAL) --durations=15 $(PYTEST_ARGS)

run: $(STAMP)
	mkdir -p $(BUILD)/html
	WORKBOOK_BACKEND=mock $(VENV)/bin/jupyter nbconvert --to html --execute --output-dir $(BUILD)/html \
		--ExecutePreprocessor.timeout=300 $(NOTEBOOKS)

execute: $(STAMP)
	WORKBOOK_BACKEND=mock $(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.timeout=300 $(NOTEBOOKS)

student: $(STAMP)
	$(PY) tools/student.py handout --out student --archive $(BUILD)/student.zip

# Extra benchmark arguments, e.g. `make bench BENCH_ARGS=--quick` (a --quick run leaves README alone).
BENCH_ARGS ?=
bench: $(STAMP)
	BENCH_FROM_MAKE=1 $(PY) tools/bench_runners.py --update-readme --out $(BUILD)/bench $(BENCH_ARGS)

costs: $(STAMP)
	$(PY) tools/real_backend_costs.py --update-readme

clean:
	rm -rf $(BUILD) student
