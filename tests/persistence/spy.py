"""A spy on a decoding function: what it was called with, the call still made."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest


def sizes_decoded(
    monkeypatch: pytest.MonkeyPatch, module: object, name: str
) -> list[int]:
    """Replace ``module.name`` with a wrapper that records ``len(data)`` per call."""
    calls: list[int] = []
    real = getattr(module, name)

    def spy(data: bytes) -> Any:
        calls.append(len(data))
        return real(data)

    monkeypatch.setattr(module, name, spy)
    return calls
