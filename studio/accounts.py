"""Accounts: users with roles, argon2 password hashes, and a login check that slows down guessing.

Roles: `admin` (everything, every clip), `member` (generates; edits and deletes their own clips),
`viewer` (sees the gallery; cannot generate, edit or delete).
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from storage.models import ROLES, User
from storage.repositories import QueryError, UserRepository

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
EXTERNAL = "!signed-in-elsewhere"  # the password hash of an account Hugging Face signs in: no password works
MIN_PASSWORD = 8
MAX_FAILURES = 5  # per user name within FAILURE_WINDOW_S; then logins of that name wait LOCKOUT_S
FAILURE_WINDOW_S = 60.0
LOCKOUT_S = 60.0


class NotAllowed(PermissionError):
    """The signed-in user may not do this (their role, or a clip someone else made)."""


@dataclass(frozen=True)
class Account:
    name: str
    role: str

    @property
    def can_generate(self) -> bool:
        return self.role in ("admin", "member")

    def may_change(self, author: str | None) -> bool:
        """Edit or delete a clip made by `author` (None: made before accounts; admins only)."""
        return self.role == "admin" or (self.role == "member" and author is not None and author == self.name)


class AccountService:
    def __init__(self, session_factory: Callable, clock: Callable[[], float] = time.monotonic):
        self._session_factory = session_factory
        self._hasher = PasswordHasher()
        self._clock = clock
        self._failures: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()

    # ---- managing users (the `studio users` command) ---------------------------------------------
    def add(self, name: str, password: str, role: str = "member") -> Account:
        _check_name(name)
        _check_role(role)
        _check_password(password)
        with self._session_factory() as session, session.begin():
            UserRepository(session).add(User(name=name, role=role, password_hash=self._hasher.hash(password)))
        return Account(name, role)

    def set_password(self, name: str, password: str) -> None:
        _check_password(password)
        with self._session_factory() as session, session.begin():
            user = UserRepository(session).get(name)
            if user is None:
                raise QueryError("name", f"no user {name!r}")
            user.password_hash = self._hasher.hash(password)

    def remove(self, name: str) -> bool:
        with self._session_factory() as session, session.begin():
            return UserRepository(session).remove(name)

    def list(self) -> list[Account]:
        with self._session_factory() as session:
            return [Account(u.name, u.role) for u in UserRepository(session).list()]

    def count(self) -> int:
        with self._session_factory() as session:
            return UserRepository(session).count()

    def get(self, name: str | None) -> Account | None:
        if not name:
            return None
        with self._session_factory() as session:
            user = UserRepository(session).get(name)
            return None if user is None else Account(user.name, user.role)

    def sign_in_external(self, name: str, role: str) -> Account:
        """Someone Hugging Face signed in: their account is made at the first sign-in, and its role follows
        the Space's settings at every one. An account of that name made by `studio users add` keeps its role."""
        _check_name(name)
        _check_role(role)
        with self._session_factory() as session:
            user = UserRepository(session).get(name)
            if user is not None and (user.password_hash != EXTERNAL or user.role == role):
                return Account(user.name, user.role)
        with self._session_factory() as session, session.begin():
            repo = UserRepository(session)
            user = repo.get(name)
            if user is None:
                repo.add(User(name=name, role=role, password_hash=EXTERNAL))
            elif user.password_hash == EXTERNAL:
                user.role = role
            else:
                return Account(user.name, user.role)
        return Account(name, role)

    # ---- logging in ------------------------------------------------------------------------------
    def login(self, name: str, password: str) -> bool:
        """True for the right password. After MAX_FAILURES wrong ones for a name within a minute, every
        attempt for that name fails for LOCKOUT_S, right password or not (the caller cannot tell)."""
        if not isinstance(name, str) or not isinstance(password, str) or len(password) > 1024:
            return False
        now = self._clock()
        with self._lock:
            recent = self._failures[name]
            while recent and now - recent[0] > max(FAILURE_WINDOW_S, LOCKOUT_S):
                recent.popleft()
            if len(recent) >= MAX_FAILURES and now - recent[-1] < LOCKOUT_S:
                return False
        with self._session_factory() as session:
            user = UserRepository(session).get(name) if NAME.match(name) else None
            stored = user.password_hash if user is not None else None
        ok = False
        try:
            # a missing user costs a hash too, so timing does not tell which names exist
            ok = self._hasher.verify(stored or _DUMMY_HASH, password) and stored is not None
        except (VerificationError, InvalidHashError):
            ok = False
        with self._lock:
            if ok:
                self._failures.pop(name, None)
            else:
                self._failures[name].append(now)
        return ok


_DUMMY_HASH = PasswordHasher().hash("not a password of anyone")


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise QueryError("name", f"{name!r} is not a user name: letters, digits, '.', '_' or '-', at most 64")


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise QueryError("role", f"{role!r} is not one of {', '.join(ROLES)}")


def _check_password(password: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise QueryError("password", f"must be at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise QueryError("password", "is longer than 1024 characters")
