# Two commands for a newcomer: `make run` and `make test`. Both set up .venv from this repo's files first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.sigma-bench-installed
PROFILE ?= cpu-quick

.PHONY: setup run compare test clean-data

setup: $(STAMP)

# torch first (the pinned pair), then everything else constrained to that pair
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# SIGMA's cells; the leaderboard it prints also reads the comparison cells already in results/runs/
run: $(STAMP)
	$(BIN)/bench run --generator sigma --detector all --profile $(PROFILE)

# the comparison rows the headline needs: detectors trained on pixel-difference and on ground-truth masks
compare: $(STAMP)
	$(BIN)/bench run --generator pixel_diff,oracle --detector all --profile $(PROFILE)

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-data:
	rm -rf .bench
