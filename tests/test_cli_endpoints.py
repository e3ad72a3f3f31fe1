"""`gptsbot check` with several `[[gpts.endpoints]]`, as a user runs it: a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakes.gpts import Fail, FakeGpts
from tests.test_cli import API_KEY, DEFAULT_GPT, environment, gptsbot

MAIN_KEY = "sk-main-endpoint-secret-42424242"


@pytest.mark.asyncio
async def test_check_says_one_line_per_endpoint_and_fails_if_any_fails(
    fake_gpts: FakeGpts, tmp_path: Path
) -> None:
    async with FakeGpts() as closed:
        down = closed.base_url  # nothing listens there once it is closed
    env = environment(tmp_path, fake_gpts, MAIN_KEY=MAIN_KEY)
    Path(env["GPTSBOT_CONFIG"]).write_text(
        f'[gpts]\ndefault_gpt = "{DEFAULT_GPT}"\nretry_backoff_s = 0.01\nmax_retries = 0\n\n'
        f'[[gpts.endpoints]]\nname = "main"\nbase_url = "{fake_gpts.base_url}"\n'
        f'api_key_env = "MAIN_KEY"\n\n'
        f'[[gpts.endpoints]]\nbase_url = "{down}"\nmodel_template = "{{id}}"\n'
    )
    model = f"gpt-4-gizmo-{DEFAULT_GPT}"
    result = await gptsbot("check", env=env)
    tried, *verdicts = result.out.splitlines()
    assert tried == (
        "Trying: POST {base_url}/chat/completions of each of the 2 endpoints asking "
        f"gpts.default_gpt ({DEFAULT_GPT})."
    )
    assert len(verdicts) == 2 and result.code == 1
    assert verdicts[0] == (
        f"OK: gpts.endpoints[0] {fake_gpts.base_url} (main) accepted the key; {model} answered."
    )
    assert verdicts[1].startswith(
        f"FAIL: gpts.endpoints[1] {down}: cannot reach the GPTs endpoint: "
    )
    assert "unhealthy" not in result.err  # checking one endpoint leaves its health alone
    (request,) = fake_gpts.requests
    assert request.headers["Authorization"] == f"Bearer {MAIN_KEY}"
    assert request.model == model

    # A refused key names where that endpoint's key comes from.
    fake_gpts.enqueue(Fail(401, {"error": {"message": f"Incorrect API key: {MAIN_KEY}"}}))
    result = await gptsbot("check", env=env)
    assert result.code == 1
    assert result.out.splitlines()[1] == (
        f"FAIL: gpts.endpoints[0] {fake_gpts.base_url} (main) refused the key: Incorrect API "
        "key: ***. Check MAIN_KEY (named by gpts.endpoints[0].api_key_env)."
    )
    for secret in (MAIN_KEY, API_KEY):
        assert secret not in result.out + result.err
