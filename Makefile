# The two set-up commands: `make conformance` and `make test`. Both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
REPORT_DIR ?= reports/latest
ARGS ?=

.PHONY: setup conformance test bench clean

setup: $(VENV)/.ready

$(VENV)/.ready: pyproject.toml scripts/setup.sh
	scripts/setup.sh $(VENV)
	touch $@

# The suite against the reference service on the local target (override with ARGS="--driver ... --target ...").
conformance: setup
	rm -rf $(REPORT_DIR)
	$(PY) -m pytest steps --report-dir $(REPORT_DIR) --junitxml $(REPORT_DIR)/junit.xml \
		--alluredir $(REPORT_DIR)/allure-results $(ARGS)

# The project's own tests, including every known-bad variant against the suite.
test: setup
	$(PY) -m pytest tests $(ARGS)

# Lab set-up time, scenario count, suite wall time, and the service's own share.
bench: setup
	$(PY) -m aislab.bench $(ARGS)

clean:
	rm -rf $(VENV) reports
