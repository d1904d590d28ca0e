"""Who may log in to the app, and with which role.

Users come from repeated ``--auth user:password[:role]`` options and/or a
``--users`` CSV file (header ``user,password,role``; role optional). The
result feeds both Gradio's login page (passwords) and UIContext (roles), so a
user's role is decided once, here, and enforced server-side by the handlers.

Logins are throttled (`LoginThrottle`): Gradio 6 calls ``auth(username, password)``
with nothing about the request (routes.py, ``/login``), awaiting it when it is a
coroutine function, so the checker is async (its back-off sleeps do not block the
event loop) and learns the client's address from `activelearn.ui.security`'s
middleware through a context variable.
"""

from __future__ import annotations

import asyncio
import contextvars
import csv
import hmac
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import HTTPException

from activelearn.errors import ActiveLearnError
from activelearn.ui.context import ROLES

DEFAULT_ROLE = "annotator"


@dataclass(frozen=True)
class User:
    name: str
    password: str
    role: str = DEFAULT_ROLE


def _checked(name: str, password: str, role: str, where: str) -> User:
    name, role = name.strip(), (role.strip() or DEFAULT_ROLE)
    if not name or not password:
        raise ActiveLearnError(f"{where}: a user needs a name and a non-empty password")
    if role not in ROLES:
        raise ActiveLearnError(f"{where}: unknown role {role!r}; use one of {', '.join(ROLES)}")
    return User(name, password, role)


def parse_auth_spec(spec: str) -> User:
    """``user:password[:role]`` (the role defaults to annotator; a password may not contain ':')."""
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise ActiveLearnError(f"--auth {spec.split(':')[0]}:...: expected user:password[:role]")
    return _checked(parts[0], parts[1], parts[2] if len(parts) == 3 else "", f"--auth {parts[0]}")


def load_users_file(path: str | Path) -> list[User]:
    """Read a CSV with columns user,password[,role]; blank lines and #-comments are ignored."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ActiveLearnError(f"cannot read users file {path}: {exc.strerror or exc}") from exc
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    missing = {"user", "password"} - {(f or "").strip() for f in reader.fieldnames or []}
    if missing:
        raise ActiveLearnError(f"users file {path}: the header must name user,password[,role] "
                               f"(missing: {', '.join(sorted(missing))})")
    users = []
    for number, row in enumerate(reader, start=2):
        row = {(k or "").strip(): (v or "") for k, v in row.items()}
        users.append(_checked(row["user"], row["password"].strip(), row.get("role", ""),
                              f"users file {path}, line {number}"))
    return users


def collect_users(auth_specs: Iterable[str] = (), users_file: str | Path | None = None) -> list[User]:
    """All users from both sources; a name given twice is an error, not a silent override."""
    users = [parse_auth_spec(s) for s in auth_specs]
    if users_file:
        users += load_users_file(users_file)
    seen: set[str] = set()
    for user in users:
        if user.name in seen:
            raise ActiveLearnError(f"user {user.name!r} is defined twice")
        seen.add(user.name)
    return users


def roles_of(users: Iterable[User]) -> dict[str, str]:
    """username -> role, the mapping UIContext enforces."""
    return {u.name: u.role for u in users}


#: The client address of the request being served, set by security.RequestGuard (None outside a request).
CLIENT_ADDRESS: contextvars.ContextVar[str | None] = contextvars.ContextVar("activelearn_client_address",
                                                                           default=None)
log = logging.getLogger("activelearn.auth")
_MAX_TRACKED_KEYS = 10_000


@dataclass
class LoginThrottle:
    """Back-off and temporary lockout after failed logins, per user name and per client address.

    Each failure within ``window_s`` doubles the wait before the answer (from ``base_delay_s``
    up to ``max_delay_s``); ``max_failures`` of them lock the name (or address) for
    ``lockout_s``, during which even the right password is refused, after the same wait.
    Names that are no user share one key, so made-up names cannot fill memory or lock out
    a real user. ``clock`` and ``sleep`` are injectable so tests need not wait.
    """

    max_failures: int = 5
    window_s: float = 900.0
    lockout_s: float = 300.0
    base_delay_s: float = 0.5
    max_delay_s: float = 4.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    _failures: dict[str, deque] = field(default_factory=dict, init=False, repr=False)
    _locked_until: dict[str, float] = field(default_factory=dict, init=False, repr=False)

    def locked_for(self, keys: Iterable[str]) -> float:
        """Seconds left on the longest lockout among ``keys`` (0 when none is locked)."""
        now = self.clock()
        return max([self._locked_until.get(key, 0.0) - now for key in keys] + [0.0])

    def delay(self, keys: Iterable[str]) -> float:
        """The wait before answering a failed attempt, from the recent failures of the busiest key."""
        recent = max([len(self._recent(key)) for key in keys] + [0])
        return 0.0 if recent == 0 else min(self.max_delay_s, self.base_delay_s * 2 ** (recent - 1))

    def failed(self, keys: Iterable[str]) -> list[str]:
        """Count a failure against every key; returns the keys it locked."""
        now, locked = self.clock(), []
        if len(self._failures) > _MAX_TRACKED_KEYS:  # many addresses: forget those with nothing recent
            for stale in [key for key in self._failures if not self._recent(key)]:
                del self._failures[stale]
        for key in keys:
            recent = self._recent(key)
            recent.append(now)
            if len(recent) >= self.max_failures:
                self._locked_until[key] = now + self.lockout_s
                recent.clear()       # the count starts again once the lockout ends
                locked.append(key)
        return locked

    def succeeded(self, user_key: str) -> None:
        """A right password clears the user's failures (not the address's: one valid account must not
        reset the count of an address trying others)."""
        self._failures.pop(user_key, None)

    def _recent(self, key: str) -> deque:
        now = self.clock()
        recent = self._failures.setdefault(key, deque())
        while recent and now - recent[0] > self.window_s:
            recent.popleft()
        if self._locked_until.get(key, now) <= now:
            self._locked_until.pop(key, None)
        return recent


def password_checker(users: Iterable[User], throttle: LoginThrottle | None = None,
                     ) -> Callable[[str, str], Awaitable[bool]]:
    """Gradio's auth= callable: constant-time comparison, behind a LoginThrottle.

    During a lockout it answers HTTP 429 with a sentence saying how long to wait; every
    failure is logged (user name and address, never the password).
    """
    passwords = {u.name: u.password.encode() for u in users}
    throttle = throttle or LoginThrottle()

    async def check(name: str, password: str) -> bool:
        user_key = f"user:{name}" if name in passwords else "user:<unknown>"
        address = CLIENT_ADDRESS.get()
        keys = [user_key] + ([f"address:{address}"] if address else [])
        wait = throttle.locked_for(keys)
        if wait > 0:
            log.warning("login refused during lockout: user %r from %s", name, address or "unknown address")
            await throttle.sleep(throttle.max_delay_s)
            raise HTTPException(status_code=429, detail=(
                f"Too many failed logins: try again in {max(1, round(wait / 60))} minute(s)."))
        expected = passwords.get(name)
        if expected is not None and hmac.compare_digest(expected, password.encode()):
            throttle.succeeded(user_key)
            return True
        delay = throttle.delay(keys)
        locked = throttle.failed(keys)
        log.warning("failed login: user %r from %s%s", name, address or "unknown address",
                    f"; locked for {throttle.lockout_s:g} s: {', '.join(locked)}" if locked else "")
        await throttle.sleep(delay)
        return False

    return check
