"""Who may log in to the app, and with which role.

Users come from repeated ``--auth user:password[:role]`` options and/or a
``--users`` CSV file (header ``user,password,role``; role optional). The
result feeds both Gradio's login page (passwords) and UIContext (roles), so a
user's role is decided once, here, and enforced server-side by the handlers.
"""

from __future__ import annotations

import csv
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

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


def password_checker(users: Iterable[User]) -> Callable[[str, str], bool]:
    """Gradio's auth= callable; compares in constant time so timing does not leak passwords."""
    passwords = {u.name: u.password.encode() for u in users}

    def check(name: str, password: str) -> bool:
        expected = passwords.get(name)
        return expected is not None and hmac.compare_digest(expected, password.encode())

    return check
