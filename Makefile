# The two commands: `make demo` (the end-to-end CPU demo) and `make test` (the test suite).
# Both create .venv and install everything on first use (see tools/setup_env.sh).
PY := .venv/bin/python
STAMP := .venv/.installed

.PHONY: demo test setup clean
setup: $(STAMP)

$(STAMP): pyproject.toml tools/setup_env.sh
	bash tools/setup_env.sh

demo: $(STAMP)
	$(PY) -m megatron_inserter.cli demo $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

clean:
	rm -rf .venv
