"""Fakes that tests/ and bench/ share; part of the checkout, not of the installed wheel.

- `gpts`, `telegram`, `discord`: local aiohttp servers speaking the OpenAI streaming protocol,
  the Telegram Bot API and Discord's REST + gateway, which the real client libraries accept.
- `clock` (virtual time) and `recording` (a platform that records calls): pure core tests.
- `rate_window`: counting recorded calls per window, and the calls a platform would refuse.
"""
