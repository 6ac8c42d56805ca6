"""The configuration of a persisted state: where, and how durable."""

from __future__ import annotations

import os  # noqa: TC003 - the converter's annotation, read by attrs
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, final

import attrs

from ..._checks import absolute_path, check_int, int_validator, seconds_validator
from ..._errors import (
    InvalidActionError,
    short_repr,
)
from .._files import Files
from ._fork import CHILD_TIMEOUT

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._recovery import RecoveryProgress

__all__ = [
    "ADAPTIVE_SNAPSHOT_EVERY",
    "DURABILITIES",
    "Durability",
    "PersistenceConfig",
    "SnapshotChild",
]

Durability: TypeAlias = Literal["none", "flush", "fsync"]
"""How far a send waits by default, and what each group commit does.

* ``"fsync"``: every group of records is fsynced before its senders are
  answered: survives power loss.
* ``"flush"``: records are written to the OS before senders are answered, not
  fsynced: survives a crash of the process, not of the machine.
* ``"none"``: sends do not wait for the disk (the records still follow, in
  order); ``send(..., durable=True)`` still forces an fsync.
"""

SnapshotChild: TypeAlias = Literal["auto", "replay", "fork"]
"""Which other process makes a snapshot (see ``PersistenceConfig.snapshot_child``)."""

DURABILITIES: Final = ("none", "flush", "fsync")
SNAPSHOT_CHILDREN: Final = ("auto", "replay", "fork")

ADAPTIVE_SNAPSHOT_EVERY: Final = 10_000
"""The fewest revisions between two snapshots when ``snapshot_every`` is None."""


def _check_durability(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if value not in DURABILITIES:
        reason = (
            f"must be one of {', '.join(DURABILITIES)} (got {short_repr(value, 60)})"
        )
        raise InvalidActionError(attr.name, reason)


def _check_child(_inst: object, attr: attrs.Attribute[str], value: object) -> None:
    if value not in SNAPSHOT_CHILDREN:
        got = short_repr(value, 60)
        reason = f"must be one of {', '.join(SNAPSHOT_CHILDREN)} (got {got})"
        raise InvalidActionError(attr.name, reason)


def _check_every(
    _inst: object, attr: attrs.Attribute[int | None], value: object
) -> None:
    if value is not None:
        check_int(attr.name, value, 1)


def _state_dir(value: str | os.PathLike[str]) -> str:
    return absolute_path("state_dir", value)


@final
@attrs.frozen
class PersistenceConfig:
    """Where and how a state actor persists (see :func:`~stateward.open_state`)."""

    state_dir: str = attrs.field(converter=_state_dir)
    """The state's directory, made absolute when the config is made."""
    durability: Durability = attrs.field(default="fsync", validator=_check_durability)
    snapshot_every: int | None = attrs.field(default=None, validator=_check_every)
    """Revisions between two snapshots. None (the default) adapts to the tree:
    every :data:`ADAPTIVE_SNAPSHOT_EVERY` revisions, but never before the
    journal written since the last snapshot is as large as that snapshot, so
    that a big tree with small writes is not serialised again and again (a
    million-leaf tree makes a 21 MiB snapshot; 10,000 small records are
    about 1 MiB). Recovery then replays at most about one snapshot's worth
    of journal. An int is exact: a snapshot every that many revisions."""
    keep_snapshots: int = attrs.field(default=3, validator=int_validator(1))
    snapshot_interval: float | None = attrs.field(
        default=None, validator=seconds_validator(positive=True, optional=True)
    )
    snapshot_in_child: bool = True
    """Make snapshots in another process (see ``snapshot_child``), so that
    the state actor never waits while a tree is serialised; False
    serialises on the actor."""
    snapshot_child: SnapshotChild = attrs.field(default="auto", validator=_check_child)
    """Which other process makes a snapshot.

    ``"replay"``: a new Python process rebuilds the tree at the snapshot's
    revision from the state directory (the previous snapshot and the journal
    after it, as recovery does) and serialises it; the state actor does not
    even pause. It costs another core's time (at a million leaves about
    1.5 s, against 0.1-0.2 s for a forked child) and holds a second copy of
    the tree while it runs.

    ``"fork"``: a forked child serialises the parent's memory as it was at
    the fork; the actor pauses for the fork (its page tables: 10-15 ms at a
    million leaves) and its writes are slower while the child lives
    (copy-on-write), but no second copy of the tree is made.

    ``"auto"`` (the default): ``"replay"`` once the previous snapshot was
    1 MiB or more (about 50,000 leaves) or a fork of this process paused it
    5 ms or more (a process of about 300 MB), and if the memory available
    (to the machine, and under this process's memory cgroups' limits) is at
    least 1.5 times this process's resident memory; ``"fork"`` otherwise: a
    short pause costs less than starting a new interpreter (about 0.25 s of
    CPU) for each snapshot, and where memory is short a second copy of the
    tree could have the kernel kill the state's own process.

    Where a new process cannot be started (no ``posix_spawn``, a frozen or
    embedded interpreter), snapshots are forked (where ``fork`` exists). One
    that fails costs that snapshot (logged); after three in a row,
    snapshots are forked for the rest of the run."""
    snapshot_timeout: float | None = attrs.field(
        default=CHILD_TIMEOUT,
        validator=seconds_validator(positive=True, optional=True),
    )
    """Seconds a snapshot child may take before it is killed (None: no
    limit). A child that hangs (a lock another thread held at the fork)
    would otherwise stop every later snapshot. The snapshot then counts as
    failed (logged; the journal still holds everything) and the next one is
    tried when due. The default, 600 s, is far beyond what a tree that fits
    in memory needs (a million leaves: 1-2 s)."""
    freeze_gc: bool = True
    """Call :func:`gc.freeze` once the state is loaded, at each snapshot and
    at least every 2,000 revisions, so that the cyclic garbage collector
    stops scanning the tree (a full collection of a million-leaf tree
    pauses everything for about 0.1 s). The young generations are collected
    first (well under a millisecond), so what was just dropped is not
    frozen. It is process-wide: cyclic garbage among older objects that
    existed at a freeze (in your code too) is not collected until
    ``gc.unfreeze()``, which the last
    state that froze calls when it closes (so that closed states' objects
    are freed; it undoes a freeze of your own too). A program that makes
    long-lived reference cycles and drops them later should pass False, and
    may call :func:`gc.freeze` itself once its state is loaded."""
    on_progress: Callable[[RecoveryProgress], object] | None = attrs.field(
        default=None, eq=False, repr=False
    )
    """Called during recovery, from the recovery's worker thread, after each
    journal segment and every 50,000 of its records (see :class:`RecoveryProgress`).
    One that raises is logged and not called again: the recovery goes on."""
    files: Files = attrs.field(factory=Files, eq=False, repr=False)
