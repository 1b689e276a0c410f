#!/usr/bin/env bash
# Renders REPORT_DIR/allure-results as one self-contained HTML file (REPORT_DIR/html/index.html)
# with Allure 3 from npm; works offline. Scenarios are grouped by their tags: claim IDs and
# families. A missing renderer is reported, never fatal to the run.
set -uo pipefail
REPORT_DIR=${1:?report dir}
[ -d "$REPORT_DIR/allure-results" ] || exit 0
if ! npx --no-install allure awesome "$REPORT_DIR/allure-results" --single-file --group-by tag -o "$REPORT_DIR/html" \
     --report-name "ai-service conformance" >"$REPORT_DIR/html-report.log" 2>&1; then
  echo "html report: Allure could not render it (see $REPORT_DIR/html-report.log)" >&2
  exit 0
fi
echo "html report: $REPORT_DIR/html/index.html"
