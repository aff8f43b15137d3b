"""Declarations by which a core class says what may be reached from outside.

The server's ``describe`` reply and its dispatch are both generated from an
:class:`EstimatorSchema`; nothing that is not declared here is callable or
readable over the wire.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Returns = Literal["self", "array", "scalar", "dict", "list", "none"]


@dataclass(frozen=True)
class MethodSpec:
    """One public method.

    Attributes
    ----------
    name : str
        The method's name on the core class.
    args : tuple of str
        The keyword arguments it accepts, in positional order.
    required : tuple of str
        Those of ``args`` that must be given.
    returns : {"self", "array", "scalar", "dict", "list", "none"}
        What the call produces; ``"self"`` means the estimator itself (the
        server replies with nothing and the client returns its own object).
    per_sample_output : bool
        Whether the result has one row per input sample and may therefore be
        written to a server-side data reference instead of being sent back.
    long_running : bool
        Whether the method reports progress and can be cancelled mid-way.
    """

    name: str
    args: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    returns: Returns = "none"
    per_sample_output: bool = False
    long_running: bool = False

    def describe(self) -> dict[str, Any]:
        """Plain-data form for the wire (see ``protocol/SPEC.md``, ``describe``)."""
        return {
            "name": self.name,
            "args": list(self.args),
            "required": list(self.required),
            "returns": self.returns,
            "per_sample_output": self.per_sample_output,
            "long_running": self.long_running,
        }


@dataclass(frozen=True)
class EstimatorSchema:
    """What one core class exposes.

    Attributes
    ----------
    name : str
        Class name as seen by clients (``"MiniBatchKMeans"``).
    params : dict
        Constructor parameters and their defaults, in signature order. Defaults
        must be plain data (None, bool, int, float, str).
    methods : dict of str to MethodSpec
        The allowlist of callable methods.
    attributes : tuple of str
        The allowlist of readable fitted attributes.
    per_sample_attributes : tuple of str
        Those of ``attributes`` with one row per training sample (``labels_``).
    doc : str
        One-line description.
    """

    name: str
    params: dict[str, Any]
    methods: dict[str, MethodSpec]
    attributes: tuple[str, ...]
    per_sample_attributes: tuple[str, ...] = ()
    doc: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Plain-data form for the wire (see ``protocol/SPEC.md``, ``describe``)."""
        return {
            "name": self.name,
            "doc": self.doc,
            "params": dict(self.params),
            "methods": {name: spec.describe() for name, spec in self.methods.items()},
            "attributes": list(self.attributes),
            "per_sample_attributes": list(self.per_sample_attributes),
        }
