"""The scan of every test's logs (secret_scan.py) finds a secret when one is logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from fakes import issued
from fakes.discord import FakeDiscord
from fakes.telegram import FakeTelegram
from tests.secret_scan import KeepText, leaks

ROOT = Path(__file__).resolve().parent.parent


def test_a_secret_in_a_message_or_a_traceback_is_found_and_not_repeated() -> None:
    tg, discord = FakeTelegram(), FakeDiscord()  # built, not started: their tokens are noted
    issued.note_authorization("Bearer sk-scan-test-key")
    keep = KeepText()
    logger = logging.getLogger("tests.scan")
    logger.addHandler(keep)
    logger.propagate = False  # else this very test's scan would find them too
    try:
        logger.warning("GET https://api.telegram.org/bot%s/getMe", tg.token)
        logger.warning("nothing to see")
        try:
            raise RuntimeError(f"refused {discord.token}")
        except RuntimeError:
            logger.exception("a request failed")
        logger.warning("key %s", "sk-scan-test-key")
    finally:
        logger.removeHandler(keep)
        logger.propagate = True
    found = leaks(keep.texts, issued.known())
    assert len(found) == 3
    assert found[0] == "tests.scan WARNING: GET https://api.telegram.org/bot<SECRET>/getMe"
    assert "RuntimeError: refused <SECRET>" in found[1]
    report = "\n".join(found)
    assert tg.token not in report and discord.token not in report
    assert "sk-scan-test-key" not in report


def test_too_short_to_tell_from_text_is_not_a_secret() -> None:
    issued.note("k")
    issued.note_authorization("Bearer ab")
    assert "k" not in issued.known() and "ab" not in issued.known()


def test_a_test_that_logs_a_token_fails(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        """
        import logging

        from fakes.telegram import FakeTelegram

        def test_logs_the_token():
            tg = FakeTelegram()
            logging.getLogger("careless").debug("POST /bot%s/getMe", tg.token)

        def test_logs_it_redacted():
            FakeTelegram()
            logging.getLogger("careful").debug("POST /bot<token>/getMe")
        """
    )
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    # In a process of its own: this test's scan would see the inner test's records too.
    result = pytester.runpytest_subprocess("-p", "tests.secret_scan", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_logs_the_token*",
            "1 log record(s) carry a secret:",
            "careless DEBUG: POST /bot<SECRET>/getMe",
        ]
    )
