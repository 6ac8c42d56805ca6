from __future__ import annotations

import copy
import json

import pytest
from hypothesis import example, given, settings, strategies as st

from stateward import (
    ActionRejectedError,
    ChangeKind,
    Delete,
    Merge,
    PathConflictError,
    PathNotFoundError,
    Ping,
    RevisionMismatchError,
    Set,
    Transaction,
)
from stateward._changes import MISSING
from stateward.tree import Tree


def snapshot(tree: Tree) -> str:
    return json.dumps(tree.root, sort_keys=True)


def test_set_creates_intermediate_dicts_and_bumps_revision():
    tree = Tree()
    changes = tree.apply(Set("a.b.c", 1))
    assert tree.root == {"a": {"b": {"c": 1}}}
    assert tree.revision == 1
    assert [(c.path, c.kind, c.old, c.new) for c in changes] == [
        (("a", "b", "c"), ChangeKind.CREATED, None, 1)
    ]


def test_equal_write_changes_nothing_and_keeps_revision():
    tree = Tree({"a": {"b": [1, 2]}})
    assert tree.apply(Set("a.b", [1, 2])) == []
    assert tree.revision == 0


def test_json_equality_tells_1_true_and_1_0_apart():
    tree = Tree({"x": 1})
    assert tree.apply(Set("x", True)) != []
    assert tree.apply(Set("x", 1.0)) != []
    assert tree.apply(Set("x", 1.0)) == []


def test_eq_false_always_writes_and_custom_eq_decides():
    tree = Tree({"u": {"id": 1, "name": "a"}})
    assert len(tree.apply(Set("u", {"id": 1, "name": "a"}, eq=False))) == 1
    same_id = lambda old, new: old["id"] == new["id"]  # noqa: E731
    assert tree.apply(Set("u", {"id": 1, "name": "b"}, eq=same_id)) == []
    assert tree.root["u"]["name"] == "a"


def test_eq_callable_that_raises_rejects_the_action():
    def boom(old, new):
        raise RuntimeError("nope")

    tree = Tree({"a": 1})
    with pytest.raises(
        ActionRejectedError, match="the eq callable raised RuntimeError: nope"
    ):
        tree.apply(Set("a", 2, eq=boom))
    assert tree.root == {"a": 1}


def test_lists_index_replace_and_append():
    tree = Tree({"items": [{"name": "x"}]})
    tree.apply(Set("items.0.name", "y"))
    tree.apply(Set("items.1", {"name": "z"}))
    assert tree.root == {"items": [{"name": "y"}, {"name": "z"}]}
    changes = tree.apply(Delete("items.0"))
    assert tree.root == {"items": [{"name": "z"}]}
    assert changes[0].old == {"name": "y"}


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (Set("items.5", 1), r"index 5 is out of range for a list of length 1"),
        (Set("items.name", 1), r"segment 'name' must be a list index"),
        (Set("items.0.x", 1), r"cannot go below 'items\.0': it holds an int"),
        (Set("n.x.y", 1), r"cannot go below 'n': it holds an int"),
        (Merge("n", {"a": 1}), r"Merge needs a dict here, found an int"),
        (Delete("", missing_ok=True), r"the root cannot be deleted"),
    ],
)
def test_rejected_writes_leave_the_tree_unchanged(action, match):
    tree = Tree({"items": [1], "n": 5})
    before = snapshot(tree)
    with pytest.raises(PathConflictError, match=match):
        tree.apply(action)
    assert snapshot(tree) == before
    assert tree.revision == 0


def test_delete_missing_is_quiet_unless_asked():
    tree = Tree({"a": 1})
    assert tree.apply(Delete("b.c")) == []
    with pytest.raises(
        PathNotFoundError, match=r"cannot apply at 'b\.c': no such path"
    ):
        tree.apply(Delete("b.c", missing_ok=False))


def test_merge_is_shallow_and_one_change_per_changed_key():
    tree = Tree({"job": {"bins": 10, "sorted": 0, "meta": {"x": 1}}})
    changes = tree.apply(Merge("job", {"bins": 10, "sorted": 3, "meta": {"y": 2}}))
    assert [c.path for c in changes] == [("job", "sorted"), ("job", "meta")]
    assert tree.root["job"] == {"bins": 10, "sorted": 3, "meta": {"y": 2}}
    assert tree.revision == 1


def test_merge_into_missing_path_creates_it():
    tree = Tree()
    tree.apply(Merge("a.b", {"x": 1}))
    assert tree.root == {"a": {"b": {"x": 1}}}


def test_ping_notifies_without_changing():
    tree = Tree({"a": {"b": 1}})
    changes = tree.apply(Ping("a"))
    assert changes[0].kind is ChangeKind.PINGED
    assert changes[0].old == changes[0].new == {"b": 1}
    assert tree.root == {"a": {"b": 1}}
    assert tree.revision == 1


def test_transaction_is_one_revision():
    tree = Tree()
    changes = tree.apply(Transaction([Set("a", 1), Set("b", 2), Delete("a")]))
    assert tree.root == {"b": 2}
    assert tree.revision == 1
    assert [c.kind for c in changes] == [ChangeKind.CREATED] * 2 + [ChangeKind.DELETED]


def test_transaction_failing_midway_rolls_everything_back():
    tree = Tree({"items": [1, 2, 3], "keep": {"x": 1}})
    before = snapshot(tree)
    with pytest.raises(PathConflictError):
        tree.apply(
            Transaction(
                [
                    Set("new.deep.path", 1),
                    Delete("items.0"),
                    Set("items.3", 4),
                    Merge("keep", {"x": 2, "y": 3}),
                    Set("", {"replaced": True}),
                    Set("replaced.x.y", 1),
                    Set("replaced", 5),
                    Set("replaced.z", 1),  # fails: descends into an int
                ]
            )
        )
    assert snapshot(tree) == before
    assert tree.revision == 0


def test_transaction_if_revision():
    tree = Tree()
    tree.apply(Set("a", 1))
    with pytest.raises(RevisionMismatchError) as info:
        tree.apply(Transaction([Set("a", 2)], if_revision=0))
    assert (info.value.expected, info.value.actual) == (0, 1)
    tree.apply(Transaction([Set("a", 2)], if_revision=1))
    assert tree.root == {"a": 2}


def test_root_may_be_any_json_value():
    tree = Tree([1, 2])
    tree.apply(Set("2", 3))
    assert tree.root == [1, 2, 3]
    tree.apply(Set("", "scalar"))
    assert tree.root == "scalar"
    with pytest.raises(PathConflictError):
        tree.apply(Set("a", 1))


def test_tree_shares_no_container_with_the_message():
    value = {"list": [1]}
    action = Set("a", value)
    value["list"].append(2)  # the sender mutates after building the message
    tree = Tree()
    tree.apply(action)
    action.value["list"].append(3)  # even the message's own copy is not the tree's
    assert tree.root == {"a": {"list": [1]}}
    assert tree.lookup(("a", "list")) == [1]
    assert tree.lookup(("nope",)) is MISSING


def test_read_returns_a_copy():
    tree = Tree({"a": {"b": [1]}})
    got = tree.read("a")
    got["b"].append(2)
    assert tree.root == {"a": {"b": [1]}}
    assert tree.read("zz", default=7) == 7


# -- a property test against a plain-dict model ----------------------------------


class Rejected(Exception):
    pass


ABSENT = object()


def model_apply(doc, action):
    """An independent, deep-copying reference implementation."""
    doc = copy.deepcopy(doc)
    box = [doc]

    def walk(segs, create):
        node, key = box, 0
        for seg in segs[:-1]:
            cur = node[key]
            if isinstance(cur, dict):
                if seg not in cur:
                    if not create:
                        return None, None
                    cur[seg] = {}
                node, key = cur, seg
            elif isinstance(cur, list):
                if (
                    not seg.isdigit()
                    or (len(seg) > 1 and seg[0] == "0")
                    or int(seg) >= len(cur)
                ):
                    raise Rejected
                node, key = cur, int(seg)
            else:
                raise Rejected
        return node[key], segs[-1]

    def setv(segs, value):
        value = copy.deepcopy(value)  # the model owns what it stores, as the tree
        if not segs:
            box[0] = value
            return
        parent, last = walk(segs, True)
        if isinstance(parent, dict):
            parent[last] = value
        elif isinstance(parent, list):
            if not last.isdigit() or (len(last) > 1 and last[0] == "0"):
                raise Rejected
            i = int(last)
            if i < len(parent):
                parent[i] = value
            elif i == len(parent):
                parent.append(value)
            else:
                raise Rejected
        else:
            raise Rejected

    def is_index(seg):
        return seg.isdigit() and not (len(seg) > 1 and seg[0] == "0")

    def child(node, seg):
        if isinstance(node, dict):
            return node.get(seg)
        if isinstance(node, list) and is_index(seg) and int(seg) < len(node):
            return node[int(seg)]
        return None

    def apply(a):
        segs = tuple(a.path.split(".")) if getattr(a, "path", "") else ()
        if isinstance(a, Set):
            setv(segs, a.value)
        elif isinstance(a, Delete):
            if not segs:
                raise Rejected
            parent = box[0]
            for seg in segs[:-1]:
                parent = child(parent, seg)
            last = segs[-1]
            if isinstance(parent, dict):
                parent.pop(last, None)
            elif (
                isinstance(parent, list) and is_index(last) and int(last) < len(parent)
            ):
                del parent[int(last)]
        elif isinstance(a, Merge):
            target = box[0]
            for seg in segs:
                if isinstance(target, dict) and seg in target:
                    target = target[seg]
                elif (
                    isinstance(target, list)
                    and is_index(seg)
                    and int(seg) < len(target)
                ):
                    target = target[int(seg)]
                else:
                    target = ABSENT
                    break
            if target is ABSENT:
                setv(segs, a.mapping)
            elif isinstance(target, dict):
                target.update(a.mapping)
            else:
                raise Rejected
        elif isinstance(a, Transaction):
            for inner in a.actions:
                apply(inner)

    apply(action)
    return box[0]


keys = st.sampled_from(["a", "b", "c", "0", "1", "2"])
paths = st.lists(keys, min_size=0, max_size=3).map(".".join)
leaves = st.one_of(st.integers(-3, 3), st.booleans(), st.none(), st.text(max_size=2))
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(keys, inner, max_size=3)
    ),
    max_leaves=6,
)
simple_actions = st.one_of(
    st.builds(Set, paths, values),
    st.builds(Delete, paths.filter(bool)),
    st.builds(Merge, paths, st.dictionaries(keys, values, max_size=2)),
)
actions = st.one_of(
    simple_actions,
    st.builds(Transaction, st.lists(simple_actions, min_size=1, max_size=4)),
)


REJECTED = object()


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(keys, values, max_size=3), st.lists(actions, max_size=12))
# Found by Hypothesis: the model once stored Set values without copying them,
# so its later Delete mutated the action that the tree then applied.
@example(initial={}, sequence=[Transaction([Set("", [0, None]), Delete("0")])])
def test_tree_matches_plain_dict_model(initial, sequence):
    tree = Tree(initial)
    model = copy.deepcopy(initial)
    revision = 0
    for action in sequence:
        before = snapshot(tree)
        try:
            expected = model_apply(model, action)
        except Rejected:
            expected = REJECTED
        try:
            changes = tree.apply(action)
        except ActionRejectedError:
            assert expected is REJECTED, f"tree rejected {action!r}, model accepted"
            assert snapshot(tree) == before, "a rejected action changed the tree"
            assert tree.revision == revision
            continue
        assert expected is not REJECTED, f"tree accepted {action!r}, model rejected"
        assert json.dumps(tree.root, sort_keys=True) == json.dumps(
            expected, sort_keys=True
        )
        model = expected
        if changes:
            revision += 1
        else:
            assert snapshot(tree) == before
        assert tree.revision == revision


def test_an_offered_copy_is_taken_once_by_a_write_of_that_very_value_at_the_root():
    load = Set("", {"jobs": {"a": [1]}}, eq=False)
    value = load.value  # (the action holds its own copy of what it was given)
    copy_ = {"jobs": {"a": [1]}}
    tree = Tree({"old": 1})
    tree.offer(value, copy_)
    tree.apply(Set("", {"jobs": {"a": [1]}}))  # an equal value, another object
    assert tree.root == value
    assert tree.root is not copy_
    tree.apply(Transaction([Delete("jobs"), Set("", {"other": 2})]))
    assert tree.root is not copy_
    tree.apply(load)
    assert tree.root is copy_  # taken as it is
    tree.apply(Set("", {}))
    tree.apply(load)
    assert tree.root is not copy_
    assert tree.root == value
    tree.offer(value, copy_)
    tree.withdraw()
    tree.apply(Set("", {}))
    tree.apply(load)
    assert tree.root is not copy_
