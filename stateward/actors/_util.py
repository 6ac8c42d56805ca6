"""Small helpers shared by the actors' modules."""

from __future__ import annotations

from typing import Any, TypeVar

__all__ = ["NoPublicConstructor"]

_T = TypeVar("_T")


class NoPublicConstructor(type):
    """Objects that users only receive: ``Cls()`` raises, ``Cls._create()`` works."""

    def __call__(cls, *args: object, **kwargs: object) -> None:
        msg = f"stateward.{cls.__qualname__} has no public constructor"
        raise TypeError(msg)

    def _create(cls: type[_T], *args: Any, **kwargs: Any) -> _T:
        # What type.__call__ does for these plain classes, at half the cost.
        obj = cls.__new__(cls)
        obj.__init__(*args, **kwargs)  # type: ignore[misc]
        return obj
