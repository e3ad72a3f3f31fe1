"""The hot statements of a turn, run on the SQLite file's own connection without SQLAlchemy's
per-execution work.

A turn runs about a dozen statements on the repository's thread. Through `Connection.execute`
each costs SQLAlchemy its cache key, execution context, parameter processing and result object:
on the SQLite file about two thirds of the thread's CPU per turn (bench). `execute` compiles a
Core statement once per dialect and set of parameter names, with the bind and result processors
its types give, and then runs it on the driver's connection: the same SQL and values, inside the
same transaction. Errors come back as SQLAlchemy's (`IntegrityError`, `OperationalError`), as
from `Connection.execute`. Any other driver (PostgreSQL, aiosqlite) takes `Connection.execute`.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

Statement = Select[Any] | UpdateBase
Processor = Callable[[Any], Any] | None

# Only the stdlib driver's connection is used directly (the repository's thread).
_DIRECT_DRIVER: Final = "pysqlite"


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameter of each "?", in order
    binds: tuple[Processor, ...]
    defaults: Mapping[str, Any]  # values the statement binds itself (a LIMIT 1, say)
    results: tuple[Processor, ...]


# Per dialect (engines come and go in tests), per statement and set of parameter names: an
# INSERT's or UPDATE's SQL names the columns its parameters give.
_CACHE: weakref.WeakKeyDictionary[
    Dialect, dict[tuple[Statement, frozenset[str]], _Compiled | None]
] = weakref.WeakKeyDictionary()


def execute(
    connection: Connection, statement: Statement, params: Mapping[str, Any]
) -> Sequence[Sequence[Any]]:
    """The rows `statement` returns with `params` (none for an UPDATE without RETURNING).

    `statement` is one built once, a module's constant: it is compiled on first use and kept."""
    dialect = connection.dialect
    compiled = _compiled(dialect, statement, params) if dialect.driver == _DIRECT_DRIVER else None
    if compiled is None:
        result = connection.execute(statement, dict(params))
        return result.all() if result.returns_rows else []
    defaults = compiled.defaults
    values = [
        value if bind is None else bind(value)
        for name, bind in zip(compiled.names, compiled.binds, strict=True)
        for value in (params[name] if name in params else defaults[name],)
    ]
    driver = connection.connection.driver_connection
    assert driver is not None
    try:
        rows = driver.execute(compiled.sql, values).fetchall()
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            compiled.sql, values, exc, dialect.loaded_dbapi.Error, hide_parameters=True
        ) from exc
    results = compiled.results
    if not any(results):
        return rows  # type: ignore[no-any-return]
    return [
        tuple(
            value if result is None else result(value)
            for value, result in zip(row, results, strict=True)
        )
        for row in rows
    ]


def _compiled(
    dialect: Dialect, statement: Statement, params: Mapping[str, Any]
) -> _Compiled | None:
    by_statement = _CACHE.setdefault(dialect, {})
    key = (statement, frozenset(params))
    if key not in by_statement:
        by_statement[key] = _compile(dialect, statement, sorted(params))
    return by_statement[key]


def _compile(dialect: Dialect, statement: Statement, keys: list[str]) -> _Compiled | None:
    """The statement as SQLAlchemy would compile it for these parameters; None when running it
    needs SQLAlchemy's execution (Python-side defaults, expanding IN lists), which then runs it."""
    compiled = statement.compile(dialect=dialect, column_keys=keys)
    assert isinstance(compiled, SQLCompiler)
    if (
        compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.positiontup is None
    ):
        return None
    names = tuple(compiled.positiontup)
    params = compiled.binds
    binds = tuple(params[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
    defaults = {name: param.value for name, param in params.items() if not param.required}
    results = tuple(
        column.type.dialect_impl(dialect).result_processor(dialect, None)
        for column in statement.exported_columns
    )
    return _Compiled(compiled.string, names, binds, defaults, results)
