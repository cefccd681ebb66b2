"""The configuration field reference, rendered from the pydantic models as markdown tables.

docs/configuration.md embeds the output of `python -m router.config`, and tests/test_config.py
fails when the two differ, so the reference cannot drift from the code.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from router.config_model import CitylineConfig, is_model, unwrap
from router.config_names import AgentId, LanguageCode, QueueName, ReasonName, SkillName, UserName
from router.models import Channel


def _constraint_text(metadata: Iterable[Any]) -> str:
    low = high = ""
    parts: list[str] = []
    for item in metadata:
        if isinstance(item, Ge):
            low = f"≥ {item.ge}"
        elif isinstance(item, Gt):
            low = f"> {item.gt}"
        elif isinstance(item, Le):
            high = f"≤ {item.le}"
        elif isinstance(item, Lt):
            high = f"< {item.lt}"
        elif isinstance(item, MinLen) and item.min_length > 0:
            parts.append(f"at least {item.min_length}")
        elif isinstance(item, MaxLen):
            parts.append(f"at most {item.max_length}")
        elif isinstance(item, FieldInfo):
            inner = _constraint_text(item.metadata)
            if inner:
                parts.append(inner)
        elif getattr(item, "pattern", None):
            parts.append(f"matching `{item.pattern}`")
    if low.startswith("≥") and high.startswith("≤"):
        bounds = [f"{low[2:]}..{high[2:]}"]
    else:
        bounds = [b for b in (low, high) if b]
    return ", ".join([*bounds, *parts])


# Name types are shown by what they name. pydantic splits a field's `Annotated` type into `str`
# plus the name check in the field metadata, so a name type is recognised by either form.
_KEY_NAMES: tuple[tuple[Any, str], ...] = (
    (SkillName, "skill"),
    (QueueName, "queue"),
    (ReasonName, "reason code"),
    (AgentId, "agent id"),
    (UserName, "user"),
    (LanguageCode, "language"),
)


def _type_text(tp: Any, metadata: Iterable[Any] = ()) -> str:
    validators = list(metadata)
    for annotated, name in _KEY_NAMES:
        if tp == annotated or (tp is str and typing.get_args(annotated)[1] in validators):
            return name
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        base = _type_text(args[0])
        extra = _constraint_text(args[1:])
        return f"{base} ({extra})" if extra else base
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        text = " or ".join(_type_text(a) for a in rest)
        return f"{text} or null" if len(rest) < len(args) else text
    if origin is Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is dict:
        return f"map {_type_text(args[0])} → {_type_text(args[1])}"
    if origin is list:
        return f"list of {_type_text(args[0])}"
    if tp is Channel:
        return "channel"
    if is_model(tp):
        return f"`{tp.__name__}`"
    return {
        str: "string",
        int: "integer",
        float: "number",
        bool: "boolean",
        Path: "path",
        SecretStr: "secret string",
    }.get(tp, getattr(tp, "__name__", str(tp)))


def _default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if is_model(type(value)):
        return "see below"
    if isinstance(value, dict):
        value = {str(k): v for k, v in value.items()}
        if value and all(is_model(type(v)) for v in value.values()):
            return ", ".join(f"`{k}`" for k in value)
    if isinstance(value, Path):
        value = str(value)
    text = yaml.safe_dump(
        value, default_flow_style=True, allow_unicode=True, width=1000, sort_keys=False
    )
    text = text.strip().removesuffix("...").strip()
    return f"`{text}`"


def _model_sections(
    model: type[BaseModel], path: str, seen: list[tuple[str, type[BaseModel]]]
) -> None:
    seen.append((path, model))
    for name, field in model.model_fields.items():
        tp = unwrap(field.annotation)
        sub = f"{path}.{name}" if path else name
        origin = typing.get_origin(tp)
        if is_model(tp):
            _model_sections(tp, sub, seen)
        elif origin is dict and is_model(unwrap(typing.get_args(tp)[1])):
            key = _type_text(typing.get_args(tp)[0])
            _model_sections(unwrap(typing.get_args(tp)[1]), f"{sub}.<{key}>", seen)
        elif origin is list and is_model(unwrap(typing.get_args(tp)[0])):
            _model_sections(unwrap(typing.get_args(tp)[0]), f"{sub}[]", seen)


def reference_markdown() -> str:
    """The field reference (one table per section), as embedded in docs/configuration.md."""
    sections: list[tuple[str, type[BaseModel]]] = []
    _model_sections(CitylineConfig, "", sections)
    out: list[str] = []
    for path, model in sections:
        title = f"`{path}`" if path else "top level"
        doc = (model.__doc__ or "").strip().splitlines()[0]
        out += [f"### {title} — `{model.__name__}`", "", doc, ""]
        out += ["| field | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            type_text = _type_text(field.annotation, field.metadata)
            extra = _constraint_text(field.metadata)
            if extra:
                type_text += f" ({extra})"
            desc = (field.description or "").replace("|", "\\|").replace("<", "&lt;")
            out.append(
                f"| `{name}` | {type_text.replace('|', '/')} | {_default_text(field)} | {desc} |"
            )
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    """`python -m router.config`: print the reference tables."""
    print(reference_markdown(), end="")


if __name__ == "__main__":
    main()
