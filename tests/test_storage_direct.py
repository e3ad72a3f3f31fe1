"""`storage.direct`: a turn's statements run on the SQLite driver's connection store and read
exactly what SQLAlchemy's execution would, and fail with SQLAlchemy's errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, event, insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.gpts import Usage
from storage import AttachmentRecord, BindingRecord, NewMessage, ScopeKey, bindings, direct, queries
from storage.engine import is_unique_violation
from storage.models import MESSAGES, Base
from tests.sql_probes import raw

NOW = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)
THREAD = ScopeKey("discord", "guild-chat", "thread-7")
PARENT = ScopeKey("discord", "guild-chat")
TABLES = ("scopes", "conversations", "messages", "bindings")


@pytest.fixture
def connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Connection]:
    """A connection like the repository thread's: the stdlib driver on an SQLite file."""
    monkeypatch.setattr(queries, "utcnow", lambda: NOW)
    engine = create_engine(f"sqlite:///{tmp_path / 'direct.db'}")
    Base.metadata.create_all(engine)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def sqlalchemy_cursor_calls(connection: Connection) -> list[str]:
    """The statements SQLAlchemy's own execution sends from now on."""
    sent: list[str] = []
    event.listen(connection.engine, "before_cursor_execute", lambda *args: sent.append(args[2]))
    return sent


def a_turn(connection: Connection) -> list[Any]:
    """A turn's statements, then everything a later turn reads back."""
    with connection.begin():
        conversation = queries.current_conversation(connection, THREAD)
        bindings.set_binding(connection, BindingRecord(PARENT, "g-abc", "grp", "1", "Ann", NOW))
        question = NewMessage(
            "user",
            "你好 'quoted' \U0001f600",
            author_id="1",
            author_name="Ann",
            update_key="discord:42",
            attachments=(AttachmentRecord("image", "a.png", "image/png", 12, "ref-1"),),
        )
        values = queries.message_values(question) | {"conversation_id": conversation}
        question_id = queries.insert_message(connection, values)
        answer = NewMessage("assistant", "", status="streaming", answers_id=question_id)
        values = queries.message_values(answer) | {"conversation_id": conversation}
        answer_id = queries.insert_message(connection, values)
    with connection.begin():
        queries.save_answer(connection, answer_id, "part", ["m1"])
    with connection.begin():
        final = NewMessage(
            "assistant",
            "the whole answer",
            model="gpt-4-gizmo-g-abc",
            usage=Usage(3, 4, 7),
            first_chunk_ms=500,
            total_ms=6400,
            platform_message_ids=("m1", "m2"),
            tokens_estimated=True,
        )
        queries.finish_answer(connection, answer_id, final)
        queries.save_answer(connection, answer_id, "late save changes nothing", ["m9"])
    with connection.begin():
        return [
            queries.current_conversation(connection, THREAD),
            queries.exchanges(connection, conversation, 5),
            bindings.turn_binding(connection, THREAD),
        ]


def stored(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, each value with the type SQLite stored it as."""
    with raw(path) as connection:
        return {
            table: [
                tuple((value, type(value).__name__) for value in row)
                for row in connection.execute(f"SELECT * FROM {table} ORDER BY id")
            ]
            for table in TABLES
        }


def test_a_turn_stores_and_reads_what_sqlalchemy_would(
    connection: Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = sqlalchemy_cursor_calls(connection)
    read_directly = a_turn(connection)
    stored_directly = stored(tmp_path / "direct.db")
    # Only the binding's upsert went through SQLAlchemy's execution.
    assert [statement.split()[:3] for statement in sent] == [
        ["SELECT", "scopes.id", "FROM"],
        ["UPDATE", "bindings", "SET"],
        ["INSERT", "INTO", "bindings"],
    ]

    # The same turn on a fresh file, every statement through SQLAlchemy's execution.
    monkeypatch.setattr(direct, "_DIRECT_DRIVER", "none")
    engine = create_engine(f"sqlite:///{tmp_path / 'sqlalchemy.db'}")
    Base.metadata.create_all(engine)
    with engine.connect() as other:
        read_by_sqlalchemy = a_turn(other)
    engine.dispose()

    assert read_directly == read_by_sqlalchemy
    assert stored_directly == stored(tmp_path / "sqlalchemy.db")
    [exchange] = read_directly[1]
    assert (exchange.question, exchange.answer) == ("你好 'quoted' \U0001f600", "the whole answer")
    assert exchange.question_attachments[0].reference == "ref-1"
    assert read_directly[2] == BindingRecord(PARENT, "g-abc", "grp", "1", "Ann", NOW)


def test_a_refused_row_raises_sqlalchemys_error_without_the_values(connection: Connection) -> None:
    with connection.begin():
        conversation = queries.current_conversation(connection, THREAD)
    message = NewMessage("user", "secret words", update_key="discord:1")
    values = queries.message_values(message) | {"conversation_id": conversation}
    with connection.begin():
        queries.insert_message(connection, values)
    with pytest.raises(IntegrityError) as raised, connection.begin():
        queries.insert_message(connection, values)
    assert is_unique_violation(raised.value)
    assert "secret words" not in str(raised.value)
    assert "parameters hidden" in str(raised.value)


def test_a_statement_that_needs_python_defaults_runs_through_sqlalchemy(
    connection: Connection,
) -> None:
    with connection.begin():
        conversation = queries.current_conversation(connection, THREAD)
    sent = sqlalchemy_cursor_calls(connection)
    with connection.begin():
        # No created_at, status or platform_message_ids: SQLAlchemy computes their defaults.
        values = {"conversation_id": conversation, "role": "user", "content": "hi"}
        [[message_id]] = direct.execute(
            connection, insert(MESSAGES).returning(MESSAGES.c.id), values
        )
    assert len(sent) == 1
    driver = connection.connection.driver_connection
    assert driver is not None
    found = driver.execute(
        "SELECT status, platform_message_ids, created_at > '2026' FROM messages WHERE id = ?",
        (message_id,),
    ).fetchone()
    assert found == ("complete", "[]", 1)
