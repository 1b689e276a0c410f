"""`python -m mutants NAME`: serve the reference service with one known defect."""

from __future__ import annotations

import sys

from mutants.variants import VARIANTS
from reference_service.__main__ import serve
from reference_service.app import build_components


def main() -> None:
    if len(sys.argv) != 2 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: python -m mutants NAME; known: {', '.join(sorted(VARIANTS))}")
    make = VARIANTS[sys.argv[1]]
    serve(lambda settings: make(build_components(settings)))


if __name__ == "__main__":
    main()
