"""``--actor ROLE=module:Class``: a user's own actor class, named on the command line.

Why: a variant of an actor (a fix being tried, or a suspected bug) should be
runnable under ``run``, ``explore``, ``replay`` and ``sweep`` without writing
Python glue. The reference is ``ROLE=module:Class`` (an importable module) or
``ROLE=path/to/file.py:Class`` (a file, loaded under a private module name).

This imports and runs the user's own code, with the user's rights, exactly
as ``python -c 'import module'`` would: name only code you trust. A replay
file records the references it was made with but never loads them by itself;
``sandbox replay`` asks for the same ``--actor`` on its command line.

Every problem is a :class:`ActorRefError` whose message is one line naming the
reference and what is wrong; the command line turns it into exit status 2.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Mapping, Sequence

__all__ = ["ActorRefError", "parse_actor_ref", "load_actor", "load_actor_refs", "is_file_ref"]

FORMS = "ROLE=module:Class or ROLE=path/to/file.py:Class"


class ActorRefError(ValueError):
    """A bad ``--actor`` reference: one line, naming it and the problem."""


def parse_actor_ref(text: str) -> tuple[str, str]:
    """``"ROLE=REF"`` -> (role, ref), with a file's path made absolute (so it means the same anywhere)."""
    from sandbox._exchange.run import ROLES

    role, eq, ref = text.partition("=")
    role, ref = role.strip(), ref.strip()
    if not eq or not role or not ref:
        raise ActorRefError(f"--actor {text}: expected {FORMS}")
    if role not in ROLES:
        raise ActorRefError(f"--actor {text}: unknown role {role!r} (roles: {', '.join(sorted(ROLES))})")
    module, colon, name = ref.rpartition(":")
    if not colon or not module or not name.isidentifier():
        raise ActorRefError(f"--actor {text}: expected {FORMS}")
    if is_file_ref(ref):
        ref = f"{Path(module).expanduser().resolve()}:{name}"
    return role, ref


def is_file_ref(ref: str) -> bool:
    """Whether ``ref`` names a file (``path.py:Class``) rather than a module."""
    module = ref.rpartition(":")[0]
    return module.endswith(".py") or "/" in module or "\\" in module


def _module_of(text: str, ref: str) -> ModuleType:
    module = ref.rpartition(":")[0]
    if is_file_ref(ref):
        path = Path(module)
        if not path.is_file():
            raise ActorRefError(f"--actor {text}: no such file {str(path)!r}")
        # One private module name per file, so a file is loaded once per process.
        name = "sandbox_user_actor_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
        if name in sys.modules:
            return sys.modules[name]
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ActorRefError(f"--actor {text}: {str(path)!r} cannot be loaded as a Python module")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as e:
            del sys.modules[name]
            raise ActorRefError(f"--actor {text}: loading {str(path)!r} failed: {_one_line(e)}") from None
        return mod
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ActorRefError(f"--actor {text}: no module named {e.name or module!r}") from None
    except Exception as e:
        raise ActorRefError(f"--actor {text}: importing {module!r} failed: {_one_line(e)}") from None


def _one_line(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def load_actor(role: str, ref: str, text: str | None = None) -> type:
    """The class ``ref`` names, checked to be a subclass of ``role``'s actor."""
    from sandbox._exchange.run import ROLES

    text = text if text is not None else f"{role}={ref}"
    mod = _module_of(text, ref)
    name = ref.rpartition(":")[2]
    cls = getattr(mod, name, None)
    if cls is None:
        raise ActorRefError(f"--actor {text}: {ref.rpartition(':')[0]!r} has no class {name!r}")
    base = ROLES[role]
    if not isinstance(cls, type) or not issubclass(cls, base):
        raise ActorRefError(
            f"--actor {text}: {name} is not a subclass of {base.__name__} (the {role} role's actor)")
    return cls


def load_actor_refs(
    texts: Sequence[str], base: Mapping[str, type] | None = None
) -> tuple[dict[str, type] | None, tuple[tuple[str, str], ...]]:
    """Every ``--actor`` given, over ``base`` (a variant's actors): the classes, and the references."""
    refs: list[tuple[str, str]] = []
    classes = dict(base or {})
    for text in texts:
        role, ref = parse_actor_ref(text)
        if any(role == r for r, _ in refs):
            raise ActorRefError(f"--actor {text}: the {role} role is given twice")
        classes[role] = load_actor(role, ref, text)
        refs.append((role, ref))
    return (classes or None), tuple(refs)
