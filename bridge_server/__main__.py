"""``python -m bridge_server [options]``: the same as ``skbridge serve [options]``."""

from __future__ import annotations

import sys

from .cli import serve_main

if __name__ == "__main__":
    sys.exit(serve_main())
