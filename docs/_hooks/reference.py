"""An mkdocs hook: the generated parts of the reference, made at every build.

* ``<!-- generated: cli -->`` becomes the command-line reference, written from
  the ``sandbox`` command's own argparse parser (``sandbox.cli._parser``), so
  it cannot drift from what the command accepts.
* ``<!-- generated: api NAME NAME ... -->`` becomes the signature and docstring
  of each named object (``module:attribute``), read with :mod:`inspect`.

The functions are plain Python, so ``tests/test_docs.py`` checks them too.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
from typing import Any, Iterator

__all__ = ["cli_reference", "api_reference", "expand", "on_page_markdown"]

CLI_MARKER = "<!-- generated: cli -->"
API_MARKER = re.compile(r"<!-- generated: api ((?:[\w.]+:[\w.]+\s*)+)-->")


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield name, helps.get(name, ""), sub


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%(" in text:
        text = text % {**vars(action), "prog": prog}
    return text


def _argument(action: argparse.Action) -> str:
    if not action.option_strings:
        name = action.metavar or action.dest
        return f"`{name}`" if action.nargs != "?" else f"`[{name}]`"
    if action.nargs == 0:
        return ", ".join(f"`{o}`" for o in action.option_strings)
    metavar = action.metavar or action.dest.upper()
    return ", ".join(f"`{o} {metavar}`" for o in action.option_strings)


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
        return ""
    return f"`{action.default}`"


def _table(parser: argparse.ArgumentParser, prog: str) -> list[str]:
    rows = [a for a in parser._actions if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))]
    if not rows:
        return ["No arguments."]
    out = ["| argument | default | what it does |", "|---|---|---|"]
    out += [f"| {_cell(_argument(a))} | {_cell(_default(a))} | {_cell(_help(a, prog))} |" for a in rows]
    return out


def _usage(parser: argparse.ArgumentParser) -> str:
    usage = parser.format_usage().strip()
    return re.sub(r"\s+", " ", usage.removeprefix("usage: "))


def cli_reference(parser: argparse.ArgumentParser | None = None) -> str:
    """The reference of every subcommand of ``parser`` (default: the ``sandbox`` command's), as Markdown."""
    if parser is None:
        from sandbox.cli import _parser

        parser = _parser()
    out = [f"`{_usage(parser)}`", "", parser.description or "", ""]
    top = _table(parser, parser.prog)
    out += top if top != ["No arguments."] else []
    if parser.epilog:
        out += ["", " ".join(parser.epilog.split())]
    for name, summary, sub in _subcommands(parser):
        out += ["", f"## `sandbox {name}`", "", summary[:1].upper() + summary[1:] + ("." if summary else ""), ""]
        if sub.description and sub.description != summary:
            out += [sub.description, ""]
        out += ["```text", _usage(sub), "```", ""]
        out += _table(sub, sub.prog)
        if sub.epilog:
            out += ["", " ".join(sub.epilog.split())]
    return "\n".join(out) + "\n"


def _resolve(spec: str) -> Any:
    module, _, attribute = spec.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj


_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc):`~?([^`]+)`")


def _docstring(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    doc = _ROLE.sub(r"`\1`", doc).replace("``", "`")
    # reStructuredText's literal blocks ("::" then an indented block) become fenced text blocks
    lines, out, literal = doc.splitlines(), [], False
    for line in lines:
        if literal and line and not line.startswith(" "):
            out += ["```", ""]
            literal = False
        if literal:
            out.append(line[4:] if line.startswith("    ") else line)
            continue
        if line.rstrip().endswith("::"):
            out += [line.rstrip()[:-1], "", "```text"]
            literal = True
            continue
        out.append(line)
    if literal:
        out.append("```")
    return "\n".join(out).replace("```text\n\n", "```text\n")


class _Annotation(str):
    """An annotation kept as text (``from __future__ import annotations``), shown without quotes."""

    def __repr__(self) -> str:
        return str(self)


def _signature(obj: Any) -> str:
    sig = inspect.signature(obj)

    def plain(annotation: Any) -> Any:
        return _Annotation(annotation) if isinstance(annotation, str) else annotation

    params = [p.replace(annotation=plain(p.annotation)) for p in sig.parameters.values()]
    returns = plain(sig.return_annotation)
    if inspect.isclass(obj):
        returns = inspect.Signature.empty
    return str(sig.replace(parameters=params, return_annotation=returns))


def api_reference(specs: list[str]) -> str:
    """Signature and docstring of each ``module:attribute``, as Markdown."""
    out: list[str] = []
    for spec in specs:
        obj = _resolve(spec)
        name = spec.replace(":", ".")
        kind = "class" if inspect.isclass(obj) else ("async def" if inspect.iscoroutinefunction(obj) else "def")
        try:
            signature = _signature(obj)
        except (TypeError, ValueError):
            signature = "(...)"
        out += [f"### `{name}`", "", "```python", f"{kind} {name.rsplit('.', 1)[1]}{signature}", "```", ""]
        doc = _docstring(obj)
        if doc:
            out += [doc, ""]
    return "\n".join(out)


def expand(markdown: str) -> str:
    """``markdown`` with every generated part filled in."""
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return API_MARKER.sub(lambda m: api_reference(m.group(1).split()), markdown)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return expand(markdown)
