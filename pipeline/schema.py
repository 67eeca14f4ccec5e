"""Reading JSON that arrives from outside (a checkpoint folder, a data set) as data: size-capped, strict JSON (no
NaN/Infinity, no overflowing numbers, no absurd nesting), checked against a JSON Schema, every problem one line
``<file>: <field>: <problem>``.

The schemas themselves live next to the readers of each file kind (``pipeline.engines.model_config`` for
model_config.json, ``pipeline.planning.io`` for plans, ``pipeline.data.listing`` for dataset.json).
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.errors import PipelineError

__all__ = ["check_schema", "field_name", "load_json_file", "refuse"]

MAX_JSON_BYTES = 32 * 2**20  # a plan with its fingerprint summary is a few kB; a data set list a few MB at most
MAX_INT_DIGITS = 30  # integers beyond 10**30 are never a legitimate value in these files


def _bad_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows")
    return value


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"integer of {len(text)} digits")
    return int(text)


def load_json_file(path: str | Path, what: str = "file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """The JSON value of ``path``: a missing, oversized, non-UTF-8, invalid or non-finite file is a one-line
    PipelineError naming it (``what`` says what kind of file it is in the message)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise PipelineError(f"{path}: {size:,} bytes is too large for a {what} (at most {max_bytes:,})")
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise PipelineError(f"{path}: {what} not found") from None
    except UnicodeDecodeError as e:
        raise PipelineError(f"{path}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise PipelineError(f"{path}: unreadable {what} ({type(e).__name__}: {e.strerror or e})") from None
    try:
        return json.loads(text, parse_constant=_bad_constant, parse_float=_float, parse_int=_int)
    except json.JSONDecodeError as e:
        raise PipelineError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except ValueError as e:
        raise PipelineError(f"{path}: invalid JSON ({str(e).splitlines()[0][:120]})") from None
    except RecursionError:
        raise PipelineError(f"{path}: invalid JSON (nested too deeply)") from None


def field_name(parts: Iterable[Any]) -> str:
    """``network.strides[0][1]`` from a JSON path (keys and indices)."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "(top level)"


def short(value: Any, limit: int = 60) -> str:
    """A value as JSON, cut to ``limit`` characters."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def refuse(path: str | Path, field: str, problem: str) -> PipelineError:
    """The one-line error ``<path>: <field>: <problem>`` (to raise)."""
    return PipelineError(f"{path}: {field}: {problem}")


def _problem(error: Any) -> str:
    """A one-line, bounded description of a jsonschema ValidationError (without dumping a huge instance)."""
    v, expected, inst = error.validator, error.validator_value, error.instance
    if v == "required":
        missing = [k for k in expected if isinstance(inst, Mapping) and k not in inst]
        return f"missing {', '.join(missing)}"
    if v == "additionalProperties":
        known = set((error.schema.get("properties") or {}))
        extra = sorted(k for k in inst if k not in known) if isinstance(inst, Mapping) else []
        return f"unknown key(s) {', '.join(map(repr, extra))[:120]} (known: {', '.join(sorted(known))[:200]})"
    if v == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"{short(inst)} is not of type {' or '.join(kinds)}"
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        word = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[v]
        return f"{short(inst)} out of range (must be {word} {expected})"
    if v in ("minItems", "maxItems"):
        n = len(inst) if isinstance(inst, (list, tuple)) else "?"
        return f"{n} entries; expected {'at least' if v == 'minItems' else 'at most'} {expected}"
    if v in ("minLength", "maxLength"):
        return f"text of {len(inst)} characters; expected {'at least' if v == 'minLength' else 'at most'} {expected}"
    if v == "enum":
        return f"{short(inst)} is not one of {', '.join(short(x) for x in expected)}"
    if v == "const":
        return f"{short(inst)}: expected {short(expected)}"
    if v == "pattern":
        return f"{short(inst)} does not match {expected}"
    return error.message.splitlines()[0][:200]


def check_schema(instance: Any, schema: Mapping[str, Any], path: str | Path) -> None:
    """Validate ``instance`` against the JSON Schema ``schema``; the most relevant problem as one line
    ``<path>: <field>: <problem>``. Integers must be JSON integers (``2.0`` and ``true`` are not integers)."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match

    def is_integer(checker: Any, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_integer)
    validator_cls = validators.extend(Draft202012Validator, type_checker=checker)
    error = best_match(validator_cls(schema).iter_errors(instance))
    if error is None:
        return
    where, inst = list(error.absolute_path), error.instance
    if error.validator == "required" and isinstance(inst, Mapping):
        missing = [k for k in error.validator_value if k not in inst]
        raise refuse(path, field_name([*where, missing[0]]), "missing (a required key)")
    if error.validator == "additionalProperties" and isinstance(inst, Mapping):
        known = sorted(error.schema.get("properties") or {})
        extra = sorted(str(k) for k in inst if k not in known)
        raise refuse(path, field_name([*where, extra[0][:60]]), f"unknown key (known: {', '.join(known)[:200]})")
    raise refuse(path, field_name(where), _problem(error))


def integers(low: int, high: int) -> dict[str, Any]:
    """Schema of an integer in [low, high]."""
    return {"type": "integer", "minimum": low, "maximum": high}


def int_list(low: int, high: int, min_items: int = 1, max_items: int = 3) -> dict[str, Any]:
    """Schema of a list of integers in [low, high]."""
    return {"type": "array", "items": integers(low, high), "minItems": min_items, "maxItems": max_items}
