"""What the server lets through: files it may serve, uploads, cache cleaning and login throttling.

`launch_options` gives the security-related arguments of ``Blocks.launch``:

- ``allowed_paths``: only the image store and the gallery thumbnails. Exports are
  not there: a path on Gradio's file route under ``data/exports`` answers 403, so an
  export reaches a lead only through the Export tab's handler (Gradio copies what a
  handler returns into its cache under a per-process random hash). A handler may
  return files from the working directory, the temp folder or ``allowed_paths``:
  `downloadable` puts an export there without a copy. ``labels.db`` and ``models/``
  are in ``blocked_paths``, which wins over every other rule (exports cannot be:
  that would refuse the handler's own return too).
- ``max_file_size``: uploads over ``MAX_UPLOAD_BYTES`` get HTTP 413 before they are
  stored; bulk imports go through a server folder instead.
- ``auth``: the throttled password check of `activelearn.ui.auth`.
- ``app_kwargs``: the `RequestGuard` middleware, which tells the password check the
  client's address and refuses uploads (HTTP 403) from anyone but a lead.

The same two folders are also Gradio *static paths*: a photo or thumbnail a handler returns
is then served from where it is instead of being checked against every rule, hashed and
copied into Gradio's cache on each answer (measured: about a tenth of the server's time per
label decision). It changes nothing about who may fetch them: the file route asks for a login
either way, and these folders were already allowed.

It also sets the Blocks' ``delete_cache`` (a Blocks setting, not a launch argument,
read when the server starts): every ``CACHE_SWEEP_S`` Gradio deletes the files it
cached (uploads, images handed to the page) older than ``CACHE_MAX_AGE_S``, and all
of them when the server stops.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from activelearn.config import Paths
from activelearn.ui.auth import CLIENT_ADDRESS, LoginThrottle, User, password_checker, roles_of
from activelearn.ui.components import thumbs_dir

MAX_UPLOAD_BYTES = 100 * 1024 * 1024
CACHE_SWEEP_S = 600
CACHE_MAX_AGE_S = 3600
AUTH_MESSAGE = "activelearn: log in with the user name and password your lead gave you."
#: Gradio 6's upload route, below its API prefix.
UPLOAD_PATH = "/gradio_api/upload"


class RequestGuard:
    """ASGI middleware: records the client address for the login check and lets only leads upload.

    The upload route is Gradio's own (``POST /gradio_api/upload``), open to every logged-in
    user; the user is found the way Gradio finds them, from the access-token cookie.
    Without logins (``roles`` empty) the single local user is a lead and may upload.
    """

    def __init__(self, app: ASGIApp, roles: dict[str, str]):
        self.app, self.roles = app, dict(roles)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = CLIENT_ADDRESS.set(client[0] if client else None)
        try:
            if self._refused_upload(scope):
                await _plain(send, 403, "only a lead may upload files")
                return
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)

    def _refused_upload(self, scope: Scope) -> bool:
        if not self.roles or scope["method"] != "POST":
            return False
        if not scope["path"].rstrip("/").endswith(UPLOAD_PATH):
            return False
        return self.roles.get(_cookie_user(scope) or "") != "lead"


def _cookie_user(scope: Scope) -> str | None:
    """The logged-in user of a request, from Gradio's access-token cookie (None if not logged in)."""
    app = scope.get("app")
    tokens, cookie_id = getattr(app, "tokens", None), getattr(app, "cookie_id", None)
    if tokens is None or cookie_id is None:
        return None
    cookies = SimpleCookie()
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            try:
                cookies.load(value.decode("latin-1"))
            except CookieError:
                return None
    for name in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
        if name in cookies:
            return tokens.get(cookies[name].value)
    return None


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def launch_options(app: gr.Blocks, paths: Paths, users: Sequence[User], *,
                   max_upload_bytes: int = MAX_UPLOAD_BYTES, throttle: LoginThrottle | None = None,
                   delete_cache: tuple[int, int] = (CACHE_SWEEP_S, CACHE_MAX_AGE_S)) -> dict:
    """The security-related keyword arguments of ``app.launch``; also sets ``app.delete_cache``."""
    app.delete_cache = delete_cache
    served = [str(paths.images), str(thumbs_dir(paths))]
    gr.set_static_paths(served)
    return {
        "auth": password_checker(users, throttle) if users else None,
        "auth_message": AUTH_MESSAGE,
        "allowed_paths": served,
        "blocked_paths": [str(paths.db), str(paths.models)],
        "max_file_size": max_upload_bytes,
        "app_kwargs": {"middleware": [Middleware(RequestGuard, roles=roles_of(users))]},
    }


def downloadable(files: Sequence[str | os.PathLike]) -> list[str]:
    """Paths a handler may return for download: hard links (copies across file systems) in a new temp folder.

    Gradio refuses to hand out a file outside the working directory, the temp folder and
    ``allowed_paths``, and exports must stay out of ``allowed_paths``.
    """
    folder = Path(tempfile.mkdtemp(prefix="activelearn-download-"))
    offered = []
    for file in files:
        target = folder / Path(file).name
        try:
            os.link(file, target)
        except OSError:
            shutil.copy2(file, target)
        offered.append(str(target))
    return offered
