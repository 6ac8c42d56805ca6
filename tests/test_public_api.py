from __future__ import annotations

import importlib
import inspect
import pkgutil

import stateward


def test_all_is_exactly_the_sorted_public_names():
    public = {name for name in dir(stateward) if not name.startswith("_")}
    modules = {
        "actors",
        "messages",
        "paths",
        "tree",
        "cli",
        "annotations",
        "remote",
        "signals",
    }
    assert set(stateward.__all__) == public - modules
    assert stateward.__all__ == sorted(
        stateward.__all__, key=lambda n: (n.upper() != n, n)
    )


def test_every_module_defines_all():
    for info in pkgutil.walk_packages(stateward.__path__, "stateward."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), info.name


def test_public_concrete_classes_are_final():
    exempt = (BaseException,)
    for name in stateward.__all__:
        obj = getattr(stateward, name)
        if not inspect.isclass(obj) or issubclass(obj, exempt):
            continue
        if name.endswith("Statistics") or getattr(obj, "_is_protocol", False):
            continue
        if name in {"Action", "RAS", "ResultCode", "ChangeKind", "Overflow"}:
            continue  # the action base class, and enums (final by nature)
        assert getattr(obj, "__final__", False), f"{name} is not @final"


def test_every_public_name_has_a_docstring():
    for name in stateward.__all__:
        obj = getattr(stateward, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert inspect.getdoc(obj), name


def test_the_optional_layers_document_every_public_name():
    from needs import unavailable

    try:
        import coredis  # noqa: F401 - the remote layer's one dependency
    except ImportError:
        unavailable("coredis is not installed (pip install -e '.[test]')")
    for layer in ("stateward.remote", "stateward.signals"):
        module = importlib.import_module(layer)
        for name in module.__all__:
            obj = getattr(module, name)
            assert inspect.getdoc(obj), f"{layer}.{name}"
            if inspect.isclass(obj):
                assert getattr(obj, "__final__", False), f"{layer}.{name} not @final"
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member):
                        continue
                    assert inspect.getdoc(member), f"{layer}.{name}.{attr}"
