"""What every UI tab receives: the home folder, the server-side role check and the page around it.

The tab contract: each tab module has `build(ctx: UIContext) -> None`, called
inside its gr.Tab; whatever it needs of the page (the Blocks, the header it
refreshes, the blocks only some roles see) comes in `ctx.page`. Handlers take
ctx too, never the page, so tests call them with `UIContext(paths, roles)`.

Roles are enforced here, in the handlers, not by hiding buttons: a request
from an annotator to a lead-only handler fails even if crafted by hand. The
page also hides what a role may not use (`Page.only_for`), so an annotator is
not offered buttons that only end in "ask a lead".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gradio as gr

from activelearn.config import Paths
from activelearn.ui.components import user_error

ROLES = ("annotator", "lead")
#: Who may run what. Annotators label and review; leads also import, train, activate, export, add classes.
PERMISSIONS = {
    "label": ("annotator", "lead"),
    "review": ("annotator", "lead"),
    "import": ("lead",),
    "train": ("lead",),
    "activate": ("lead",),
    "export": ("lead",),
    "classes": ("lead",),
    "fix-labels": ("lead",),
    "holdout": ("lead",),     # which items are in the holdout: annotators label those like any other
}
#: How a refused action reads in the error message.
ACTION_PHRASES = {
    "label": "label items", "review": "view reviews", "import": "import photos",
    "train": "train models or cancel training", "activate": "activate model versions",
    "export": "export datasets", "classes": "add classes", "fix-labels": "resolve label errors",
    "holdout": "see which items are in the holdout",
}
#: Without --auth/--users the app is single-user: that user is a lead.
LOCAL_USER = "local"


@dataclass
class Page:
    """The page around the tabs: built by activelearn.ui before any tab, handed to each in ctx.page."""

    demo: gr.Blocks
    header: gr.HTML
    header_html: Callable[[gr.Request | None], str]    # the header's content for a request
    hide_until_load: bool = False                      # with logins: gated blocks start hidden
    tab: gr.Tab | None = None                          # the tab being built; its .select fires on opening it
    gated: list[tuple[gr.blocks.Block, str]] = field(default_factory=list)

    def only_for(self, action: str, *blocks: gr.blocks.Block) -> None:
        """Show `blocks` only to roles allowed `action`: set when the page loads, and the handlers check again."""
        for block in blocks:
            if self.hide_until_load:
                block.visible = False
            self.gated.append((block, action))


@dataclass(frozen=True)
class UIContext:
    paths: Paths
    roles: dict[str, str] = field(default_factory=dict)   # username -> role; empty = no auth
    page: Page | None = None                              # set while the app is built; None in handler tests

    def user(self, request: gr.Request | None) -> str:
        """The logged-in user (recorded on every label event)."""
        name = getattr(request, "username", None) if request is not None else None
        return name or LOCAL_USER

    def role(self, request: gr.Request | None) -> str:
        if not self.roles:
            return "lead"
        return self.roles.get(self.user(request), "annotator")

    def allowed(self, request: gr.Request | None, action: str) -> bool:
        return self.role(request) in PERMISSIONS[action]

    def require(self, request: gr.Request | None, action: str) -> str:
        """Return the user name, or raise a user error if their role may not perform `action`."""
        if not self.allowed(request, action):
            raise user_error(f"{self.user(request)} ({self.role(request)}) may not {ACTION_PHRASES[action]}: "
                             "ask a lead")
        return self.user(request)
