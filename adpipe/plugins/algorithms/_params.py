"""Build the pydantic ``Params`` model of a PyOD wrapper from PyOD's source.

The model is built on first access (:class:`LazyParams`) from the constructor
signature and numpydoc docstring that :mod:`._introspect` reads with
:mod:`ast`, so PyOD (and torch) are never imported for it:

- defaults come from the signature (``random_state`` -> 0, ``verbose`` -> 0,
  and the catalog's ``defaults`` override them);
- types come from the default, widened by the docstring's type text
  (``int or float``, ``str or None``, ``{'auto', 'kd_tree'}`` -> a Literal);
- ranges come from the catalog (``bounds`` and :data:`COMMON_BOUNDS`);
- descriptions are the first paragraph of the parameter's docstring entry.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import AfterValidator, Field, ValidationError, create_model

import adpipe
from adpipe.plugins.algorithms._catalog import COMMON_BOUNDS, Entry, Spec
from adpipe.plugins.algorithms._introspect import NO_DEFAULT, class_info

_CHOICES_RE = re.compile(r"[{\[]\s*('[^']*'(?:\s*,\s*'[^']*')*)\s*,?\s*[}\]]")
_UNSET = object()


class LazyParams:
    """Class attribute whose value, the ``Params`` model, is built on first access."""

    def __init__(self) -> None:
        self._models: dict[type, type[adpipe.Params]] = {}

    def __get__(self, obj, owner: type) -> type[adpipe.Params]:
        entry = getattr(owner, "entry", None)
        if entry is None:
            return adpipe.Params
        model = self._models.get(owner)
        if model is None:
            model = self._models[owner] = build_params(entry, owner)
        return model


def build_params(entry: Entry, owner: type) -> type[adpipe.Params]:
    info = class_info(entry.module, entry.cls)
    names = {p.name for p in info.params}
    unknown = (set(entry.bounds) | set(entry.choices) | set(entry.types) | set(entry.defaults)
               | set(entry.exclude) | set(entry.fixed) | set(entry.from_data) | set(entry.specs)) - names
    if unknown:  # the catalog and the installed PyOD disagree
        raise adpipe.PluginError(
            f"detector '{entry.name}': pyod.models.{entry.module}.{entry.cls} has no parameter(s) "
            f"{', '.join(sorted(unknown))}; the installed PyOD version does not match adpipe's catalog."
        )
    fields: dict[str, Any] = {}
    for p in info.params:
        if p.name == "contamination" or p.name in entry.exclude or p.name in entry.fixed or p.name in entry.from_data:
            continue
        if hasattr(adpipe.Params, p.name):  # e.g. PCA's `copy` would shadow BaseModel.copy
            continue
        if p.name in entry.specs:
            fields[p.name] = _spec_field(entry, p.name, entry.specs[p.name])
            continue
        default = p.default
        note = ""
        if p.name in entry.defaults:
            default = entry.defaults[p.name]
            note = f" adpipe default: {default!r} (PyOD's: {_show(p.default)})."
        elif p.name == "random_state" and default is not NO_DEFAULT:
            note = f" adpipe default: 0 (PyOD's: {default!r}), so runs are reproducible." if default != 0 else ""
            default = 0
        elif p.name == "verbose" and default not in (NO_DEFAULT, 0, False):
            note = f" adpipe default: {type(default)(0)!r} (PyOD's: {default!r})."
            default = type(default)(0)
        annotation = _annotation(entry, p.name, default, p.doc_type)
        description = (p.description or p.doc_type or p.name).rstrip()
        if description and description[-1] not in ".:!?)":
            description += "."
        description += note
        if default is NO_DEFAULT:
            fields[p.name] = (annotation, Field(..., description=description))
        else:
            fields[p.name] = (annotation, Field(default, description=description))
    if entry.batch_scoring:
        fields[BLOCK_PARAM] = (Optional[Annotated[int, Field(ge=1)]], Field(None, description=_block_description(entry)))
    model = create_model(
        f"{owner.__name__}Params",
        __base__=adpipe.Params,
        __module__=owner.__module__,
        __doc__=f"Parameters of the '{entry.name}' detector (pyod.models.{entry.module}.{entry.cls}).",
        **fields,
    )
    model.__qualname__ = f"{owner.__qualname__}.Params"
    return model


#: adpipe's own parameter of detectors whose PyOD class scores a batch as a set
BLOCK_PARAM = "score_block_rows"


def _block_description(entry: Entry) -> str:
    how = (
        "PyOD's class computes scores from the rows it is given (its fitted model is unused or only "
        "partly used), so adpipe appends each block of this many new rows to the training rows and "
        "keeps the block's scores."
        if entry.batch_scoring == "with_training"
        else "PyOD's class scores a batch with statistics of the batch itself (ECOD/COPOD: tail "
        "probabilities of the training plus batch rows), so a large batch shifts the scores; adpipe "
        "scores the batch in blocks of this many rows."
    )
    return (
        f"adpipe parameter (not PyOD's). {how} A row's score then depends on at most this many other "
        "new rows; 1 makes scores independent of the batch but is slowest. "
        "null = auto: max(1, min(1000, training rows // 20))."
    )


def _show(value: Any) -> str:
    return "required" if value is NO_DEFAULT else repr(value)


def _annotation(entry: Entry, name: str, default: Any, doc_type: str) -> Any:
    if name in entry.types:
        return entry.types[name]
    if name == "random_state":  # a seed; null = fresh randomness (RandomState objects don't fit a config)
        return Optional[int]
    bounds = entry.bounds.get(name, COMMON_BOUNDS.get(name))
    choices = entry.choices.get(name)
    doc = _doc_types(doc_type)
    if choices is None and isinstance(default, str):
        match = _CHOICES_RE.search(doc_type)
        if match:
            found = tuple(re.findall(r"'([^']*)'", match.group(1)))
            if default in found:
                choices = found
    members: list[Any] = []
    if choices:
        members.append(Literal[choices])
    elif isinstance(default, bool):
        members.append(bool)
    elif isinstance(default, int):
        members += [int] + ([float] if float in doc else [])
    elif isinstance(default, float):
        members += ([int] if int in doc else []) + [float]
    elif isinstance(default, str):
        members += [t for t in (int, float) if t in doc] + [str]
    elif isinstance(default, list):
        members.append(list[_element_type(default)])
    elif isinstance(default, tuple):
        members.append(tuple[tuple(_element_type([v]) for v in default)] if default else tuple)
    elif isinstance(default, dict):
        members.append(dict[str, Any])
    else:  # None or not a literal: what the docstring says, else anything
        members += [t for t in (bool, int, float, str) if t in doc]
        if list in doc:
            members.append(list[Any])
        if dict in doc:
            members.append(dict[str, Any])
        if not members:
            return Any
    if bounds:
        members = [Annotated[m, Field(**bounds)] if m in (int, float) else m for m in members]
    annotation = members[0] if len(members) == 1 else Union[tuple(members)]
    if default is None or type(None) in doc:
        annotation = Optional[annotation]
    return annotation


def _doc_types(doc_type: str) -> set[type]:
    text = re.sub(r"\(?\s*default.*$", "", doc_type.lower())
    words = set(re.findall(r"[a-z]+", text))
    found: set[type] = set()
    if words & {"int", "integer"}:
        found.add(int)
    if "float" in words:
        found.add(float)
    if words & {"str", "string"}:
        found.add(str)
    if words & {"bool", "boolean"}:
        found.add(bool)
    if "none" in words:
        found.add(type(None))
    if "list" in words:
        found.add(list)
    if "dict" in words:
        found.add(dict)
    return found


def _element_type(values: list) -> Any:
    kinds = {type(v) for v in values}
    if kinds <= {int}:
        return int
    if kinds <= {int, float}:
        return float
    if kinds <= {str}:
        return str
    return Any


# -- detector specs (parameters that take other detectors) ------------------------------

SpecValue = Union[str, dict[str, Any]]


def _spec_field(entry: Entry, name: str, spec: Spec):
    validator = AfterValidator(lambda v, _owner=entry.name: validate_spec_value(v, _owner, spec.many))
    inner = list[SpecValue] if spec.many else SpecValue
    annotation = Annotated[Optional[inner] if spec.default is None else inner, validator]
    description = spec.description + " (PyOD takes detector objects here; adpipe builds them from these specs.)"
    return (annotation, Field(spec.default, description=description))


def validate_spec_value(value: Any, owner: str, many: bool) -> Any:
    if value is None:
        return None
    if many:
        if len(value) < 2:
            raise ValueError(f"'{owner}' needs at least two base detectors, got {len(value)}")
        return [normalize_spec(v, owner) for v in value]
    return normalize_spec(value, owner)


def normalize_spec(value: SpecValue, owner: str) -> dict[str, Any]:
    """``"lof"`` or ``{type: lof, ...}`` -> ``{"type": "lof", ...}``, validated by lof's Params."""
    from adpipe.plugins.algorithms.pyod import BASE_DETECTOR_NAMES, PYOD_DETECTORS

    spec = {"type": value} if isinstance(value, str) else dict(value)
    kind = spec.pop("type", None)
    if kind not in BASE_DETECTOR_NAMES:
        raise ValueError(
            f"base detector of '{owner}' must be one of the PyOD detectors "
            f"{', '.join(sorted(BASE_DETECTOR_NAMES))}; got {kind!r}"
        )
    try:
        PYOD_DETECTORS[kind].Params(**spec)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"base detector {kind!r} of '{owner}': {problems}") from None
    return {"type": kind, **spec}
