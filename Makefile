# tf_fedscale: the two commands a new user needs (`make demo`, `make test`).
PYTHON ?= python3.11
VENV := .venv
export TF_CPP_MIN_LOG_LEVEL ?= 2
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bazel-test venv clean-venv

venv: $(STAMP)

# TFF 0.87 pins jaxlib==0.4.14, which is not on PyPI: every dependency is pinned in
# requirements.txt (jax/jaxlib 0.4.13) and TFF itself goes in with --no-deps. Last, the
# project itself, editable, so `import tf_fedscale` works from any directory.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tf_fedscale.experiments.run --config=experiments/configs/demo.py --output_dir=runs/demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q -p no:warnings -p no:cacheprovider -n 2 --dist loadfile --durations=15 tests

bazel-test: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH bazel test --spawn_strategy=standalone --test_output=errors //...

clean-venv:
	rm -rf $(VENV)
