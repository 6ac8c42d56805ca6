"""What saving, retention and loading do on disk: worker threads only.

:class:`~stateward.actors.checkpoints.Checkpoints` decides what to save and
when, on the event loop; the functions here do the blocking part, holding
the directory's lock where other savers must wait: write a checkpoint under
a hidden name and rename it into place, apply a retention policy, list the
complete checkpoints, and read one back to load.

Code we did not write runs here (an object's ``save_state`` and
``load_state``, a retention policy). Whatever it raises but an exit request
becomes a :class:`~stateward.CheckpointError`; ``load_state``'s is returned
instead (:func:`load_one`), as a ``GeneratorExit`` thrown into the awaiting
coroutine could not be caught there on asyncio.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from typing import TYPE_CHECKING, cast

from .._errors import (
    CheckpointError,
    CorruptStateError,
    InvalidValueError,
    describe_exception,
    is_exit_request,
)
from .._limits import unbounded
from ..messages.actions import Set
from ._checkpoint_files import (
    _DELETING,
    _PARTIAL,
    _SEQUENCE,
    _STRICT,
    FORMAT,
    MANIFEST,
    OBJECTS,
    TREE,
    Checkpointable,
    CheckpointInfo,
    _directory_lock,
    _exists,
    _fsync_tree,
    _read_checkpoint,
    _read_manifest,
    _write_file,
)
from .persistence import dumps_bytes
from .persistence._sliced_json import dumps_in_slices

if TYPE_CHECKING:
    from pathlib import Path

    from .._json import JSON
    from ._files import Files
    from .retention import RetentionPolicy

__all__ = ["list_checkpoints", "load_one", "read_to_load", "retain", "save"]


def list_checkpoints(directory: Path) -> list[CheckpointInfo]:
    """The complete checkpoints in *directory*, oldest first."""
    found: list[CheckpointInfo] = []
    if not directory.is_dir():
        return found
    for entry in directory.iterdir():
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        try:
            found.append(_read_manifest(entry))
        except CheckpointError:
            continue  # not a checkpoint of ours: left alone
    found.sort(key=lambda info: (info.sequence, info.path.name))
    return found


def save(
    directory: Path,
    files: Files,
    dirname: str,
    revision: int,
    created: str,
    tree: JSON | bytes,
    objects: dict[str, Checkpointable],
    policy: RetentionPolicy | None,
) -> CheckpointInfo:
    """Write, then retain, holding the directory's lock (other processes)."""
    files.makedirs(str(directory))
    with _directory_lock(directory):
        info = _write(directory, files, dirname, revision, created, tree, objects)
        if policy is not None:
            _retain(directory, files, policy)
        return info


def retain(
    directory: Path, files: Files, policy: RetentionPolicy
) -> list[CheckpointInfo]:
    """Apply *policy* holding the directory's lock; return what was removed."""
    with _directory_lock(directory):
        return _retain(directory, files, policy)


def _write(
    root: Path,
    files: Files,
    dirname: str,
    revision: int,
    created: str,
    tree: JSON | bytes,
    objects: dict[str, Checkpointable],
) -> CheckpointInfo:
    final = root / dirname
    if final.exists():
        raise _exists(final)
    _remove_leftovers(root)
    sequence = _next_sequence(root, files)
    partial = root / f"{_PARTIAL}{dirname}"
    os.mkdir(partial, 0o700)
    empty: list[str] = []
    try:
        (partial / OBJECTS).mkdir(0o700)
        data = tree if isinstance(tree, bytes) else _STRICT.dumps(tree)
        _write_file(files, partial / TREE, data)
        for obj_name, obj in objects.items():
            try:
                obj.save_state(partial / OBJECTS / obj_name)
            except BaseException as exc:
                if is_exit_request(exc):
                    raise
                reason = f"save_state of {obj_name!r} raised "
                reason += describe_exception(exc)
                raise CheckpointError(str(final), reason) from exc
            if not os.path.lexists(partial / OBJECTS / obj_name):
                empty.append(obj_name)  # stateless (so far): nothing to keep
        manifest = {
            "format": FORMAT,
            "revision": revision,
            "created": created,
            "sequence": sequence,
            "objects": list(objects),
            "empty": empty,
        }
        _write_file(files, partial / MANIFEST, json.dumps(manifest).encode())
        _fsync_tree(files, partial)
        if final.exists():  # made meanwhile by someone else
            raise _exists(final)
        os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    files.fsync_dir(str(root))
    # Never reused, even once retention removed the newest ones.
    files.write_atomic(str(root / _SEQUENCE), str(sequence).encode())
    return CheckpointInfo(
        final, revision, created, tuple(objects), sequence, tuple(empty)
    )


def _next_sequence(directory: Path, files: Files) -> int:
    """One more than any sequence this directory has given (lock held)."""
    listed = list_checkpoints(directory)
    last = listed[-1].sequence if listed else 0
    with contextlib.suppress(FileNotFoundError, ValueError, CorruptStateError):
        last = max(last, int(files.read(str(directory / _SEQUENCE))))
    return last + 1


def _retain(
    directory: Path, files: Files, policy: RetentionPolicy
) -> list[CheckpointInfo]:
    complete = list_checkpoints(directory)
    names = {info.path.name for info in complete}
    try:
        chosen = list(policy(list(complete)))
    except BaseException as exc:  # (in a worker thread: never thrown into a task)
        if is_exit_request(exc):
            raise
        reason = f"the retention policy raised {describe_exception(exc)}"
        raise CheckpointError(str(directory), reason) from exc
    for info in chosen:
        if not isinstance(cast("object", info), CheckpointInfo):
            reason = (
                "the retention policy must return CheckpointInfos of the "
                f"ones to remove, not a {type(info).__qualname__}"
            )
            raise CheckpointError(str(directory), reason)
    doomed_infos = [info for info in chosen if info.path.name in names]
    for info in doomed_infos:
        doomed = directory / f"{_DELETING}{info.path.name}"
        os.rename(info.path, doomed)  # gone from list() at once
        shutil.rmtree(doomed, ignore_errors=True)
    if doomed_infos:
        files.fsync_dir(str(directory))
    return doomed_infos


def _remove_leftovers(directory: Path) -> None:
    for entry in directory.iterdir():
        if entry.name.startswith((_PARTIAL, _DELETING)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def load_one(obj: Checkpointable, target: Path) -> BaseException | None:
    """``obj.load_state(target)`` in a worker thread: what it raised, if anything.

    Returned, not raised: on asyncio a ``GeneratorExit`` thrown into the
    awaiting coroutine could not be caught there. Ctrl-C and ``SystemExit``
    are raised.
    """
    try:
        obj.load_state(target)
    except BaseException as exc:
        if is_exit_request(exc):
            raise
        return exc
    return None


def read_to_load(
    where: Path, persisted: bool
) -> tuple[CheckpointInfo, Set, JSON, bytes | None]:
    """Read a checkpoint, and make what sets its tree (a worker thread).

    Returns the action, the decoded tree (checked by the action, private:
    the state's tree takes it as it is) and, for a persisted state, the
    JSON of the action's value for its journal record. All of it here,
    before anything changes, in short calls that let the event loop run
    (:mod:`.persistence._sliced_json`). The action writes even an equal tree
    (``eq=False``): comparing a large tree would stop the loop. The size
    limit of one action does not apply: the tree is what the state held.
    """
    info, tree = _read_checkpoint(where)
    try:
        with unbounded():
            action = Set("", tree, eq=False)
    except InvalidValueError as exc:
        # Named after the file: state.json['v'][1], not the Set's value[...].
        bad = InvalidValueError(TREE + exc.where.removeprefix("value"), exc.reason)
        raise CheckpointError(str(where), f"{TREE} cannot be read: {bad}") from None
    encoded = dumps_in_slices(action.value, dumps_bytes) if persisted else None
    return info, action, cast("JSON", tree), encoded
