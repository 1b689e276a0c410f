#!/usr/bin/env bash
# Renders the human report of REPORT_DIR, offline, as two self-contained HTML files:
#   html/index.html         the claims page, from conformance-report.json alone (aislab.report.page)
#   html/allure/index.html  the drill-down: Allure 3 from npm, single file, each scenario once
#                           under its family and claim, categories by outcome
# A missing renderer is reported, never fatal to the run.
set -uo pipefail
REPORT_DIR=${1:?report dir}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$HERE/.venv/bin/python}
if [ -d "$REPORT_DIR/allure-results" ] && ! npx --no-install allure awesome "$REPORT_DIR/allure-results" --single-file \
     --config "$HERE/aislab/report/allurerc.json" --group-by family,claim -o "$REPORT_DIR/html/allure" \
     --report-name "ai-service conformance: drill-down" >"$REPORT_DIR/html-report.log" 2>&1; then
  echo "html report: Allure could not render the drill-down (see $REPORT_DIR/html-report.log)" >&2
fi
[ -f "$REPORT_DIR/conformance-report.json" ] || exit 0
if ! "$PY" -m aislab.report.page "$REPORT_DIR/conformance-report.json" -o "$REPORT_DIR/html" >>"$REPORT_DIR/html-report.log" 2>&1; then
  echo "html report: the claims page could not be rendered (see $REPORT_DIR/html-report.log)" >&2
  exit 0
fi
echo "html report: $REPORT_DIR/html/index.html"
