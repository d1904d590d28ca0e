"""Browse tab: every item in a gallery, filtered and paged, and any item opened to relabel it.

Filters: the item's current state and label, the class the active model
predicts, who gave the current label, the file name, when it was decided,
holdout or pool (leads only: an annotator is not told which items are in the
holdout, so they label those like any other), and flagged items (near-
duplicates, open label issues). Pages are keyset pages by item id
(`store.browse_items`), so the thousandth page of 100,000 items loads as fast
as the first; the match count is taken once per filter change.

Relabeling goes through `labeling.decide`, the function behind the Label tab:
the decision is a new label event under the user's name with the model's view
at that moment; earlier events stay in labels.db. Annotators may relabel, as in
the Label tab: fixing a wrong label (a folder pre-label, a slip of the key, a
colleague's mistake) is labeling work, and the append-only log keeps who
changed what, so a lead can audit it with the annotator filter here and undo
it. An item another annotator has on screen is refused (the store checks the
lease), so two people never overwrite each other unseen.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from activelearn import labeling, store
from activelearn.ui.components import annotators, conversion_image, thumbnail, user_error, user_errors
from activelearn.ui.context import UIContext

PAGE_SIZE = 48
ANY = "any"
STATUS_CHOICES = [("Any state", ANY), ("Unlabeled", "unlabeled"), ("Labeled", "labeled"),
                  ("Skipped", "skipped"), ("Rejected (not a product)", "rejected")]
SPLIT_CHOICES = [("Pool and holdout", ANY), ("Pool", "pool"), ("Holdout", "holdout")]
FLAG_CHOICES = [("Flagged or not", ANY), ("Flagged", "flagged"), ("Not flagged", "not-flagged")]
ANY_CLASS = -1
ANYONE = "Anyone"
#: What a tile or the item's details say for an item without a class.
STATE_WORDS = {None: "unlabeled", "skip": "skipped", "reject": "rejected"}
#: Tiles are narrow: an unlabeled item's caption is its id alone (the note says so).
TILE_WORDS = {None: "", "skip": "skipped", "reject": "rejected"}


@dataclass(frozen=True)
class BrowseFilters:
    """The filters as store.browse_items takes them, plus the active model's predicted class."""

    status: str | None = None
    class_id: int | None = None
    predicted_id: int | None = None
    annotator: str | None = None
    name_contains: str | None = None
    split: str | None = None
    since: str | None = None
    until: str | None = None
    flagged: bool | None = None


@dataclass
class Paging:
    """One browser tab's place in the gallery: the filters, where each visited page starts, what is shown."""

    filters: BrowseFilters = field(default_factory=BrowseFilters)
    starts: list[int | None] = field(default_factory=lambda: [None])   # after_id of each page so far
    ids: list[int] = field(default_factory=list)                       # the items on the current page
    total: int = 0

    @property
    def page(self) -> int:
        return len(self.starts)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // PAGE_SIZE))


class BrowseView(NamedTuple):
    """The gallery, in the order of the outputs it updates."""

    paging: Paging
    gallery: Any
    note: Any
    previous: Any
    next: Any


class ItemView(NamedTuple):
    """The opened item, in the order of the outputs it updates."""

    item_id: Any
    original: Any
    conversion: Any
    details: Any
    new_class: Any


def read_filters(status: str | None, class_value: int | None, predicted_value: int | None,
                 annotator: str | None, name: str | None, since: str | None, until: str | None,
                 split: str | None, flagged: str | None) -> BrowseFilters:
    """The widgets' values as filters ('any' and blanks filter nothing)."""
    def chosen(value: Any) -> Any:
        return None if value in (None, "", ANY, ANYONE, ANY_CLASS) else value

    flag = chosen(flagged)
    return BrowseFilters(status=chosen(status), class_id=chosen(class_value), predicted_id=chosen(predicted_value),
                         annotator=chosen((annotator or "").strip()), name_contains=chosen((name or "").strip()),
                         split=chosen(split), since=chosen((since or "").strip()), until=chosen((until or "").strip()),
                         flagged=None if flag is None else flag == "flagged")


def _store_filters(ws: labeling.Workspace, filters: BrowseFilters) -> dict[str, Any]:
    """Keyword arguments for store.browse_items / count_items; a predicted class becomes the ids the
    active model puts in it (from its cached scores)."""
    kwargs = asdict(filters)
    predicted = kwargs.pop("predicted_id")
    if predicted is not None:
        scores = ws.scores()
        if scores is None:
            raise user_error("no active model yet: the predicted-class filter needs one")
        hits = (scores.probs.argmax(axis=1) == int(predicted)) if int(predicted) < scores.probs.shape[1] else \
            np.zeros(len(scores.item_ids), bool)
        kwargs["item_ids"] = scores.item_ids[hits].tolist()
    return kwargs


def _caption(row: dict, show_split: bool) -> str:
    label = row["class_name"] if row["action"] in ("confirm", "correct") else TILE_WORDS.get(row["action"], "?")
    return " ".join(part for part in (f"#{row['id']}", "H" if show_split and row["split"] == "holdout" else "",
                                      label) if part)


def _checked(ctx: UIContext, filters: BrowseFilters, request: gr.Request | None) -> None:
    ctx.require(request, "label")
    if filters.split is not None:
        ctx.require(request, "holdout")


def show_page(ctx: UIContext, paging: Paging, request: gr.Request | None) -> BrowseView:
    """The page that starts after paging.starts[-1], with the match count taken when paging.total is unset."""
    _checked(ctx, paging.filters, request)
    with user_errors():
        ws = labeling.workspace(ctx.paths)
        kwargs = _store_filters(ws, paging.filters)
        if paging.page == 1:
            paging.total = store.count_items(ws.db, **kwargs)
        rows = store.browse_items(ws.db, **kwargs, after_id=paging.starts[-1], limit=PAGE_SIZE)
    paging.ids = [row["id"] for row in rows]
    lead = ctx.allowed(request, "holdout")
    gallery = [(thumbnail(ctx.paths, row), _caption(row, lead)) for row in rows]
    first = (paging.page - 1) * PAGE_SIZE
    if rows:
        note = (f"**{paging.total:,} items match** · page {paging.page} of {paging.pages} "
                f"(#{rows[0]['id']} to #{rows[-1]['id']}, items {first + 1:,}–{first + len(rows):,}) · "
                "a caption without a class is an unlabeled item" + (" · H = holdout" if lead else "")
                + " · click a photo to open it")
    else:
        note = "**No item matches these filters.**"
    more = first + len(rows) < paging.total
    return BrowseView(paging, gallery, note, gr.update(interactive=paging.page > 1), gr.update(interactive=more))


def first_page(ctx: UIContext, filters: BrowseFilters, request: gr.Request | None) -> BrowseView:
    """New filters: count the matches and show their first page."""
    return show_page(ctx, Paging(filters), request)


def next_page(ctx: UIContext, paging: Paging | None, request: gr.Request | None) -> BrowseView:
    paging = paging or Paging()
    if paging.ids and (paging.page - 1) * PAGE_SIZE + len(paging.ids) < paging.total:
        paging.starts.append(paging.ids[-1])
    return show_page(ctx, paging, request)


def previous_page(ctx: UIContext, paging: Paging | None, request: gr.Request | None) -> BrowseView:
    paging = paging or Paging()
    if len(paging.starts) > 1:
        paging.starts.pop()
    return show_page(ctx, paging, request)


def open_item(ctx: UIContext, item_id: int | None, request: gr.Request | None) -> ItemView:
    """One item, large: the original and its 28x28 conversion, its current label, the model's view."""
    ctx.require(request, "label")
    if item_id is None:
        raise user_error("choose an item: click a photo in the gallery")
    with user_errors():
        ws = labeling.workspace(ctx.paths)
        item = store.get_item(ws.db, int(item_id))
        (row,) = store.browse_items(ws.db, item_ids=[int(item_id)], limit=1)
        entry = labeling.lookup(ws, int(item_id))
    lead = ctx.allowed(request, "holdout")
    size = f" · {item['width']}×{item['height']}" if item.get("width") else ""
    where = f" · {item['split']}" if lead else ""
    lines = [f"**#{item['id']}** {item['original_name']}{size} · from {item['source']}{where} · "
             f"imported {item['created_at'][:16].replace('T', ' ')}"]
    if row["action"] in ("confirm", "correct"):
        lines.append(f"Current label: **{row['class_name']}** ({row['action']} by {row['annotator']})")
    else:
        lines.append(f"Current label: **{STATE_WORDS.get(row['action'], row['action'])}**"
                     + (f" (by {row['annotator']})" if row["annotator"] else ""))
    if entry is not None:
        lines.append(f"Model {entry.model_version} says: "
                     + " · ".join(f"{name} {p:.0%}" for name, p in entry.top3))
    if item["near_dup_of"] is not None:
        lines.append(f"Near-duplicate of #{item['near_dup_of']}.")
    if item["flags"]:
        lines.append(f"Import flags: {item['flags']}.")
    original = str(ctx.paths.home / item["stored_path"]) if item.get("stored_path") else None
    current = row["class_id"] if row["action"] in ("confirm", "correct") else None
    choices = _class_choices(ctx, None)
    return ItemView(int(item_id), original, conversion_image(item["pixels"], 224), "  \n".join(lines),
                    gr.Dropdown(choices=choices, value=current))


def relabel(ctx: UIContext, item_id: int | None, action: str, class_id: int | None,
            request: gr.Request | None) -> tuple[str, ItemView]:
    """Record a new decision on an opened item (its earlier events stay); returns the notice and the item again.

    action: "label" (the chosen class; confirm or correct against the model) or "reject".
    """
    annotator = ctx.require(request, "label")
    if item_id is None:
        raise user_error("open an item first: click a photo in the gallery")
    if action == "label" and class_id is None:
        raise user_error("choose the class to give this item")
    if action not in ("label", "reject"):
        raise user_error(f"unknown relabel action {action!r}; use label or reject")
    with user_errors():
        ws = labeling.workspace(ctx.paths)   # one connection and one read of the active version
        names = ws.names()
        if action == "label" and not (str(class_id).isdigit() and int(class_id) < len(names)):
            raise user_error(f"unknown class id {class_id}; ids run from 0 to {len(names) - 1}")
        event = labeling.decide(ws, annotator=annotator, item_id=int(item_id),
                                action="confirm" if action == "label" else "reject",
                                class_id=None if action == "reject" else int(class_id),
                                entry=labeling.lookup(ws, int(item_id)))
    stored = f"{event.action} → {names[event.class_id]}" if event.class_id is not None else event.action
    return f"Stored #{event.item_id}: {stored} (event {event.id} by {annotator}).", open_item(ctx, item_id, request)


def _class_choices(ctx: UIContext, any_label: str | None) -> list[tuple[str, int]]:
    """(name, id) per class, after an 'any' choice when any_label is given: dropdowns hand back ids."""
    names = store.class_names(store.open_db(ctx.paths.db))
    return ([(any_label, ANY_CLASS)] if any_label else []) + [(name, i) for i, name in enumerate(names)]


def build(ctx: UIContext) -> None:
    """Lay out the Browse tab: filters, the gallery and its pages, the opened item."""
    page = ctx.page
    with gr.Row():
        status = gr.Dropdown(STATUS_CHOICES, value=ANY, label="State", elem_id="al-browse-status")
        label = gr.Dropdown(_class_choices(ctx, "Any label"), value=ANY_CLASS, label="Current label",
                            elem_id="al-browse-label")
        predicted = gr.Dropdown(_class_choices(ctx, "Any prediction"), value=ANY_CLASS,
                                label="Predicted by the active model", elem_id="al-browse-predicted")
        annotator = gr.Dropdown([ANYONE], value=ANYONE, allow_custom_value=True, label="Labeled by",
                                elem_id="al-browse-annotator")
        flagged = gr.Dropdown(FLAG_CHOICES, value=ANY, label="Flagged", elem_id="al-browse-flagged",
                              info="near-duplicates and open label issues")
    with gr.Row(equal_height=True):
        name = gr.Textbox(label="File name contains", elem_id="al-browse-name", scale=2)
        since = gr.Textbox(label="Decided since", placeholder="YYYY-MM-DD", elem_id="al-browse-since")
        until = gr.Textbox(label="Decided until", placeholder="YYYY-MM-DD", elem_id="al-browse-until")
        split = gr.Dropdown(SPLIT_CHOICES, value=ANY, label="Holdout or pool", elem_id="al-browse-split")
        search = gr.Button("Search", elem_id="al-browse-search", scale=0, min_width=110)
    page.only_for("holdout", split)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3):
            note = gr.Markdown(elem_id="al-browse-note")
            # "max-content": all 48 tiles show; "auto" caps the gallery at ~500 px and scrolls inside
            gallery = gr.Gallery(show_label=False, columns=6, height="max-content", allow_preview=False,
                                 object_fit="contain", elem_id="al-browse-gallery")
            with gr.Row():
                previous = gr.Button("← Previous page", interactive=False, elem_id="al-browse-previous")
                following = gr.Button("Next page →", interactive=False, elem_id="al-browse-next")
        with gr.Column(scale=2, elem_id="al-browse-item"):
            details = gr.Markdown("Click a photo to open it here.", elem_id="al-browse-details")
            with gr.Row(equal_height=True):
                original = gr.Image(label="Original", type="filepath", interactive=False, height=240,
                                    buttons=["fullscreen"], elem_id="al-browse-original")
                conversion = gr.Image(label="What the model sees (28×28)", type="pil", interactive=False,
                                      height=240, buttons=[], elem_id="al-browse-conversion")
            # custom values: a class added since the page loaded (relabel checks the id)
            new_class = gr.Dropdown(_class_choices(ctx, None), value=None, allow_custom_value=True,
                                    label="Give it the class", elem_id="al-browse-class")
            with gr.Row():
                set_label = gr.Button("Set label", variant="primary", elem_id="al-browse-set")
                reject = gr.Button("Not a product", variant="stop", elem_id="al-browse-reject")
            relabel_note = gr.Markdown(elem_id="al-browse-relabel-note")
    paging = gr.State(None)
    opened = gr.Number(visible="hidden", precision=0, elem_id="al-browse-opened")

    filters = [status, label, predicted, annotator, name, since, until, split, flagged]
    view = [paging, gallery, note, previous, following]
    item_view = [opened, original, conversion, details, new_class]

    def on_filters(status_value, class_value, predicted_value, annotator_value, name_value, since_value,
                   until_value, split_value, flagged_value, request: gr.Request):
        filters = read_filters(status_value, class_value, predicted_value, annotator_value, name_value,
                               since_value, until_value, split_value, flagged_value)
        return first_page(ctx, filters, request)

    def on_next(paging_value, request: gr.Request):
        return next_page(ctx, paging_value, request)

    def on_previous(paging_value, request: gr.Request):
        return previous_page(ctx, paging_value, request)

    def on_select(paging_value, event: gr.SelectData, request: gr.Request):
        ids = paging_value.ids if paging_value else []
        if not 0 <= event.index < len(ids):
            return (gr.skip(),) * len(item_view)
        return open_item(ctx, ids[event.index], request)

    def on_relabel(action: str):
        def handler(item_id, class_id, paging_value, request: gr.Request):
            notice, item = relabel(ctx, item_id, action, class_id, request)
            # the tile's caption follows: the same page again (an item no longer matching leaves it)
            again = show_page(ctx, paging_value, request) if paging_value else (gr.skip(),) * len(view)
            return (notice, *item, *again, page.header_html(request))
        return handler

    def on_open(request: gr.Request):
        """Opening the tab: fresh choices (classes and annotators grow) and the page, filters kept."""
        return (gr.Dropdown(choices=_class_choices(ctx, "Any label")),
                gr.Dropdown(choices=_class_choices(ctx, "Any prediction")),
                gr.Dropdown(choices=[ANYONE, *annotators(store.open_db(ctx.paths.db))]))

    quiet = {"show_progress": "hidden"}
    page.tab.select(on_open, None, [label, predicted, annotator], api_visibility="private", **quiet).then(
        on_filters, filters, view, api_visibility="private", **quiet)
    gr.on([status.input, label.input, predicted.input, annotator.input, flagged.input, split.input,
           name.submit, since.submit, until.submit, search.click], on_filters, filters, view,
          api_name="browse")
    following.click(on_next, paging, view, api_name="browse_next", **quiet)
    previous.click(on_previous, paging, view, api_name="browse_previous", **quiet)
    gallery.select(on_select, paging, item_view, api_visibility="private", **quiet)
    opened.change(lambda: "", None, relabel_note, api_visibility="private", **quiet)
    relabel_outputs = [relabel_note, *item_view, *view, page.header]
    set_label.click(on_relabel("label"), [opened, new_class, paging], relabel_outputs, api_name="relabel")
    reject.click(on_relabel("reject"), [opened, new_class, paging], relabel_outputs, api_name="relabel_reject")
