# Two commands for a fresh machine (each creates .venv when missing; both are idempotent):
#   make demo   set up, fetch the weights, stylise the bundled example -> out/demo.png
#   make test   set up, fetch the weights, run all tests (pytest + the notebooks with nbval
#               + the browser test, which needs Chromium: `make browser-deps` installs it)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test weights lab present benchmark clean browser-deps test-browser

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

# Debian's Chromium for tests/browser (JupyterLab driven by Playwright); needs root or sudo
browser-deps:
	@if [ -x /usr/bin/chromium ]; then echo "/usr/bin/chromium is installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else \
		sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

# only the browser tests: notebook 4 in JupyterLab and the presentation page in Voila,
# screenshots in test-artifacts/browser/
test-browser: weights
	$(BIN)/python -m pytest -m browser tests/browser

lab: $(STAMP)
	$(BIN)/jupyter lab notebooks/

# the explorer alone, as a page without code (Voila), for a projector: http://localhost:8866
present: weights
	$(BIN)/voila notebooks/present.ipynb --port=8866

benchmark: weights
	$(BIN)/python benchmarks/benchmark.py

clean:
	rm -rf $(VENV) out
