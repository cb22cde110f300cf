"""The extension API is what the bug zoo uses, and it is documented.

A variant overrides the hooks of actors.EXTENSION_POINTS, message handlers
(on_<Message>) and its constructor (with the same arguments as its base);
each hook is documented on docs/reference/extension-api.md and has a
docstring. The zoo is held to it, so the API is the one the zoo proves useful.
"""

import ast
import re
import inspect
from pathlib import Path

import pytest

import actors
from actors import EXTENSION_POINTS
from actors import zoo
from sandbox import Actor

ROOT = Path(__file__).resolve().parent.parent
PAGE = (ROOT / "docs" / "reference" / "extension-api.md").read_text(encoding="utf-8")


def _base(cls: type) -> type:
    return next(b for b in cls.__mro__[1:] if b.__module__.startswith("actors.") and b.__name__ in EXTENSION_POINTS
                or b.__name__ in ("MarginMonitor", "OrderBook", "AdlCoordinator", "Trader"))


ZOO_CLASSES = [c for _, c in inspect.getmembers(zoo, inspect.isclass)
               if c.__module__ == zoo.__name__ and issubclass(c, Actor)]


@pytest.mark.parametrize("cls", ZOO_CLASSES, ids=lambda c: c.__name__)
def test_the_zoo_overrides_only_the_extension_points(cls):
    base = _base(cls)
    allowed = set(EXTENSION_POINTS.get(base.__name__, ()))
    # (_handler_cache is the runtime's own: Actor caches each class's handlers there)
    own = {n for n in vars(cls) if not (n.startswith("__") and n.endswith("__")) and n != "_handler_cache"}
    # A name of its own (a constant, a helper) is the variant's business; what it
    # replaces of its base must be an extension point or a message handler.
    outside = {n for n in own if hasattr(base, n) and n not in allowed and not n.startswith("on_")}
    assert not outside, f"{cls.__name__} overrides {sorted(outside)}, which are not extension points of {base.__name__}"


def test_the_zoo_imports_nothing_private():
    tree = ast.parse(Path(zoo.__file__).read_text(encoding="utf-8"))
    private = [f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               for a in n.names if a.name.startswith("_") and not (n.module or "").endswith("_common")]
    assert not private, private


@pytest.mark.parametrize("cls_name, hook", [(c, h) for c, hooks in EXTENSION_POINTS.items() for h in hooks])
def test_every_hook_exists_is_documented_and_has_a_docstring(cls_name, hook):
    cls = getattr(actors, cls_name)
    assert hasattr(cls, hook), f"{cls_name}.{hook} is not there"
    assert re.search(rf"`{cls_name}\.{hook}[`(]", PAGE), f"{cls_name}.{hook} is not on docs/reference/extension-api.md"
    if not hook.isupper():
        assert inspect.getdoc(getattr(cls, hook)), f"{cls_name}.{hook} has no docstring"
