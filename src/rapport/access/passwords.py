"""Password hashing with argon2id (argon2-cffi's defaults: RFC 9106's second choice).

Passwords are guessable, so the hash is deliberately slow and salted; API keys are random
and use SHA-256 instead (access/keys.py).
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Checked against when the email is unknown, so a wrong email takes as long as a wrong
# password and the login form does not tell which emails have accounts.
_DUMMY = _hasher.hash("no such user: this hash only evens out the time")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when the hash was made with weaker parameters than today's: rehash at login."""
    try:
        return _hasher.check_needs_rehash(stored)
    except InvalidHashError:
        return True
