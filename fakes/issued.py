"""Every secret the fakes issued or were shown, so the test suite can prove that no log record
carries one (tests/secret_scan.py reads `known()` after each test).

The fakes note their bot tokens, every token a client presents to them (a wrong one is someone's
secret too), the GPTs API keys that arrive as `Authorization: Bearer`, and the Discord interaction
tokens they hand out. Strings shorter than `MIN_LENGTH` are not noted: they would match ordinary
text, and no real token or key is that short.
"""

from __future__ import annotations

MIN_LENGTH = 6

_noted: set[str] = set()


def note(secret: str | None) -> None:
    """Remember a secret a fake issued or received."""
    if secret and len(secret) >= MIN_LENGTH:
        _noted.add(secret)


def note_authorization(header: str | None) -> None:
    """Remember the credential of an `Authorization: <scheme> <credential>` header."""
    if header:
        note(header.partition(" ")[2].strip() or header)


def known() -> frozenset[str]:
    return frozenset(_noted)


def forget() -> None:
    """Start over (the scan does it before each test, so it only checks that test's secrets)."""
    _noted.clear()
