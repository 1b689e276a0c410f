"""`python -m mutants NAME[,NAME...]`: serve the reference service with known defects (or
conformant variants) applied one over the other."""

from __future__ import annotations

import sys

from mutants.variants import VARIANTS
from reference_service.__main__ import serve
from reference_service.app import build_components


def main() -> None:
    names = sys.argv[1].split(",") if len(sys.argv) == 2 else []
    if not names or any(n not in VARIANTS for n in names):
        raise SystemExit(f"usage: python -m mutants NAME[,NAME...]; known: {', '.join(sorted(VARIANTS))}")

    def components(settings):
        c = build_components(settings)
        for name in names:
            c = VARIANTS[name](c)
        return c

    serve(components)


if __name__ == "__main__":
    main()
