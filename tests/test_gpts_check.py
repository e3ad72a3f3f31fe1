"""Checking the endpoint (`GptsClient.check`, `list_models`) and telling a wrong URL from a
missing GPT, over real HTTP against FakeGpts."""

from __future__ import annotations

import pytest

from core.errors import AuthError, EndpointNotFound, GptNotFound
from core.gpts import GptsClient
from fakes.gpts import NGINX_404, Fail, FakeGpts, Gate
from tests.test_gpts_client import (  # no_key_in_logs: the same autouse check here
    API_KEY,
    GPT,
    MODEL,
    assert_no_key,
    collect,
    make_config,
    no_key_in_logs,  # noqa: F401
)


@pytest.mark.asyncio
@pytest.mark.parametrize("body", [NGINX_404, ""], ids=["html", "empty"])
async def test_a_404_page_on_the_path_is_a_wrong_url_not_a_missing_gpt(
    fake_gpts: FakeGpts, body: str
) -> None:
    fake_gpts.not_found_body = body
    wrong = fake_gpts.base_url.removesuffix("/v1")
    with pytest.raises(EndpointNotFound, match=r"HTTP 404.*is gpts.base_url right\?"):
        await collect(fake_gpts, base_url=wrong)
    assert [r.path for r in fake_gpts.requests] == ["/chat/completions"]  # not retried


@pytest.mark.asyncio
async def test_list_models_reads_the_openai_model_list(fake_gpts: FakeGpts) -> None:
    async with GptsClient(make_config(fake_gpts)) as client:
        assert await client.list_models() == ["gpt-4o-mini", "gpt-4-gizmo-g-B3hgivKK9"]
        fake_gpts.enqueue(Fail(401, {"error": {"message": f"bad key {API_KEY}"}}))
        with pytest.raises(AuthError) as refused:
            await client.list_models()
        assert_no_key(refused.value)
        fake_gpts.serve_models = False
        with pytest.raises(EndpointNotFound):
            await client.list_models()
    request = fake_gpts.requests[0]
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["Authorization"] == f"Bearer {API_KEY}"


@pytest.mark.asyncio
async def test_check_sends_a_tiny_request(fake_gpts: FakeGpts) -> None:
    async with GptsClient(make_config(fake_gpts)) as client:
        await client.check(GPT)
        fake_gpts.enqueue(Fail(404, {"error": {"message": "gone", "code": "model_not_found"}}))
        with pytest.raises(GptNotFound):
            await client.check(GPT)
    request = fake_gpts.requests[0]
    assert request.model == MODEL and request.json["max_tokens"] == 1
    assert request.messages == [{"role": "user", "content": "ping"}]


@pytest.mark.asyncio
async def test_check_returns_at_the_first_text_without_waiting_for_the_rest(
    fake_gpts: FakeGpts,
) -> None:
    gate = Gate()
    fake_gpts.enqueue(gate)
    gate.send("p")  # and never finish: check must not wait for the whole answer
    async with GptsClient(make_config(fake_gpts)) as client:
        await client.check(GPT)
