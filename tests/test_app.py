"""`gptsbot run`'s supervision of the platform adapters."""

from __future__ import annotations

import asyncio
import logging

import pytest

from core.app import run_adapters
from core.platform import PlatformRefused
from fakes import issued

SECRET = "123456:very-secret-token"


class FlakyAdapter:
    """Fails `failures` times (with the token in its error, as some libraries do), then runs."""

    name = "flaky"

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.starts = 0
        self.running = asyncio.Event()

    async def run(self) -> None:
        self.starts += 1
        if self.starts <= self.failures:
            raise ConnectionError(f"cannot reach https://api.example/bot{SECRET}/getMe")
        self.running.set()
        await asyncio.Event().wait()


class RefusedAdapter:
    name = "refused"

    async def run(self) -> None:
        raise PlatformRefused("the platform refused the bot token")


@pytest.mark.asyncio
async def test_a_failing_adapter_is_restarted_and_its_secret_never_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    issued.note(SECRET)  # the suite's log scan looks for it too
    flaky, stop = FlakyAdapter(failures=3), asyncio.Event()
    with caplog.at_level(logging.ERROR, logger="core.app"):
        task = asyncio.create_task(
            run_adapters([flaky], stop, secrets=[SECRET], first_restart_delay_s=0.001)
        )
        await asyncio.wait_for(flaky.running.wait(), 5)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert flaky.starts == 4
    failures = [r.getMessage() for r in caplog.records if "restarting" in r.getMessage()]
    assert len(failures) == 3
    assert all(SECRET not in line and "***" in line for line in failures)


@pytest.mark.asyncio
async def test_a_refused_bot_stops_alone_and_the_last_one_ends_the_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky, refused, stop = FlakyAdapter(failures=0), RefusedAdapter(), asyncio.Event()
    with caplog.at_level(logging.INFO, logger="core.app"):
        task = asyncio.create_task(run_adapters([flaky, refused], stop))
        await asyncio.wait_for(flaky.running.wait(), 5)
        await asyncio.sleep(0.05)
        assert not task.done()  # the other adapter goes on
        lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert lines == ["the platform refused the bot token (flaky still running)"]
        stop.set()
        refusals = await asyncio.wait_for(task, 5)
    assert [str(r) for r in refusals] == ["the platform refused the bot token"]

    # With no adapter left running, the run ends by itself and returns every refusal.
    never = asyncio.Event()
    both = await asyncio.wait_for(run_adapters([RefusedAdapter(), RefusedAdapter()], never), 5)
    assert len(both) == 2
