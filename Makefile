# Two commands for a new user (see README): `make table5` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= mini
LAUNCHER ?= local
ARGS ?=
TABLES := table1 table2 table3 table4 table5 table6 table7 table8

.PHONY: setup test wordnet $(TABLES) ablation-pcl detection-quality figures all benchmarks clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q

# WordNet 3.0 from Debian (needed only to regenerate wordnet_hierarchy/data; as root).
wordnet: setup
	dpkg -s wordnet-base >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq --no-install-recommends wordnet-base)
	$(PY) -m wordnet_hierarchy setup

$(TABLES) figures all: setup
	$(PY) -m reproduce $@ --profile $(PROFILE) --launcher $(LAUNCHER) $(ARGS)

ablation-pcl: setup
	$(PY) -m reproduce table7 --profile $(PROFILE) --launcher $(LAUNCHER) $(ARGS)

detection-quality: setup
	$(PY) -m reproduce detection-quality --profile $(PROFILE) --launcher $(LAUNCHER) $(ARGS)

benchmarks: setup
	$(PY) -m benchmarks.run_all

clean:
	rm -rf runs .pytest_cache
