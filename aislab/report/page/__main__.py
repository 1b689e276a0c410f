"""python -m aislab.report.page REPORT.json -o DIR: writes DIR/index.html."""

from __future__ import annotations

import argparse
from pathlib import Path

from aislab.report.page import DRILL_DOWN, write

parser = argparse.ArgumentParser(prog="python -m aislab.report.page", description=__doc__)
parser.add_argument("report", type=Path, help="conformance-report.json")
parser.add_argument("-o", "--out", type=Path, required=True,
                    help=f"directory for index.html; links to the Allure drill-down at {DRILL_DOWN} if it is there")
args = parser.parse_args()
print(write(args.report, args.out))
