# Two commands for a fresh machine (each creates .venv when missing; both are idempotent):
#   make demo   set up, fetch the weights, stylise the bundled example -> out/demo.png
#   make test   set up, fetch the weights, run all tests (pytest + the notebooks with nbval)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test weights lab benchmark clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[test,notebooks]'
	touch $(STAMP)

weights: $(STAMP)
	$(BIN)/python -m nst_lib --fetch-weights

demo: weights
	mkdir -p out
	$(BIN)/python -m nst_lib data/chelsea.png data/starry_night.jpg -o out/demo.png --size 384

test: weights
	$(BIN)/python -m pytest tests notebooks --nbval-lax

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

benchmark: weights
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) out
