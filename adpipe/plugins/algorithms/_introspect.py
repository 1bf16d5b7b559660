"""Read a PyOD detector's constructor and docstring without importing PyOD.

PyOD takes over a second to import, and its deep-learning modules import
torch at module level. ``adpipe plugins list/show`` must stay fast and must
work without torch, so the parameter models of the PyOD wrappers are built
from PyOD's *source*: :mod:`ast` gives the ``__init__`` signature (literal
defaults) and the class docstring, whose numpydoc "Parameters" section gives
the descriptions and type hints.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

#: marks a constructor argument that has no default (or a non-literal one)
NO_DEFAULT = object()


@dataclass(frozen=True)
class ParamInfo:
    name: str
    default: Any  # NO_DEFAULT when required or not a literal
    doc_type: str  # "int or float, optional (default=...)" as written in the docstring
    description: str


@dataclass(frozen=True)
class ClassInfo:
    module: str
    cls: str
    params: tuple[ParamInfo, ...]
    docstring: str


@lru_cache(maxsize=1)
def pyod_models_dir() -> Path:
    """Folder of ``pyod/models`` found via the import system, without importing pyod."""
    spec = importlib.util.find_spec("pyod")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pyod is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


@lru_cache(maxsize=None)
def _module_tree(module: str) -> ast.Module:
    path = pyod_models_dir() / f"{module}.py"
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@lru_cache(maxsize=None)
def class_info(module: str, cls: str) -> ClassInfo:
    """Signature and documented parameters of ``pyod.models.<module>.<cls>``."""
    tree = _module_tree(module)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls), None)
    if node is None:
        raise LookupError(f"class {cls} not found in pyod/models/{module}.py")
    init = next((n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None)
    if init is None:
        raise LookupError(f"{cls} in pyod/models/{module}.py has no __init__ of its own")
    docstring = ast.get_docstring(node) or ""
    docs = parse_numpydoc_parameters(docstring)
    args = init.args
    positional = args.posonlyargs + args.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    pairs = list(zip(positional, defaults)) + list(zip(args.kwonlyargs, args.kw_defaults))
    params = []
    for arg, default in pairs:
        if arg.arg == "self":
            continue
        value: Any = NO_DEFAULT
        if default is not None:
            try:
                value = ast.literal_eval(default)
            except (ValueError, SyntaxError, TypeError):
                value = NO_DEFAULT
        doc_type, description = docs.get(arg.arg, ("", ""))
        params.append(ParamInfo(arg.arg, value, doc_type, description))
    return ClassInfo(module, cls, tuple(params), docstring)


_SECTION_RE = re.compile(r"^(\S[^\n]*)\n-{3,}\s*$", re.M)
_ENTRY_RE = re.compile(r"^(\*{0,2}[A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*(.*))?$")


def parse_numpydoc_parameters(docstring: str) -> dict[str, tuple[str, str]]:
    """``{name: (type text, first paragraph of the description)}`` of a numpydoc docstring."""
    lines = docstring.expandtabs().splitlines()
    start = None
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}:
            start = i + 2
            break
    if start is None:
        return {}
    body: list[str] = []
    for i in range(start, len(lines)):
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if lines[i].strip() and nxt and set(nxt) == {"-"} and len(nxt) >= 3:
            break  # next section ("Attributes", "Examples", ...)
        body.append(lines[i])
    indents = [len(ln) - len(ln.lstrip()) for ln in body if ln.strip()]
    if not indents:
        return {}
    base = min(indents)
    out: dict[str, tuple[str, str]] = {}
    name = None
    type_text = ""
    desc: list[str] = []

    def flush() -> None:
        if name is None:
            return
        text, lines = type_text, list(desc)
        # a type spec continued on the next line: "{'linear', 'poly',\n 'cosine'}, optional"
        while lines and (text.count("{") > text.count("}") or text.count("[") > text.count("]")):
            text += " " + lines.pop(0)
        while lines and re.match(r"^\(?default\b", lines[0]):  # "(default = 'MIXED')" on its own line
            text += " " + lines.pop(0)
        out[name] = (text, _first_paragraph(lines))

    for ln in body:
        indent = len(ln) - len(ln.lstrip())
        match = _ENTRY_RE.match(ln.strip()) if ln.strip() and indent == base else None
        if match:
            flush()
            name, type_text, desc = match.group(1).lstrip("*"), (match.group(2) or "").strip(), []
        elif name is not None:
            desc.append(ln.strip())
    flush()
    return out


def _first_paragraph(lines: list[str]) -> str:
    """The first paragraph; when it is only a lead-in ("Valid values are:"), its list too."""
    para: list[str] = []
    i = 0
    while i < len(lines):
        ln = lines[i]
        if not ln and para:
            break
        if ln.startswith(("- ", "* ", ".. ")) and para:
            break
        if ln:
            para.append(ln)
        i += 1
    text = " ".join(para)
    if text.endswith(":") or len(text) < 40:
        items = [ln for ln in lines[i:] if ln]
        bullets: list[str] = []
        for ln in items:
            if ln.startswith(("- ", "* ")):
                bullets.append(ln[2:])
            elif bullets and not ln.startswith(".."):
                bullets[-1] += " " + ln
            elif bullets:
                break
        if bullets:
            lead = text[:-1] + ": " if text.endswith(":") else (text + " " if text else "")
            text = lead + "; ".join(bullets)
    text = re.sub(r":(?:cite|meth|class|func|attr|obj):`([^`]*)`", r"\1", text)
    text = text.replace("``", "`").replace("::", ":")
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) > 300:
        cut = text.rfind(". ", 0, 300)
        text = text[: cut + 1] if cut > 80 else text[:297].rstrip() + "..."
    return text
