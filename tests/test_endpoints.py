"""Choosing an endpoint and tracking its health (`core.gpts.endpoints`), without HTTP: a scripted
random source and a fake clock make every choice and back-off exact."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Iterable

import pytest

from core.config import EndpointConfig, GptsConfig, parse_config
from core.errors import RateLimited, UpstreamError
from core.gpts.endpoints import Endpoint, EndpointPool, endpoints_of, is_endpoint_failure
from fakes.clock import FakeClock
from tests.upstream_errors import FAILURES, Failure, failure_id

FAILURE = UpstreamError("HTTP 503", status=503)


class Draws(random.Random):
    """Returns the given values in order."""

    def __init__(self, values: Iterable[float]) -> None:
        super().__init__()
        self._values = iter(values)

    def random(self) -> float:
        return next(self._values)


def endpoint(label: str, *, weight: float = 1.0, max_concurrent: int = 0) -> Endpoint:
    base_url = f"https://{label}.example/v1"
    return Endpoint(label, label, base_url, "k", "gpt-4-gizmo-{id}", weight, max_concurrent)


def pool(
    *endpoints: Endpoint, draws: Iterable[float] = (), clock: FakeClock | None = None
) -> EndpointPool:
    return EndpointPool(
        endpoints,
        backoff_s=10,
        max_backoff_s=35,
        rng=Draws(draws),
        clock=(clock or FakeClock()).monotonic,
    )


def test_the_choice_is_weighted() -> None:
    a, b = endpoint("a", weight=1), endpoint("b", weight=3)
    chosen = pool(a, b, draws=[0.0, 0.24, 0.25, 0.99])
    assert [chosen.choose().label for _ in range(4)] == ["a", "a", "b", "b"]  # type: ignore[union-attr]
    seeded = EndpointPool((a, b), backoff_s=10, max_backoff_s=35, rng=random.Random(7))
    counts = Counter(seeded.choose().label for _ in range(4000))  # type: ignore[union-attr]
    assert 900 < counts["a"] < 1100 and 2900 < counts["b"] < 3100


def test_an_unhealthy_endpoint_is_not_drawn_until_its_backoff_ends() -> None:
    clock = FakeClock()
    a, b = endpoint("a"), endpoint("b")
    endpoints = pool(a, b, draws=[0.0] * 3, clock=clock)
    endpoints.failed(a, FAILURE, since=0)
    assert endpoints.choose() is b
    clock.now = 9.9
    assert endpoints.choose() is b
    clock.now = 10
    assert endpoints.choose() is a  # tried again; still failing once in a row until it answers
    assert a.failures == 1
    endpoints.succeeded(a)
    assert (a.failures, a.is_healthy(clock.now)) == (0, True)


def test_the_backoff_doubles_per_failure_in_a_row_up_to_the_cap() -> None:
    clock = FakeClock()
    a, b = endpoint("a"), endpoint("b")
    endpoints = pool(a, b, clock=clock)
    backoffs = []
    for _ in range(4):
        endpoints.failed(a, FAILURE, since=clock.now)
        backoffs.append(a.unhealthy_until - clock.now)
        clock.now = a.unhealthy_until
    assert backoffs == [10, 20, 35, 35]
    endpoints.failed(a, RateLimited("slow down", retry_after=120), since=clock.now)
    assert a.unhealthy_until - clock.now == 120  # the endpoint's longer Retry-After wins
    endpoints.succeeded(a)
    endpoints.failed(a, FAILURE, since=clock.now)
    assert a.unhealthy_until - clock.now == 10  # after an answer, from the start again


def test_attempts_already_under_way_do_not_double_the_backoff() -> None:
    clock = FakeClock()
    a, b = endpoint("a"), endpoint("b")
    endpoints = pool(a, b, clock=clock)
    clock.now = 5
    for _ in range(50):  # fifty turns that had started at 1 and are cut by one outage
        endpoints.failed(a, FAILURE, since=1)
    assert (a.failures, a.unhealthy_until) == (1, 15)


def test_with_every_endpoint_unhealthy_the_one_back_soonest_is_chosen() -> None:
    clock = FakeClock()
    a, b, c = endpoint("a"), endpoint("b"), endpoint("c")
    endpoints = pool(a, b, c, clock=clock)
    endpoints.failed(a, FAILURE, since=0)
    endpoints.failed(a, FAILURE, since=0)  # a second failure in a row: back at 20
    clock.now = 1
    endpoints.failed(b, FAILURE, since=1)  # back at 11
    clock.now = 2
    endpoints.failed(c, FAILURE, since=2)  # back at 12
    assert endpoints.choose() is b
    assert endpoints.choose(exclude=[b]) is c  # not tried yet in this turn comes first


def test_a_turn_tries_the_endpoints_it_has_not_tried_yet_then_any() -> None:
    a, b = endpoint("a"), endpoint("b")
    endpoints = pool(a, b, draws=[0.0] * 3)
    assert endpoints.choose(exclude=[a]) is b
    assert endpoints.choose(exclude=[b]) is a
    assert endpoints.choose(exclude=[a, b]) is a  # each was tried: all are candidates again


@pytest.mark.asyncio
async def test_a_full_endpoint_is_skipped_while_another_has_room() -> None:
    a, b = endpoint("a", weight=100, max_concurrent=1), endpoint("b")
    endpoints = pool(a, b, draws=[0.0] * 4)
    async with endpoints.slot() as first:
        assert first is a and a.in_flight == 1
        async with endpoints.slot() as second:
            assert second is b  # a is full, though it would be drawn
    assert (a.in_flight, b.in_flight) == (0, 0)
    async with endpoints.slot() as again:
        assert again is a


@pytest.mark.asyncio
async def test_when_every_endpoint_is_full_the_turn_waits_for_a_slot(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    a, b = endpoint("a", max_concurrent=1), endpoint("b", max_concurrent=2)
    endpoints = pool(a, b, draws=[0.0] * 10)
    held = [endpoints.slot() for _ in range(3)]
    assert [await slot.__aenter__() for slot in held] == [a, b, b]

    async def take() -> Endpoint:
        async with endpoints.slot() as chosen:
            return chosen

    waiting = asyncio.create_task(take())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert (
        "the GPTs endpoints left to this turn are all full (max_concurrent): waiting" in caplog.text
    )
    await held[1].__aexit__(None, None, None)  # one of b's slots
    assert await waiting is b
    for slot in (held[0], held[2]):
        await slot.__aexit__(None, None, None)
    assert (a.in_flight, b.in_flight) == (0, 0)


@pytest.mark.asyncio
async def test_a_healthy_endpoint_that_is_full_is_waited_for_rather_than_an_unhealthy_one() -> None:
    a, b = endpoint("a", max_concurrent=1), endpoint("b")
    endpoints = pool(a, b, draws=[0.0] * 10)
    endpoints.failed(b, FAILURE, since=0)
    async with endpoints.slot() as first:
        assert first is a
        assert endpoints.choose() is None  # wait for a's slot: b is set aside


def test_one_endpoint_is_always_used_and_its_health_not_tracked() -> None:
    (only,) = endpoints_of(GptsConfig(base_url="https://relay.example:8443/v1", api_key="k"))
    endpoints = pool(only)
    endpoints.failed(only, FAILURE, since=0)
    assert only.failures == 0 and endpoints.choose() is only
    assert (only.label, only.key, only.url_hint) == (
        "relay.example:8443",
        "gpts",
        "is gpts.base_url right?",
    )
    assert only.model("g-B3hgivKK9") == "gpt-4-gizmo-g-B3hgivKK9"


def test_endpoints_of_a_config_fill_in_the_shared_key_and_template() -> None:
    raw = {
        "gpts": {
            "api_key": "sk-shared",
            "model_template": "gpt-4o-gizmo-{id}",
            "endpoints": [
                {"base_url": "https://relay.example/a/v1", "api_key_env": "KEY_A"},
                {"base_url": "https://relay.example/b/v1", "model_template": "{id}"},
                {"base_url": "https://other.example/v1", "name": "other", "api_key": "sk-o"},
            ],
        }
    }
    a, b, other = endpoints_of(parse_config(raw, {"KEY_A": "sk-a"}).gpts)
    assert [e.api_key for e in (a, b, other)] == ["sk-a", "sk-shared", "sk-o"]
    assert [e.model("g-x") for e in (a, b, other)] == [
        "gpt-4o-gizmo-g-x",
        "g-x",
        "gpt-4o-gizmo-g-x",
    ]
    # Named by `name`, else by host, with the table when two share a host.
    assert [e.label for e in (a, b, other)] == [
        "relay.example (gpts.endpoints[0])",
        "relay.example (gpts.endpoints[1])",
        "other",
    ]
    assert [e.key_setting for e in (a, b, other)] == [
        "KEY_A (named by gpts.endpoints[0].api_key_env)",
        "GPTS_API_KEY or gpts.api_key",
        "gpts.endpoints[2].api_key",
    ]
    assert other.url_hint == "is gpts.endpoints[2].base_url right?"
    assert "sk-" not in repr(a) + repr(EndpointConfig("https://x.example", "sk-o"))


@pytest.mark.parametrize("failure", FAILURES, ids=failure_id)
def test_which_failures_are_the_endpoints(failure: Failure) -> None:
    assert is_endpoint_failure(failure.error) is failure.fails_over
