"""The project's error base class and the entry-point wrapper every script uses.

Errors a user can fix (a bad config value, a missing weights file, a checkpoint that does not fit) derive from
`MaskbitError` and carry a message that names the problem and the fix. `run_main` turns them into
`<script>: error: <message>` on stderr and exit code 2, without a traceback; anything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional

EXIT_USAGE = 2


class MaskbitError(Exception):
    """Base class of the errors whose message tells the user what to change."""


def run_main(main: Callable[[], object], prog: Optional[str] = None) -> None:
    """Call `main()`; a `MaskbitError` becomes a one-line report and exit code 2."""
    prog = prog or os.path.basename(sys.argv[0])
    try:
        main()
    except MaskbitError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
