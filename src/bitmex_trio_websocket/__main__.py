"""``python -m bitmex_trio_websocket``: the same command line as ``bitmex-trio-websocket``."""

import sys

from ._cli import main

sys.exit(main(sys.argv[1:]))
