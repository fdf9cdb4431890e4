"""How the catalog's records map onto Table Storage entities, and how keys stay legal.

Every dataclass field is its own column, so the portal and the workbook can filter on it:
scalars keep their Edm type (datetimes as Edm.DateTime in UTC, ints as Int32 or Int64, floats as
Double), enums as their text, and nested values (snapshot refs, phase durations) as compact JSON.
`None` is no column at all (Table Storage has no null), and the record's default comes back.

A string column may hold at most 64 KiB (UTF-16). A backup of 64 disks with full resource ids
can pass that, so a long text spills into continuation columns `name__2`, `name__3`, ... of at
most 16,000 characters each (64,000 bytes even if every character took 4 bytes in UTF-16);
the entity's 1 MiB limit leaves room for over sixty of them.
"""

from __future__ import annotations

import dataclasses
import json
import string
import types
import typing
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from azure.data.tables import EdmType, EntityProperty

from shared.domain.models import JsonRecord

R = TypeVar("R", bound=JsonRecord)

CHUNK_CHARS = 16_000
_INT32 = range(-(2**31), 2**31)

# Characters kept as they are in a PartitionKey or RowKey; all others are escaped (see table_key).
_KEY_SAFE = frozenset(string.ascii_letters + string.digits + "-_.~()")
_ESCAPE = "!"
_HINTS: dict[type[JsonRecord], dict[str, Any]] = {}


def table_key(value: str) -> str:
    """Make `value` a PartitionKey or RowKey that every Table Storage API accepts.

    Azure forbids `/ \\ # ?` and control characters in keys, and `%` and `'` break some of its
    APIs (and Azurite's); so every character outside `[A-Za-z0-9._~()-]` becomes `!` plus the
    hex of each of its UTF-8 bytes (`!` itself included). Keys made of Azure resource names, such
    as the vm_key `rg-app~web-01`, are left exactly as they are and stay readable in the portal;
    any other text still maps to exactly one key. Records keep the raw value in their own column,
    so keys are never decoded.
    """
    return "".join(
        char if char in _KEY_SAFE else "".join(f"{_ESCAPE}{b:02X}" for b in char.encode())
        for char in value
    )


def to_entity(record: JsonRecord, partition_key: str, row_key: str) -> dict[str, Any]:
    """The entity for `record` under the given (raw, not yet escaped) keys."""
    entity: dict[str, Any] = {
        "PartitionKey": table_key(partition_key),
        "RowKey": table_key(row_key),
    }
    encoded = record.to_dict()
    for name, hint in _field_hints(type(record)).items():
        value = getattr(record, name)
        if value is None:
            continue
        if _is_nested(hint):
            _put_text(entity, name, json.dumps(encoded[name], separators=(",", ":")))
        elif isinstance(value, str):  # StrEnum included: stored as its text
            _put_text(entity, name, str(value))
        elif isinstance(value, datetime):
            entity[name] = _utc(value, name)
        elif isinstance(value, bool):
            entity[name] = value
        elif isinstance(value, int) and _bare(hint) is not float:
            entity[name] = value if value in _INT32 else EntityProperty(value, EdmType.INT64)
        elif isinstance(value, int | float):
            entity[name] = float(value)
        else:
            raise TypeError(f"{type(record).__name__}.{name}: cannot store {type(value).__name__}")
    return entity


def from_entity(cls: type[R], entity: Mapping[str, Any]) -> R:
    """The record of type `cls` stored in `entity`; absent columns take the field's default."""
    data: dict[str, Any] = {}
    for name, hint in _field_hints(cls).items():
        if name not in entity:
            continue
        value = entity[name]
        if _is_nested(hint):
            value = json.loads(_get_text(entity, name))
        elif isinstance(value, str):
            value = _get_text(entity, name)
        elif isinstance(value, EntityProperty):  # Int64 comes back wrapped
            value = value.value
        elif isinstance(value, datetime):  # the SDK's datetime subclass, as a plain UTC datetime
            value = datetime.fromisoformat(value.isoformat()).astimezone(UTC)
        data[name] = value
    return cls.from_dict(data)


def _put_text(entity: dict[str, Any], name: str, text: str) -> None:
    entity[name] = text[:CHUNK_CHARS]
    for part, start in enumerate(range(CHUNK_CHARS, len(text), CHUNK_CHARS), start=2):
        entity[f"{name}__{part}"] = text[start : start + CHUNK_CHARS]


def _get_text(entity: Mapping[str, Any], name: str) -> str:
    parts = [str(entity[name])]
    part = 2
    while f"{name}__{part}" in entity:
        parts.append(str(entity[f"{name}__{part}"]))
        part += 1
    return "".join(parts)


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name}: datetimes must be timezone-aware (UTC), got {value.isoformat()}")
    return value.astimezone(UTC)


def _field_hints(cls: type[JsonRecord]) -> dict[str, Any]:
    """Each field's type, resolved once per class (the models use postponed annotations)."""
    hints = _HINTS.get(cls)
    if hints is None:
        resolved = typing.get_type_hints(cls)
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        hints = _HINTS[cls] = {f.name: resolved[f.name] for f in fields}
    return hints


def _bare(hint: Any) -> Any:
    """`X` from `X | None`."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _is_nested(hint: Any) -> bool:
    """Whether a field holds a collection or a record, stored as one JSON column."""
    bare = _bare(hint)
    if typing.get_origin(bare) in (tuple, list, dict):
        return True
    return isinstance(bare, type) and issubclass(bare, JsonRecord)
