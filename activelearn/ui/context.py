"""What every UI tab receives: the home folder and the server-side role check.

Roles are enforced here, in the handlers, not by hiding buttons: a request
from an annotator to a lead-only handler fails even if crafted by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from activelearn.config import Paths

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
}
#: How a refused action reads in the error message.
ACTION_PHRASES = {
    "label": "label items", "review": "view reviews", "import": "import photos",
    "train": "train models or cancel training", "activate": "activate model versions",
    "export": "export datasets", "classes": "add classes", "fix-labels": "resolve label errors",
}
#: Without --auth/--users the app is single-user: that user is a lead.
LOCAL_USER = "local"


@dataclass(frozen=True)
class UIContext:
    paths: Paths
    roles: dict[str, str] = field(default_factory=dict)   # username -> role; empty = no auth

    def user(self, request: gr.Request | None) -> str:
        """The logged-in user (recorded on every label event)."""
        name = getattr(request, "username", None) if request is not None else None
        return name or LOCAL_USER

    def role(self, request: gr.Request | None) -> str:
        if not self.roles:
            return "lead"
        return self.roles.get(self.user(request), "annotator")

    def require(self, request: gr.Request | None, action: str) -> str:
        """Return the user name, or raise gr.Error if their role may not perform `action`."""
        role = self.role(request)
        if role not in PERMISSIONS[action]:
            raise gr.Error(f"{self.user(request)} ({role}) may not {ACTION_PHRASES[action]}: ask a lead", print_exception=False)
        return self.user(request)
