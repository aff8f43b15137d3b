"""Process-wide settings of the core, the in-process counterpart of ``sklearn.set_config``.

Only the setting the core reads is kept: ``enable_metadata_routing``. Inside a
server call the per-call context (see :mod:`._context`) overrides it, so one
session's choice never leaks into another's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_global_config: dict[str, bool] = {"enable_metadata_routing": False}


def get_config() -> dict[str, bool]:
    """Return a copy of the process-wide configuration."""
    return dict(_global_config)


def set_config(enable_metadata_routing: bool | None = None) -> None:
    """Set process-wide options; ``None`` leaves an option unchanged."""
    if enable_metadata_routing is not None:
        _global_config["enable_metadata_routing"] = bool(enable_metadata_routing)


@contextmanager
def config_context(*, enable_metadata_routing: bool | None = None) -> Iterator[None]:
    """Temporarily change the process-wide configuration."""
    old = get_config()
    set_config(enable_metadata_routing=enable_metadata_routing)
    try:
        yield
    finally:
        _global_config.clear()
        _global_config.update(old)
