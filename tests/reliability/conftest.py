"""Fixtures of the reliability tests: private servers, raw connections, a reference fit.

The raw protocol helper is the server tests' ``server_wire`` (a synchronous
DEALER speaking ``protocol/SPEC.md``); its directory is put on ``sys.path`` so
both layers share one helper.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))
