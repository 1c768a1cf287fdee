"""The command line: `python -m pipeline COMMAND [ARGS]` (`python -m pipeline COMMAND -h` for a command's help).

    predict   labels (or scores) from a model or export folder, in any runtime
    profile   write params.yaml from a profile (profiles/NAME.yaml), or fill in the keys it lacks
    dag       render dvc.yaml from the stage graph and the method registry
    docs      regenerate (or --check) the result tables of the README and docs/ from reports/
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {"predict": "pipeline.serving.predict", "profile": "pipeline.params.profile",
            "dag": "pipeline.orchestration.dag", "docs": "pipeline.report.docs"}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r} (choose from {', '.join(COMMANDS)})", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[command]).main(rest, prog=f"python -m pipeline {command}") or 0


if __name__ == "__main__":
    sys.exit(main())
