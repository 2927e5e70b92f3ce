"""``python -m genbench`` and the ``genbench`` command.

This module imports nothing heavy before it can answer Ctrl-C with one line and exit
status 130, whenever the interrupt comes.
"""

import os
import sys

INTERRUPTED = "genbench: interrupted; finished runs are saved (continue with --resume)\n"


def run() -> None:
    try:
        from .cli import main

        code = main()
    except KeyboardInterrupt:
        code = 130
        sys.stderr.write(INTERRUPTED)
    if code == 130:
        # An interrupt that landed inside Python code run from C (torch's import does
        # this) makes CPython kill itself with SIGINT at exit even once handled, so the
        # exit status would not be 130; nothing is left to flush but the streams.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(code)


if __name__ == "__main__":
    run()
