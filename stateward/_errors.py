"""Every error stateward raises, in one tree.

```
StatewardError(Exception)
├── InvalidPathError(+ValueError)       a path or pattern that cannot be parsed
├── InvalidValueError(+ValueError)      a value that is not strict JSON
├── InvalidActionError(+ValueError)     a message field or option with a bad value
├── DuplicateNameError(+ValueError)     a subscriber name already in use
├── ActionRejectedError                 the tree refused an action; nothing changed
│   ├── PathConflictError               into a scalar, index out of range, ...
│   ├── PathNotFoundError(+KeyError)    Delete(..., missing_ok=False) of nothing
│   └── RevisionMismatchError           a Transaction's if_revision did not hold
├── AckDeadlockError(+RuntimeError)     a handler awaited an Ack only it can give
├── StateClosedError                    you stopped it: the handle is closed
├── StateBrokenError                    it died under you: crashed or cancelled
├── RemoteError                         the remote layer (Redis)
│   ├── RemoteUnavailableError(+ConnectionError)  Redis cannot be reached
│   └── RemoteTimeoutError(+TimeoutError)         the owner did not answer in time
└── PersistenceError                    the files of a persisted state
    ├── StateLockedError                another process holds the state directory
    ├── StateDirectoryError(+OSError)   the directory cannot be opened: disk full, ...
    ├── StateFileChangedError           another writer changed a Store's file
    ├── CorruptStateError               damage recovery must not paper over
    └── DurabilityError                 a write or fsync failed: fail-stop
```

Every error keeps its structured parts as attributes (``.path``, ``.reason``,
...) and builds its message from them, so that a caller can both read the text
and act on the fields.
"""

from __future__ import annotations

__all__ = [
    "AckDeadlockError",
    "ActionRejectedError",
    "CheckpointError",
    "CompactedError",
    "CorruptStateError",
    "DuplicateNameError",
    "DurabilityError",
    "InvalidActionError",
    "InvalidPathError",
    "InvalidValueError",
    "PathConflictError",
    "PathNotFoundError",
    "PersistenceError",
    "RemoteError",
    "RemoteTimeoutError",
    "RemoteUnavailableError",
    "RevisionMismatchError",
    "StateBrokenError",
    "StateClosedError",
    "StateDirectoryError",
    "StateFileChangedError",
    "StateLockedError",
    "StatewardError",
]


class StatewardError(Exception):
    """The root of every error stateward raises."""


class InvalidPathError(StatewardError, ValueError):
    """A path or pattern cannot be parsed.

    Raised at the sender, when a message is built, never inside the actor.

    Attributes:
        path: The path as it was given.
        reason: Which rule it broke.
    """

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid path {short_repr(path)}: {reason}")


class InvalidValueError(StatewardError, ValueError):
    """A value is not strict JSON (NaN, bytes, a set, a non-str key, too deep...).

    Attributes:
        where: Where in the value the problem is, as a path of keys and indices.
        reason: Which rule it broke.
    """

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        at = f" at {where}" if where else ""
        super().__init__(f"invalid JSON value{at}: {reason}")


class InvalidActionError(StatewardError, ValueError):
    """A message field has the wrong type or value (other than a path or value).

    Attributes:
        field: The field's name.
        reason: Which rule it broke.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"invalid {field!r}: {reason}")


class DuplicateNameError(StatewardError, ValueError):
    """A name is already taken: a subscriber's, or a checkpointed object's.

    Attributes:
        name: The name that was asked for.
        kind: What it names (``"subscriber"``, ``"checkpointed object"``).
    """

    def __init__(self, name: str, kind: str = "subscriber") -> None:
        self.name = name
        self.kind = kind
        super().__init__(f"a {kind} named {name!r} already exists")


class ActionRejectedError(StatewardError):
    """The tree refused to apply an action; nothing was changed.

    Attributes:
        path: The path (dot or slash form) where applying failed.
        reason: Why.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot apply at {path!r}: {reason}")


class PathConflictError(ActionRejectedError):
    """The path runs into something it cannot go through.

    For example descending into a scalar, a non-numeric segment on a list, or a
    list index past the end.
    """


class PathNotFoundError(ActionRejectedError, KeyError):
    """A path that must exist does not (``Delete(..., missing_ok=False)``)."""

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the message; keep the plain text.
        return ActionRejectedError.__str__(self)


class RevisionMismatchError(ActionRejectedError):
    """A Transaction's ``if_revision`` did not match the current revision.

    Attributes:
        expected: The revision the transaction asked for.
        actual: The revision the state was at.
    """

    def __init__(self, expected: int, actual: int) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__("", f"if_revision={expected} but the state is at {actual}")


class CompactedError(StatewardError):
    """The revision to resume from is older than the history kept.

    What to do (Kubernetes' list-then-watch): re-read the state
    (``await state.get(...)``), then subscribe or watch again from the current
    revision, or from any revision at or after :attr:`oldest`.

    Attributes:
        requested: The ``from_revision`` that was asked for.
        oldest: The oldest revision a feed can resume from now.
    """

    def __init__(self, requested: int, oldest: int) -> None:
        self.requested = requested
        self.oldest = oldest
        super().__init__(
            f"revision {requested} is compacted: the history starts after "
            f"revision {oldest}; re-read the state and resume from >= {oldest}"
        )


class AckDeadlockError(StatewardError, RuntimeError):
    """A handler awaited the Acks of an action that waits on its own subscriber.

    That Ack can come only once the handler returns, so the wait could never
    end. Send from the handler without awaiting ``acks()``, or await them in
    another task.

    Attributes:
        subscriber: The subscriber whose handler waited.
        revision: The revision of the receipt it waited on.
    """

    def __init__(self, subscriber: str, revision: int) -> None:
        self.subscriber = subscriber
        self.revision = revision
        super().__init__(
            f"the handler of subscriber {subscriber!r} awaited the acks of "
            f"revision {revision}, which wait on that subscriber's own Ack: it "
            "can only come once the handler returns"
        )


class StateClosedError(StatewardError):
    """The state actor was stopped (by you); the handle accepts nothing more."""


class StateBrokenError(StatewardError):
    """The state actor died while you were using it (it did not stop cleanly)."""


class RemoteError(StatewardError):
    """The base of every error of the remote layer (Redis)."""


class RemoteUnavailableError(RemoteError, ConnectionError):
    """Redis cannot be reached (down, restarting, a dropped connection).

    The remote layer retries on its own where it may (a send is re-sent with
    its id, which the owner applies at most once); this reaches you when it
    may not, or when a connection cannot be opened at all.
    """


class RemoteTimeoutError(RemoteError, TimeoutError):
    """The owner did not answer within the time you gave.

    An action sent may still be applied later (its id makes that at most
    once): read the state, or send it again with the same id.
    """


class PersistenceError(StatewardError):
    """The base of every error about the files of a persisted state."""


class StateLockedError(PersistenceError):
    """Another process (or another open state) holds this state directory."""


class StateDirectoryError(PersistenceError, OSError):
    """A state directory cannot be created, read or written while it is opened.

    A full disk, a missing permission, a read-only file system: the system's
    error is the ``__cause__``, and ``errno`` and ``filename`` are copied
    from it (it is an :class:`OSError` too). Opening changed nothing that
    was acknowledged: fix the cause and open the state again.

    Attributes:
        path: The state directory.
    """

    def __init__(self, path: str, cause: OSError) -> None:
        self.path = path
        reason = cause.strerror or str(cause)
        super().__init__(
            cause.errno,
            f"the state directory {path} could not be opened ({reason}); "
            "nothing acknowledged was lost: fix that and open it again",
            cause.filename,
        )

    def __str__(self) -> str:
        return str(self.strerror)


class StateFileChangedError(PersistenceError):
    """A Store's ``state_file`` was changed by another writer since it was read.

    The Store refuses to overwrite it (their writes would be lost). Read it
    again, or save elsewhere, or ``save(force=True)`` to overwrite.

    Attributes:
        path: The file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(
            f"{path} was changed by another writer since this Store read or "
            "saved it; not overwritten (save(force=True) overwrites)"
        )


class CorruptStateError(PersistenceError):
    """A state file is damaged in a way recovery must not paper over.

    Raised for a bad record in the middle of the journal, a gap in revisions,
    files of two different stores mixed in one directory, or no readable
    snapshot at all. Nothing is skipped silently: the damaged file is copied
    to the ``quarantine`` directory and left in place until you act.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class DurabilityError(PersistenceError):
    """A journal write or fsync failed: the service stopped taking writes.

    Fail-stop, as PostgreSQL after "fsyncgate": the action that hit it is not
    acknowledged, and every later send, read or subscribe raises this error
    until the state is opened again (recovery then restores what was
    acknowledged).
    """


class CheckpointError(PersistenceError):
    """A checkpoint cannot be saved or loaded as asked.

    Raised for a checkpoint that lacks the state of a registered object, a
    manifest that cannot be read, or an object whose ``save_state`` failed
    (the partial checkpoint is removed: no checkpoint is half-written).

    Attributes:
        path: The checkpoint directory.
        reason: What is wrong with it.
        restored: For a ``load_state`` that raised, the objects restored
            before it (the state tree is left as it was).
    """

    def __init__(
        self, path: str, reason: str, *, restored: tuple[str, ...] = ()
    ) -> None:
        self.path = path
        self.reason = reason
        self.restored = restored
        super().__init__(f"{path}: {reason}")


def is_exit_request(exc: BaseException) -> bool:
    """Whether *exc* asks the program to stop: Ctrl-C or ``SystemExit``, in a group too.

    Code we did not write (a handler, an ``eq`` or a derivation) may raise
    anything; everything else it raises is its own failure, reported.
    """
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(is_exit_request(inner) for inner in exc.exceptions)
    return False


def describe_exception(exc: BaseException) -> str:
    """``"Type: message"`` of *exc*, raised by code we did not write, for a report.

    Never raises: an exception whose own ``__str__`` raises is named by its
    type. Lone surrogates become ``?``: reports may cross to other
    processes as JSON.
    """
    try:
        detail = str(exc)
    except Exception:  # noqa: BLE001 - its own __str__ failed: say so, go on
        detail = "(its message could not be read: str() raised)"
    return utf8_text(f"{type(exc).__name__}: {detail}")


def utf8_text(text: str) -> str:
    """*text* with its lone surrogates (no UTF-8 holds one) made ``?``.

    For reports, which may cross to other processes as JSON: one the
    encoder refuses would stop whoever sends it.
    """
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode()
    return text


def short_repr(value: object, limit: int = 80) -> str:
    """``repr(value)`` for a message: at most about *limit* characters.

    Never raises: *value* may be anything a caller passed, and one whose own
    ``__repr__`` raises is named by its type.
    """
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a value we did not make: name its type
        return f"<a {type(value).__name__} whose repr raised>"
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, str | tuple | list) else len(text)
    return f"{text[: limit - 5]}...{text[-1]} (length {size})"
