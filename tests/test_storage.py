"""Storage against a real database: migrations, the repository API, restarts; on an SQLite file
and, with GPTSBOT_TEST_PG_URL set, on PostgreSQL (`tests/databases.py`). SQLite's pragmas and
query plans are checked on SQLite alone."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError

from core.gpts import Usage
from storage import (
    MESSAGE_STATUSES,
    BindingRecord,
    MessageRecord,
    NewMessage,
    Repository,
    ScopeKey,
)
from storage.engine import head_revision
from storage.models import Base, UTCDateTime
from tests.databases import rows, scalar
from tests.sql_probes import captured_sql, query_plans, raw

REPO_ROOT = Path(__file__).resolve().parents[1]
TABLES = {"scopes", "conversations", "messages", "bindings"}


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "bot.db"


@pytest_asyncio.fixture
async def repo(db_url: str) -> AsyncIterator[Repository]:
    """A migrated repository on each database (`db_url`: SQLite, then PostgreSQL)."""
    repository = await Repository.open(db_url)
    await repository.upgrade()
    yield repository
    await repository.close()


@pytest_asyncio.fixture
async def sqlite_repo(db_path: Path) -> AsyncIterator[Repository]:
    """A migrated repository on an SQLite file (`db_path`), for what only SQLite has."""
    repository = await Repository.open(sqlite_url(db_path))
    await repository.upgrade()
    yield repository
    await repository.close()


async def add_numbered(repository: Repository, conversation_id: int, count: int) -> list[int]:
    return [
        await repository.add_message(
            conversation_id, NewMessage("user" if n % 2 == 0 else "assistant", f"m{n}")
        )
        for n in range(count)
    ]


async def bind(
    repository: Repository, scope: ScopeKey, gpt_id: str, group_id: str | None = None, **by: str
) -> BindingRecord:
    """`set_binding` with no group and no binder unless given (`bound_by_id`, `bound_by_name`)."""
    by = {"bound_by_id": None, "bound_by_name": None, **by}
    return await repository.set_binding(scope, gpt_id=gpt_id, group_id=group_id, **by)


# -- schema and migrations ---------------------------------------------------------------------


@pytest.mark.asyncio
async def test_upgrade_reaches_the_newest_revision_and_is_idempotent(db_url: str) -> None:
    repository = await Repository.open(db_url)
    try:
        await repository.upgrade()
        await repository.upgrade()  # already at head: nothing to do, no error
        conversation_id = await repository.current_conversation(ScopeKey("telegram", "42"))
        await repository.upgrade()  # and data survives it
        assert await repository.current_conversation(ScopeKey("telegram", "42")) == conversation_id
        async with repository._engine.connect() as connection:
            names = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            indexes = await connection.run_sync(
                lambda c: {index["name"] for index in inspect(c).get_indexes("messages")}
            )
    finally:
        await repository.close()

    versions = await rows(db_url, "SELECT version_num FROM alembic_version")
    assert versions == [(head_revision(),)]
    assert names >= TABLES | {"alembic_version"}
    assert indexes >= {"ix_messages_conversation_id_id", "ix_messages_streaming"}


@pytest.mark.asyncio
async def test_upgrade_creates_the_folder_of_an_sqlite_file(tmp_path: Path) -> None:
    db_path = tmp_path / "not" / "yet" / "there.db"
    async with await Repository.open(sqlite_url(db_path)) as repository:
        await repository.upgrade()
    with raw(db_path) as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert names >= TABLES | {"alembic_version", "ix_messages_conversation_id_id"}


@pytest.mark.asyncio
async def test_migration_matches_the_models(repo: Repository) -> None:
    def diff(connection: Any) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))

    async with repo._engine.connect() as connection:
        assert await connection.run_sync(diff) == []
        tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
    assert tables >= TABLES


@pytest.mark.asyncio
async def test_upgrade_leaves_the_app_logging_alone(db_url: str) -> None:
    existing = logging.getLogger("gptsbot.test.existing")
    root = logging.getLogger()
    before = (list(root.handlers), root.level)

    repository = await Repository.open(db_url)
    try:
        await repository.upgrade()
    finally:
        await repository.close()

    # logging.config.fileConfig() would have replaced root's handlers and disabled this logger.
    assert (list(root.handlers), root.level) == before
    assert not existing.disabled


@pytest.mark.asyncio
async def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(
    sqlite_repo: Repository, db_path: Path
) -> None:
    repo = sqlite_repo
    assert repo.dialect == "sqlite"
    async with repo._engine.connect() as connection:
        pragmas = {
            name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar_one()
            for name in ("journal_mode", "foreign_keys", "busy_timeout")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 5000}

    # WAL is a property of the file: a fresh outside connection sees it too.
    with raw(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


# -- conversations and messages ----------------------------------------------------------------


@pytest.mark.asyncio
async def test_history_is_the_last_n_messages_of_one_conversation_oldest_first(
    repo: Repository,
) -> None:
    first = await repo.current_conversation(ScopeKey("discord", "channel-1"))
    other = await repo.current_conversation(ScopeKey("discord", "channel-2"))
    ids = await add_numbered(repo, first, 12)
    await add_numbered(repo, other, 3)

    window = await repo.history(first, limit=5)
    assert [m.id for m in window] == ids[-5:]
    assert [m.content for m in window] == [f"m{n}" for n in range(7, 12)]
    assert [m.role for m in window] == ["assistant", "user", "assistant", "user", "assistant"]

    assert [m.id for m in await repo.history(first, limit=100)] == ids
    assert await repo.history(first, limit=0) == []
    assert await repo.history(first, limit=-1) == []  # not SQLite's "LIMIT -1" = everything
    assert len(await repo.history(other, limit=100)) == 3
    assert await repo.history(123_456, limit=10) == []


@pytest.mark.asyncio
async def test_foreign_keys_are_enforced(repo: Repository) -> None:
    with pytest.raises(IntegrityError):
        await repo.add_message(999_999, NewMessage("user", "orphan"))


@pytest.mark.asyncio
async def test_add_message_stores_every_field(repo: Repository, db_url: str) -> None:
    conversation_id = await repo.current_conversation(ScopeKey("discord", "c", "t"))
    message = NewMessage(
        "assistant",
        "hello **there**",
        status="partial",
        author_id="bot",
        author_name="Bot",
        model="gpt-4-gizmo-g-abc",
        usage=Usage(prompt_tokens=10, completion_tokens=20, total_tokens=30),  # the core's
        first_chunk_ms=150,
        total_ms=2500,
        platform_message_ids=("111", "222"),
    )
    message_id = await repo.add_message(conversation_id, message)

    [record] = await repo.history(conversation_id, limit=1)
    assert record == MessageRecord(
        id=message_id,
        role="assistant",
        content="hello **there**",
        author_id="bot",
        author_name="Bot",
        status="partial",
        model="gpt-4-gizmo-g-abc",
        created_at=record.created_at,
    )
    [row] = await rows(
        db_url,
        "SELECT prompt_tokens, completion_tokens, total_tokens, first_chunk_ms, total_ms,"
        " platform_message_ids FROM messages WHERE id = :id",
        id=message_id,
    )
    assert row[:5] == (10, 20, 30, 150, 2500)
    # Text on SQLite; asyncpg decodes PostgreSQL's json itself.
    ids = row[5] if isinstance(row[5], list) else json.loads(row[5])
    assert ids == ["111", "222"]


@pytest.mark.asyncio
async def test_every_message_status_is_stored_and_no_other(repo: Repository, db_url: str) -> None:
    # A status added to MessageStatus without a migration of the CHECK constraint fails here.
    conversation_id = await repo.current_conversation(ScopeKey("telegram", "1"))
    for status in MESSAGE_STATUSES:
        await repo.add_message(conversation_id, NewMessage("assistant", status, status=status))
    stored = await repo.history(conversation_id, limit=len(MESSAGE_STATUSES))
    assert [(m.content, m.status) for m in stored] == [(s, s) for s in MESSAGE_STATUSES]

    with pytest.raises(ValueError, match="status"):
        NewMessage("user", "x", status="done")  # type: ignore[arg-type]
    with pytest.raises(IntegrityError, match=r"(?i)check constraint"):
        await rows(
            db_url,
            "INSERT INTO messages (conversation_id, role, content, status, platform_message_ids,"
            " created_at) VALUES (:id, 'user', 'x', 'done', '[]', CURRENT_TIMESTAMP)",
            id=conversation_id,
        )


@pytest.mark.asyncio
async def test_start_conversation_empties_the_window_and_keeps_old_messages(
    repo: Repository,
) -> None:
    topic = ScopeKey("telegram", "-100", "7")
    old = await repo.current_conversation(topic)
    await add_numbered(repo, old, 4)

    new = await repo.start_conversation(topic)

    assert new != old
    assert await repo.current_conversation(topic) == new
    assert await repo.history(new, limit=20) == []
    assert await repo.count_messages(old) == 4
    assert len(await repo.history(old, limit=20)) == 4
    # Other scopes, including the same chat without the topic, are untouched.
    assert topic.parent is not None
    assert await repo.current_conversation(topic.parent) not in {old, new}


@pytest.mark.asyncio
async def test_start_conversation_on_a_new_scope_returns_its_first_conversation(
    repo: Repository,
) -> None:
    started = await repo.start_conversation(ScopeKey("discord", "fresh"))
    assert await repo.current_conversation(ScopeKey("discord", "fresh")) == started


@pytest.mark.asyncio
async def test_concurrent_first_turns_in_one_scope_agree_on_one_conversation(
    repo: Repository, db_url: str
) -> None:
    ids = await asyncio.gather(
        *(repo.current_conversation(ScopeKey("discord", "busy", "thread")) for _ in range(25))
    )
    assert len(set(ids)) == 1
    assert await scalar(db_url, "SELECT count(*) FROM scopes") == 1
    assert await scalar(db_url, "SELECT count(*) FROM conversations") == 1


@pytest.mark.asyncio
async def test_concurrent_writes_to_many_scopes_all_land(repo: Repository) -> None:
    async def turn(n: int) -> int:
        conversation_id = await repo.current_conversation(ScopeKey("telegram", f"chat-{n % 10}"))
        await repo.add_message(conversation_id, NewMessage("user", f"turn {n}"))
        return conversation_id

    ids = await asyncio.gather(*(turn(n) for n in range(100)))
    assert len(set(ids)) == 10
    counts = [await repo.count_messages(i) for i in set(ids)]
    assert counts == [10] * 10


@pytest.mark.asyncio
async def test_history_query_is_an_index_seek_not_a_scan(
    sqlite_repo: Repository, db_path: Path
) -> None:
    repo = sqlite_repo
    scope = ScopeKey("discord", "plan")
    conversation_id = await repo.current_conversation(scope)
    await add_numbered(repo, conversation_id, 3)
    async with captured_sql(repo) as statements:
        await repo.history(conversation_id, limit=2)
        await repo.current_conversation(scope)

    assert len(statements) == 2  # one round trip each
    history_plan, current_plan = query_plans(db_path, statements)
    assert "USING COVERING INDEX ix_messages_conversation_id_id" in history_plan or (
        "USING INDEX ix_messages_conversation_id_id" in history_plan
    ), history_plan
    assert "TEMP B-TREE" not in history_plan, history_plan
    assert "ix_conversations_scope_id_id" in current_plan, current_plan
    assert "TEMP B-TREE" not in current_plan, current_plan


# -- bindings ----------------------------------------------------------------------------------

CHANNEL = ScopeKey("discord", "chan")


@pytest.mark.asyncio
async def test_binding_set_get_overwrite_delete(repo: Repository) -> None:
    assert await repo.get_binding(CHANNEL) is None

    first = await bind(repo, CHANNEL, "g-one", "guild", bound_by_id="u1", bound_by_name="Ann")
    assert await repo.get_binding(CHANNEL) == first
    assert (first.scope, first.gpt_id, first.group_id) == (CHANNEL, "g-one", "guild")

    second = await bind(repo, CHANNEL, "g-two", "guild", bound_by_id="u2", bound_by_name="Bo")
    assert await repo.get_binding(CHANNEL) == second
    assert (second.gpt_id, second.bound_by_id, second.bound_by_name) == ("g-two", "u2", "Bo")
    assert second.bound_at >= first.bound_at

    # Exact scope only: a thread of the channel has no binding of its own.
    thread = ScopeKey("discord", "chan", "thread")
    assert await repo.get_binding(thread) is None
    assert await repo.delete_binding(thread) is False

    assert await repo.delete_binding(CHANNEL) is True
    assert await repo.get_binding(CHANNEL) is None
    assert await repo.delete_binding(CHANNEL) is False


@pytest.mark.asyncio
async def test_binding_a_scope_keeps_its_conversation(repo: Repository) -> None:
    await bind(repo, CHANNEL, "g-x")
    conversation_id = await repo.current_conversation(CHANNEL)
    await repo.add_message(conversation_id, NewMessage("user", "hi"))
    await repo.delete_binding(CHANNEL)
    assert await repo.current_conversation(CHANNEL) == conversation_id
    assert await repo.count_messages(conversation_id) == 1


@pytest.mark.asyncio
async def test_concurrent_binds_of_one_new_scope_leave_one_binding(
    repo: Repository, db_url: str
) -> None:
    records = await asyncio.gather(*(bind(repo, CHANNEL, f"g-{n}", "G") for n in range(10)))
    stored = await repo.get_binding(CHANNEL)
    assert stored is not None
    assert stored.gpt_id in {r.gpt_id for r in records}
    assert await scalar(db_url, "SELECT count(*) FROM bindings") == 1


@pytest.mark.asyncio
async def test_bound_gpts_lists_each_gpt_of_a_group_once_newest_first(repo: Repository) -> None:
    def discord(chat_id: str) -> ScopeKey:
        return ScopeKey("discord", chat_id)

    await bind(repo, discord("c1"), "g-old", "guild-a")
    await bind(repo, discord("c2"), "g-mid", "guild-a")
    await bind(repo, discord("c3"), "g-old", "guild-a")  # g-old bound again, now the most recent
    await bind(repo, discord("c4"), "g-new", "guild-a")
    await bind(repo, discord("c5"), "g-other", "guild-b")
    await bind(repo, discord("dm"), "g-dm", None)
    await bind(repo, ScopeKey("telegram", "c6"), "g-telegram", "guild-a")

    assert await repo.bound_gpts("discord", "guild-a") == ["g-new", "g-old", "g-mid"]
    assert await repo.bound_gpts("discord", "guild-b") == ["g-other"]
    assert await repo.bound_gpts("discord", "nowhere") == []
    assert await repo.bound_gpts("telegram", "guild-a") == ["g-telegram"]

    # Rebinding c4 away removes g-new from the guild; deleting c3 leaves g-old via c1.
    await bind(repo, discord("c4"), "g-mid", "guild-a")
    assert await repo.delete_binding(discord("c3"))
    assert await repo.bound_gpts("discord", "guild-a") == ["g-mid", "g-old"]


# -- time and restarts -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_timestamps_come_back_timezone_aware_utc(repo: Repository) -> None:
    before = datetime.now(UTC)
    scope = ScopeKey("discord", "tz")
    conversation_id = await repo.current_conversation(scope)
    await repo.add_message(conversation_id, NewMessage("user", "x"))
    binding = await bind(repo, scope, "g")
    [message] = await repo.history(conversation_id, limit=1)
    stored = await repo.get_binding(scope)
    assert stored is not None

    for moment in (message.created_at, binding.bound_at, stored.bound_at):
        assert moment.utcoffset() == timedelta(0)
        assert before <= moment <= datetime.now(UTC)


def test_utc_type_normalises_other_zones_and_refuses_naive_datetimes() -> None:
    column_type, dialect = UTCDateTime(), sqlite.dialect()
    plus_two = datetime(2025, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    bound = column_type.process_bind_param(plus_two, dialect)
    assert bound == plus_two
    assert bound is not None and bound.utcoffset() == timedelta(0)
    with pytest.raises(ValueError, match="naive"):
        column_type.process_bind_param(datetime(2025, 1, 1), dialect)
    read = column_type.process_result_value(datetime(2025, 1, 1, 10), dialect)
    assert read == datetime(2025, 1, 1, 10, tzinfo=UTC)


RESTARTED_PROCESS = textwrap.dedent(
    """
    import asyncio, json, sys
    from storage import Repository, ScopeKey

    async def main() -> None:
        repository = await Repository.open(sys.argv[1])
        topic = ScopeKey("telegram", "7", "topic")
        try:
            await repository.upgrade()
            conversation_id = await repository.current_conversation(topic)
            history = await repository.history(conversation_id, limit=10)
            binding = await repository.get_binding(topic)
            print(json.dumps({
                "conversation_id": conversation_id,
                "history": [[m.id, m.role, m.content, m.author_name, m.status,
                             m.created_at.isoformat()] for m in history],
                "gpt_id": binding.gpt_id if binding else None,
                "bound_gpts": await repository.bound_gpts("telegram", "group"),
            }))
        finally:
            await repository.close()

    asyncio.run(main())
    """
)


@pytest.mark.asyncio
async def test_a_restarted_process_sees_everything(db_url: str) -> None:
    url = db_url
    repository = await Repository.open(url)
    topic = ScopeKey("telegram", "7", "topic")
    try:
        await repository.upgrade()
        old = await repository.current_conversation(topic)
        await repository.add_message(old, NewMessage("user", "forgotten"))
        conversation_id = await repository.start_conversation(topic)
        await repository.add_message(conversation_id, NewMessage("user", "hi", author_name="Ann"))
        await repository.add_message(
            conversation_id, NewMessage("assistant", "hello", status="partial")
        )
        await bind(repository, topic, "g-abc", "group", bound_by_id="1", bound_by_name="Ann")
        expected = [
            [m.id, m.role, m.content, m.author_name, m.status, m.created_at.isoformat()]
            for m in await repository.history(conversation_id, limit=10)
        ]
    finally:
        await repository.close()

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *sys.path])}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RESTARTED_PROCESS,
        url,
        cwd=REPO_ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, stderr.decode()

    seen = json.loads(stdout)
    assert seen == {
        "conversation_id": conversation_id,
        "history": expected,
        "gpt_id": "g-abc",
        "bound_gpts": ["g-abc"],
    }
    assert [row[2] for row in seen["history"]] == ["hi", "hello"]
