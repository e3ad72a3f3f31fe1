"""The SQL of GPT bindings: a scope's, its parent chat's, a group's (the steps the repository's
transactions run, like `storage.queries`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, cast

from sqlalchemy import bindparam, delete, func, insert, literal, select, update
from sqlalchemy.engine import Connection, CursorResult

from storage.direct import execute
from storage.models import BINDINGS, SCOPES
from storage.queries import IS_SCOPE, SCOPE_ID, insert_scope, scope_id, scope_params
from storage.records import BindingRecord, ScopeKey

_BINDING_COLUMNS: Final = (
    BINDINGS.c.gpt_id,
    BINDINGS.c.group_id,
    BINDINGS.c.bound_by_id,
    BINDINGS.c.bound_by_name,
    BINDINGS.c.bound_at,
)
_GET_BINDING: Final = (
    select(*_BINDING_COLUMNS).join(SCOPES, BINDINGS.c.scope_id == SCOPES.c.id).where(*IS_SCOPE)
)
# A scope's binding and its parent's (the same chat, thread ""): what a turn needs to know.
_TURN_BINDINGS: Final = (
    select(SCOPES.c.thread_id, *_BINDING_COLUMNS)
    .join(SCOPES, BINDINGS.c.scope_id == SCOPES.c.id)
    .where(
        SCOPES.c.platform == bindparam("platform"),
        SCOPES.c.chat_id == bindparam("chat_id"),
        SCOPES.c.thread_id.in_([bindparam("thread_id"), literal("")]),
    )
)
_DELETE_BINDING: Final = delete(BINDINGS).where(BINDINGS.c.scope_id == SCOPE_ID.scalar_subquery())


def get_binding(connection: Connection, scope: ScopeKey) -> BindingRecord | None:
    """The binding of exactly this scope."""
    row = connection.execute(_GET_BINDING, scope_params(scope)).one_or_none()
    return None if row is None else _binding_record(scope, row)


def turn_binding(connection: Connection, scope: ScopeKey) -> BindingRecord | None:
    """The scope's binding or, for a thread, its parent chat's: one SELECT for both."""
    rows = {row[0]: row[1:] for row in execute(connection, _TURN_BINDINGS, scope_params(scope))}
    for candidate in (scope, scope.parent):
        if candidate is not None and candidate.thread_id in rows:
            return _binding_record(candidate, rows[candidate.thread_id])
    return None


def set_binding(connection: Connection, binding: BindingRecord) -> None:
    """Store `binding` (its scope inserted when missing), replacing the scope's earlier one."""
    found = scope_id(connection, binding.scope)
    if found is None:
        found = insert_scope(connection, binding.scope)[0]
    values = {
        "gpt_id": binding.gpt_id,
        "group_id": binding.group_id,
        "bound_by_id": binding.bound_by_id,
        "bound_by_name": binding.bound_by_name,
        "bound_at": binding.bound_at,
    }
    updated = connection.execute(
        update(BINDINGS).where(BINDINGS.c.scope_id == found).values(values)
    )
    if cast("CursorResult[Any]", updated).rowcount == 0:
        connection.execute(insert(BINDINGS).values(scope_id=found, **values))


def delete_binding(connection: Connection, scope: ScopeKey) -> bool:
    """Remove the scope's own binding; True when there was one."""
    deleted = connection.execute(_DELETE_BINDING, scope_params(scope))
    return cast("CursorResult[Any]", deleted).rowcount > 0


def bound_gpts(connection: Connection, platform: str, group_id: str) -> list[str]:
    """Distinct GPT ids bound anywhere in the group, most recently bound first."""
    query = (
        select(BINDINGS.c.gpt_id)
        .join(SCOPES, BINDINGS.c.scope_id == SCOPES.c.id)
        .where(SCOPES.c.platform == platform, BINDINGS.c.group_id == group_id)
        .group_by(BINDINGS.c.gpt_id)
        .order_by(func.max(BINDINGS.c.bound_at).desc(), BINDINGS.c.gpt_id)
    )
    return list(connection.scalars(query).all())


def _binding_record(scope: ScopeKey, columns: Sequence[Any]) -> BindingRecord:
    """`columns`: the values of `_BINDING_COLUMNS`, in that order."""
    return BindingRecord(scope, *columns)
