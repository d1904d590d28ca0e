"""Review > Team: whom to trust and which labels are contested, and the lead's disagreement queue.

Everything shown comes from activelearn.teams (the `agreement` and `consensus` CLI
print the same figures): Krippendorff's alpha overall and per class, Cohen's kappa
per annotator pair as a heatmap, agreement over time, CROWDLAB's quality of each
annotator with their accuracy against the consensus and against the leads'
decisions, each figure with the number of items behind it.

The leads are the reference: their votes are the yardstick, not part of the consensus,
and an item a lead decided has left the queue. The queue shows the contested items
first (lowest consensus quality); a class button, or its key (1-9, 0, as on the Label
tab) while the queue has focus, records the lead's decision as a label event and shows
the next item. Viewing needs the "review" right, the queue and deciding a lead's
("fix-labels", as for the label-error queue). Nothing polls: the section loads when
the tab opens and on Refresh.
"""

from __future__ import annotations

import json
import math

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib import colormaps, colors
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from pandas.io.formats.style import Styler

from activelearn import store, teams
from activelearn.ui.components import ONE_RENDER_AT_A_TIME, item_preview, user_error, user_errors
from activelearn.ui.context import LOCAL_USER, UIContext
from activelearn.ui.label_tab import CLASS_KEYS, class_button_label

#: The lead's right to decide a contested item: the same as resolving the label-error queue.
DECIDE = "fix-labels"
NO_OVERLAP = ("No item has votes from two annotators yet: turn on overlap (Train tab, Team overlap) so that a "
              "share of the items is labeled by two people.")
BINS = [("10 equal periods", "10"), ("per day", "D"), ("per week", "W")]
#: Contested items listed below the one being decided.
UPCOMING = 8
KAPPA_CORNER = "kappa (n)"
QUALITY_COLUMNS = ["annotator", "CROWDLAB quality", "items", "agreement with consensus", "n (consensus)",
                   "accuracy vs leads", "n (leads)", "worst class"]
ALPHA_COLUMNS = ["class", "alpha", "items with the class", "overlapped items"]
UPCOMING_COLUMNS = ["item", "consensus", "quality", "votes"]
QUEUE_ID = "al-team-queue"
BUTTON_PREFIX = "al-team-class-"

#: Class keys for the queue, installed once per page: they act only while the queue is on screen and
#: has focus (the last click or focus on the page was inside it), and never in a text field.
KEYS_JS = r"""
() => {
  if (window.__activelearnTeamKeys) return;
  window.__activelearnTeamKeys = true;
  const QUEUE = __QUEUE__, PREFIX = __PREFIX__, CLASS_KEYS = __CLASS_KEYS__;
  let focused = false;
  const style = document.createElement("style");
  style.textContent = __CSS__;
  document.head.appendChild(style);
  const queue = () => document.getElementById(QUEUE);
  const inQueue = (el) => !!queue() && !!el && queue().contains(el);
  const mark = () => { if (queue()) queue().classList.toggle("al-team-focused", focused); };
  for (const kind of ["pointerdown", "focusin"]) {
    window.addEventListener(kind, (event) => { focused = inQueue(event.target); mark(); }, true);
  }
  window.addEventListener("keydown", (event) => {
    if (!focused || event.ctrlKey || event.metaKey || event.altKey || event.repeat) return;
    const panel = queue();
    if (!panel || panel.offsetParent === null) return;
    const el = event.target;
    if (el && (["TEXTAREA", "SELECT"].includes(el.tagName) || el.isContentEditable
        || (el.tagName === "INPUT" && !["checkbox", "radio", "button"].includes(el.type)))) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : "";
    const index = key ? CLASS_KEYS.indexOf(key) : -1;
    const button = index >= 0 && document.getElementById(PREFIX + index);
    if (!button || button.disabled) return;
    event.preventDefault();
    button.click();
  }, true);
}
"""
#: How the queue looks while its keys act (added to the page by the key handler).
FOCUS_CSS = f"#{QUEUE_ID}.al-team-focused {{ outline: 2px solid var(--color-accent); outline-offset: 4px; }}"


def keys_js() -> str:
    """KEYS_JS with the queue's element ids and the class keys filled in."""
    script = KEYS_JS
    for name, value in {"QUEUE": QUEUE_ID, "PREFIX": BUTTON_PREFIX, "CLASS_KEYS": CLASS_KEYS,
                        "CSS": FOCUS_CSS}.items():
        script = script.replace(f"__{name}__", json.dumps(value))
    return script


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), digits)


def _bins(value: str | None) -> int | str:
    return int(value) if value and value.isdigit() else (value or teams.DEFAULT_BINS)


def reference_annotators(ctx: UIContext) -> tuple[str, ...]:
    """Whose votes are the yardstick: the leads (the single local user without logins)."""
    if not ctx.roles:
        return (LOCAL_USER,)
    return tuple(sorted(name for name, role in ctx.roles.items() if role == "lead"))


# ---------------------------------------------------------------- tables and plot

def summary_line(report: teams.TeamReport) -> str:
    """One line: overlapped items, votes, annotators, alpha with its n; then what the consensus rests on."""
    if not report.has_overlap:
        return NO_OVERLAP
    overall = report.agreement.alpha.overall
    alpha_text = "—" if math.isnan(overall.alpha) else f"{overall.alpha:.2f}"
    line = (f"**{overall.n_items} overlapped item(s)**, {overall.n_votes} votes, "
            f"{report.agreement.n_annotators} annotator(s) · Krippendorff's alpha **{alpha_text}** "
            f"(n={overall.n_items} items)")
    if report.consensus is None:
        return f"{line}  \nNo consensus: {report.consensus_note}."
    result = report.consensus.result
    leads = ", ".join(report.reference) or "none"
    return (f"{line}  \nConsensus (CROWDLAB) of {len(result.item_ids)} item(s), {int((result.n_votes >= 2).sum())} "
            f"with two or more votes, weighing model {report.consensus.version} at {result.model_weight:.2f} · "
            f"reference: the leads ({leads}), {len(report.consensus.reference)} decided item(s)")


def alpha_table(report: teams.TeamReport) -> pd.DataFrame:
    """Alpha over all classes, then one-vs-rest per class, each with the items behind it."""
    alpha = report.agreement.alpha
    rows = [["all classes", _rounded(alpha.overall.alpha), alpha.overall.n_items, alpha.overall.n_items]]
    rows += [[report.class_names[c.class_index], _rounded(c.alpha), c.n_items_with_class, c.n_items]
             for c in alpha.per_class]
    return pd.DataFrame(rows, columns=ALPHA_COLUMNS)


def kappa_heatmap(report: teams.TeamReport) -> Styler:
    """Annotator x annotator Cohen's kappa, shaded red (0 or below) to green (1); cells read "kappa (n)".

    `.data` holds the kappa values (NaN on the diagonal and for pairs without a shared item).
    """
    kappa = report.agreement.kappa
    names = kappa.annotators
    frame = kappa.kappa.reset_index(drop=True)
    frame.insert(0, KAPPA_CORNER, names)
    scale = colormaps["RdYlGn"]

    def cell_styles(table: pd.DataFrame) -> pd.DataFrame:
        styles = pd.DataFrame("", index=table.index, columns=table.columns)
        styles[KAPPA_CORNER] = "font-weight: bold"
        for i, a in enumerate(names):
            for b in names:
                value = kappa.kappa.loc[a, b]
                if a == b or math.isnan(value):
                    styles.loc[i, b] = "background-color: #eeeeee; color: #666666"
                else:
                    styles.loc[i, b] = f"background-color: {colors.to_hex(scale(float(np.clip(value, 0, 1))))}"
        return styles

    styler = frame.style.apply(cell_styles, axis=None)
    for i, a in enumerate(names):
        for b in names:
            value = kappa.kappa.loc[a, b]
            text = f"{'—' if a == b or math.isnan(value) else f'{value:.2f}'} ({int(kappa.n_items.loc[a, b])})"
            styler = styler.format(lambda _, shown=text: shown, subset=([i], [b]))
    return styler


def trend_figure(report: teams.TeamReport) -> Figure | None:
    """Alpha and the unanimous share per period, with the overlapped items behind each as bars."""
    points = report.agreement.trend
    if not points:
        return None
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    axes = figure.subplots()
    starts = [p.start.to_pydatetime() for p in points]
    width = (points[0].end - points[0].start) / 1.25
    counts = axes.twinx()
    counts.bar(starts, [p.n_items for p in points], width=width, align="edge", color="#cbd5e1", label="items")
    counts.set_ylabel("overlapped items")
    counts.set_ylim(0, max(1, max(p.n_items for p in points)) * 1.2)
    axes.set_zorder(counts.get_zorder() + 1)
    axes.patch.set_visible(False)
    middles = [(p.start + (p.end - p.start) / 2).to_pydatetime() for p in points]
    axes.plot(middles, [p.alpha for p in points], "o-", label="Krippendorff's alpha")
    axes.plot(middles, [p.unanimous for p in points], "s--", label="unanimous share")
    axes.set_ylim(min(0.0, np.nanmin([p.alpha for p in points] + [0.0])) - 0.05, 1.05)
    axes.set_ylabel("agreement")
    axes.grid(alpha=0.3, axis="y")
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    axes.set_title("Agreement over time (each item in the period its overlap was complete, UTC)")
    handles = [*axes.get_legend_handles_labels()[0], *counts.get_legend_handles_labels()[0]]
    axes.legend(handles, [h.get_label() for h in handles], fontsize="small", loc="lower left")
    return figure


def quality_table(report: teams.TeamReport) -> pd.DataFrame:
    """Per annotator, best first: CROWDLAB quality, agreement with the consensus and accuracy vs the leads, with n."""
    if report.consensus is None:
        return pd.DataFrame(columns=QUALITY_COLUMNS)
    rows = []
    for a in report.consensus.result.annotators:
        acc = report.consensus.accuracy[a.annotator]
        rows.append([a.annotator, _rounded(a.quality), a.n_items, _rounded(acc.vs_consensus), acc.n_consensus,
                     _rounded(acc.vs_reference), acc.n_reference, report.class_names[a.worst_class]])
    return pd.DataFrame(rows, columns=QUALITY_COLUMNS)


# ---------------------------------------------------------------- disagreement queue

def _votes_text(entry: dict, names: list[str]) -> str:
    return ", ".join(f"{who}: {names[cls]}" for who, cls in entry["votes"].items())


def queue_view(ctx: UIContext, queue: list[dict], names: list[str]) -> tuple:
    """(queue, shown item id, photo, the item's votes and consensus, the next items, note) for the first item."""
    contested = sum(1 for entry in queue if entry["agreement"] < 1.0)
    if not queue:
        return [], "", None, "No item with several votes is left to decide.", \
            pd.DataFrame(columns=UPCOMING_COLUMNS), ""
    head = queue[0]
    item = store.get_item(store.open_db(ctx.paths.db), head["item_id"])
    state = "contested" if head["agreement"] < 1.0 else "unanimous"
    text = (f"**#{head['item_id']}** {item['original_name']} · {state} · consensus **{names[head['consensus']]}** "
            f"(quality {head['quality']:.2f}, {head['agreement']:.0%} of the votes agree)  \n"
            f"Votes: {_votes_text(head, names)}")
    upcoming = pd.DataFrame([[e["item_id"], names[e["consensus"]], round(e["quality"], 3), _votes_text(e, names)]
                             for e in queue[1:1 + UPCOMING]], columns=UPCOMING_COLUMNS)
    note = (f"{contested} contested item(s) to decide, {len(queue) - contested} unanimous after them; "
            "click a class or press its key while the queue has focus")
    return queue, str(head["item_id"]), item_preview(ctx.paths, item), text, upcoming, note


def open_queue(report: teams.TeamReport) -> list[dict]:
    """The queue a lead works through, as JSON-able entries for the page's state."""
    return [entry.as_dict() for entry in report.open_queue()]


def team_overview(ctx: UIContext, bins: str | None, request: gr.Request | None) -> tuple:
    """Everything the section shows: (summary, tables shown?, alpha, kappa, trend, quality, class names,
    then queue_view's outputs; the queue is empty for a role that may not decide)."""
    ctx.require(request, "review")
    with user_errors():
        report = teams.team_report(ctx.paths, reference=reference_annotators(ctx), bins=_bins(bins))
    queue = open_queue(report) if ctx.allowed(request, DECIDE) else []
    return (summary_line(report), gr.Column(visible=report.has_overlap), alpha_table(report),
            kappa_heatmap(report), trend_figure(report), quality_table(report), report.class_names,
            *queue_view(ctx, queue, report.class_names))


def decide(ctx: UIContext, queue: list[dict], item_id: str | int | None, class_id: int,
           request: gr.Request | None) -> tuple:
    """Record the lead's class for the shown item (confirm = the consensus, correct = another) and show the next.

    Items another lead decided meanwhile leave the queue too. Returns (note, *queue_view outputs).
    """
    lead = ctx.require(request, DECIDE)
    if item_id in (None, ""):
        raise user_error("no contested item is shown: press Refresh")
    item_id = int(item_id)
    entry = next((e for e in queue if e["item_id"] == item_id), None)
    if entry is None:
        raise user_error(f"item #{item_id} is not in the disagreement queue any more: press Refresh")
    with user_errors():
        db = store.open_db(ctx.paths.db)
        names = store.class_names(db)
        if not 0 <= int(class_id) < len(names):
            raise user_error(f"there is no class {class_id}")
        action = "confirm" if int(class_id) == entry["consensus"] else "correct"
        event = store.record_decision(db, item_id, action, class_id=int(class_id), annotator=lead, via=store.RESOLVE)
        decided = teams.decided_items(ctx.paths, reference_annotators(ctx))
    rest = [e for e in queue if e["item_id"] != item_id and e["item_id"] not in decided]
    note = f"#{item_id}: {names[int(class_id)]} recorded ({action}, event {event.id} by {lead})"
    return (note, *queue_view(ctx, rest, names))


# ---------------------------------------------------------------- layout

def build(ctx: UIContext) -> None:
    """Lay out the Team sub-tab of Review; it loads when it is opened and on Refresh."""
    names = store.class_names(store.open_db(ctx.paths.db))
    with gr.Tab("Team", id="team", elem_id="al-review-team") as tab:
        with gr.Row(equal_height=True):
            bins = gr.Radio(BINS, value=BINS[0][1], label="Trend periods", scale=3, elem_id="al-team-bins")
            refresh = gr.Button("Refresh", scale=1, elem_id="al-team-refresh")
        summary = gr.Markdown(elem_id="al-team-summary")
        with gr.Column(visible=False) as figures:
            with gr.Row(equal_height=False):
                alpha = gr.DataFrame(interactive=False, label="Krippendorff's alpha per class (one vs rest)",
                                     elem_id="al-team-alpha", scale=1)
                kappa = gr.DataFrame(interactive=False, label="Cohen's kappa per annotator pair: kappa (items "
                                     "both labeled)", pinned_columns=1, elem_id="al-team-kappa", scale=2)
            trend = gr.Plot(label="Agreement over time", elem_id="al-team-trend")
            quality = gr.DataFrame(interactive=False, label="Annotators, most trustworthy first (CROWDLAB quality; "
                                   "accuracy against the consensus on items others labeled too, and against the "
                                   "leads' decisions)", elem_id="al-team-quality")
        classes = gr.State(names)
        queue = gr.State([])
        with gr.Column(elem_id=QUEUE_ID) as queue_panel:
            gr.Markdown("### Disagreement queue\nContested items first, lowest consensus quality first. Your "
                        "decision is recorded as a label event; the item then leaves the queue.")
            queue_note = gr.Markdown(elem_id="al-team-queue-note")
            with gr.Row(equal_height=False):
                photo = gr.Image(label="Original | 28x28", type="pil", interactive=False, scale=1,
                                 elem_id="al-team-photo")
                with gr.Column(scale=2):
                    votes = gr.Markdown(elem_id="al-team-votes")
                    shown = gr.Textbox(visible="hidden", elem_id="al-team-item")

                    @gr.render(inputs=[classes], **ONE_RENDER_AT_A_TIME)
                    def class_buttons(class_names: list[str]) -> None:
                        """A button per class, labeled with its key as on the Label tab; drawn again on new classes."""
                        with gr.Row(elem_id="al-team-class-buttons"):
                            for class_id, name in enumerate(class_names):
                                gr.Button(class_button_label(class_id, name), size="sm", min_width=60,
                                          elem_id=f"{BUTTON_PREFIX}{class_id}").click(
                                    on_decide(class_id), [queue, shown], [decided, *queue_outputs],
                                    api_visibility="private", show_progress="hidden")

                    decided = gr.Markdown(elem_id="al-team-decided")
            upcoming = gr.DataFrame(interactive=False, label="Next in the queue", elem_id="al-team-upcoming")
    ctx.page.only_for(DECIDE, queue_panel)
    queue_outputs = [queue, shown, photo, votes, upcoming, queue_note]

    def on_decide(class_id: int):
        def handler(queue_value: list[dict], item_id: str, request: gr.Request):
            return decide(ctx, queue_value, item_id, class_id, request)
        return handler

    def on_open(bins_value: str, request: gr.Request):
        return team_overview(ctx, bins_value, request)

    overview_outputs = [summary, figures, alpha, kappa, trend, quality, classes, *queue_outputs]
    gr.on([tab.select, refresh.click, bins.input], on_open, bins, overview_outputs, api_name="team")
    ctx.page.demo.load(None, None, None, js=keys_js())
