"""The Gradio app: a header (user, model, counts, job progress) over the tabs.

`build_app` lays the page out; `launch_app` serves it (auth, the folders Gradio
may serve; the Label tab brings its own keyboard shortcuts); `start_seed_if_needed`
starts the seed training on a home with no model, so a first launch shows progress
instead of an error (and a lead gets a Retry button when that training failed).

Every tab follows one contract (activelearn.ui.context): `build(ctx)` inside its
gr.Tab, the page in `ctx.page`. Each tab is shown only to the roles that may use
it (TABS): an annotator sees Label, Browse and a read-only Review, not Import,
Train or Export; the handlers refuse them anyway.
Nothing here reaches the internet: fonts are Gradio's bundled ones, analytics
are off and there is no share link.
"""

from __future__ import annotations

import html
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402 - the environment must be set first

from activelearn import jobs, registry, store  # noqa: E402
from activelearn.config import Paths  # noqa: E402
from activelearn.errors import ActiveLearnError, JobError  # noqa: E402
from activelearn.jobs import Job  # noqa: E402
from activelearn.ui import browse_tab, export_tab, import_tab, label_tab, review_tab, train_tab  # noqa: E402
from activelearn.ui.auth import User  # noqa: E402
from activelearn.ui.components import job_progress  # noqa: E402
from activelearn.ui.context import PERMISSIONS, ROLES, Page, UIContext  # noqa: E402
from activelearn.ui.security import launch_options  # noqa: E402

#: The tabs in order: (title, module with build(ctx), the action a role must be allowed to see the tab).
TABS = (("Label", label_tab, "label"), ("Browse", browse_tab, "label"), ("Import", import_tab, "import"),
        ("Train", train_tab, "train"), ("Review", review_tab, "review"), ("Export", export_tab, "export"))
HEADER_POLL_S = 2.0

CSS = """
#al-header { padding: 6px 10px; border-radius: 8px; background: var(--block-background-fill); }
#al-header .al-row { display: flex; flex-wrap: wrap; gap: 18px; align-items: center; }
#al-header progress { width: 220px; height: 14px; vertical-align: middle; }
#al-header .al-warn { color: var(--error-text-color, #b91c1c); }
#al-preview img { image-rendering: pixelated; }
#al-gallery .caption-label { font-size: 0.9em; }
/* table headers wrap between words, never inside one ("versio|n") */
.table-wrap th .header { word-break: normal; overflow-wrap: normal; }
"""


def start_seed_if_needed(paths: Paths) -> Job | None:
    """With no active model, start (or find) the seed training job; returns it, or None if a model exists."""
    if registry.active_version(paths.models) is not None:
        return None
    db = store.open_db(paths.db)
    running = jobs.active_job(db)
    if running is not None:
        return running
    try:
        return jobs.start_training(paths, {"mode": "scratch"})
    except JobError:  # another process started one a moment ago
        return jobs.active_job(db)


def seed_retry_visible(ctx: UIContext, request: gr.Request | None) -> bool:
    """Offer Retry to a lead while there is no model and no training: the seed job failed or was stopped."""
    if ctx.role(request) != "lead" or registry.active_version(ctx.paths.models) is not None:
        return False
    return jobs.active_job(store.open_db(ctx.paths.db), jobs.TRAIN) is None


def retry_seed(ctx: UIContext, request: gr.Request | None) -> tuple[str, dict]:
    """Start the seed training again (e.g. after the Fashion-MNIST files were put in place); lead only."""
    ctx.require(request, "train")
    if start_seed_if_needed(ctx.paths) is None:
        gr.Info("a model is active already: nothing to retry")
    return header_html(ctx, request), gr.update(visible=seed_retry_visible(ctx, request))


#: Polls and decisions all redraw the header, and their answers can arrive out of order: a poll
#: that read the counts just before a decision may land just after it. Each header carries the
#: newest label event it has seen (data-seq); the page keeps the newest and puts it back over an older one.
HEADER_ORDER_JS = """(html) => {
  const seq = Number((/data-seq='(\\d+)'/.exec(html || '') || [0, -1])[1]);
  if (seq < (window.alHeaderSeq ?? -1)) return window.alHeader;
  window.alHeaderSeq = seq;
  window.alHeader = html;
  return html;
}"""


def header_html(ctx: UIContext, request: gr.Request | None) -> str:
    """Who is working, on which model, with how much data, and any training in progress."""
    db = store.open_db(ctx.paths.db)
    seq = store.last_event_id(db)      # read before the counts, so they are at least this new
    counts = store.status(db).as_dict()
    version = registry.active_version(ctx.paths.models)
    recent = jobs.list_jobs(db, limit=1)
    shown = [job for job in (jobs.active_job(db, jobs.TRAIN), jobs.active_job(db, jobs.EMBED)) if job]
    shown = shown or recent[:1]   # nothing running: the last outcome
    model = (f"model <b>{html.escape(version)}</b> ({html.escape(_kind(ctx, version))})" if version
             else "<span class='al-warn'>no model yet</span>")
    items = sum(counts["items"].values())
    return (f"<div class='al-row' data-seq='{seq}'><span>user <b>{html.escape(ctx.user(request))}</b> "
            f"({html.escape(ctx.role(request))})</span><span>{model}</span>"
            f"<span>{items:,} items · {counts['labeled']:,} labeled · {counts['unlabeled_pool']:,} "
            f"unlabeled</span>{''.join(job_progress(job, seeding=version is None) for job in shown)}</div>")


def _kind(ctx: UIContext, version: str) -> str:
    try:
        card = registry.read_card(ctx.paths.models, version)
    except ActiveLearnError:
        return "unreadable card"
    backbone = (card.get("backbone") or {}).get("name")
    return registry.model_kind(card) + (f", {backbone}" if backbone else "")


def build_app(paths: Paths, roles: dict[str, str]) -> gr.Blocks:
    """The whole page; `roles` maps user -> role (empty: single local user, a lead)."""
    store.open_db(paths.db)  # create or migrate before any tab reads it
    with gr.Blocks(title="activelearn") as demo:
        header = gr.HTML(elem_id="al-header")
        header.change(None, header, header, js=HEADER_ORDER_JS)
        # with logins, what a role may not use stays hidden until the page knows who loaded it
        ctx = UIContext(paths, dict(roles), Page(demo, header, lambda request: header_html(ctx, request),
                                                 hide_until_load=bool(roles)))
        retry = gr.Button("Retry the seed training", visible=False, size="sm", elem_id="al-retry-seed")
        with gr.Tabs():
            for title, module, action in TABS:
                with gr.Tab(title, id=title.lower(), elem_id=f"al-tab-{title.lower()}") as tab:
                    ctx.page.tab = tab
                    module.build(ctx)
                if set(PERMISSIONS[action]) != set(ROLES):   # a tab not every role may use
                    ctx.page.only_for(action, tab)

        def on_header(request: gr.Request):
            return header_html(ctx, request)

        def on_retry_state(request: gr.Request):
            return gr.update(visible=seed_retry_visible(ctx, request))

        def on_retry(request: gr.Request):
            return retry_seed(ctx, request)

        def on_roles(request: gr.Request):
            return [gr.update(visible=ctx.allowed(request, action)) for _, action in ctx.page.gated]

        # the header and role polls are short reads: they never queue behind other events
        demo.load(on_header, None, header, api_name="header", show_progress="hidden", concurrency_limit=None)
        demo.load(on_roles, None, [block for block, _ in ctx.page.gated], api_visibility="private",
                  show_progress="hidden")
        timer = gr.Timer(HEADER_POLL_S)
        timer.tick(on_header, None, header, api_visibility="private", show_progress="hidden",
                   concurrency_limit=None)
        for event in (demo.load, timer.tick):
            event(on_retry_state, None, retry, api_visibility="private", show_progress="hidden",
                  concurrency_limit=None)
        retry.click(on_retry, None, [header, retry], api_name="retry_seed")
    return demo


def launch_app(app: gr.Blocks, paths: Paths, users: list[User], *, host: str = "127.0.0.1",
               port: int = 7860, prevent_thread_lock: bool = False, quiet: bool = False) -> tuple:
    """Serve the app: Gradio login when users are given; files, uploads and logins as ui.security limits them."""
    return app.launch(
        server_name=host, server_port=port, share=False, prevent_thread_lock=prevent_thread_lock,
        **launch_options(app, paths, users), css=CSS, ssr_mode=False, footer_links=["api"], show_error=True, quiet=quiet, enable_monitoring=False, mcp_server=False,
    )
