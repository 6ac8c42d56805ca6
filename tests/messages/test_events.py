"""Events: the state actor's fast StateChanged constructor makes the same object."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given, strategies as st

from stateward import ChangeKind, StateChanged
from stateward.messages.events import _state_changed

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    revision=st.integers(0, 10**9),
    path=st.text(max_size=10),
    kind=st.sampled_from(ChangeKind),
    old=json_values,
    new=json_values,
    action_id=st.text(min_size=1, max_size=10),
    source=st.none() | st.text(max_size=5),
    payload=json_values,
)
def test_fast_constructor_equals_the_attrs_one(
    revision, path, kind, old, new, action_id, source, payload
):
    args = (revision, path, kind, old, new, action_id, source, payload)
    fast = _state_changed(*args)
    slow = StateChanged(*args)
    assert type(fast) is StateChanged
    assert fast == slow
    if not any(isinstance(v, list | dict) for v in (old, new, payload)):
        assert hash(fast) == hash(slow)
    assert attrs.astuple(fast, recurse=False) == args


def test_fast_constructed_events_are_frozen():
    event = _state_changed(1, "a", ChangeKind.CREATED, None, 1, "id", None, None)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.revision = 2  # type: ignore[misc]
    assert repr(event).startswith("StateChanged(revision=1, path='a'")
