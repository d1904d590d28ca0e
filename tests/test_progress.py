"""activelearn.progress on a few made-up decisions: pace on labeling time, ETA, bins that fit the span."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from activelearn import progress

T0 = datetime(2025, 3, 1, 9, 0, tzinfo=timezone.utc)


def at(minutes: float) -> str:
    """A stored timestamp (ISO text, as labels.created_at holds it) `minutes` after T0."""
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="milliseconds")


def test_pace_counts_labeling_time_and_leaves_out_breaks():
    # ann: 11 decisions a minute apart (10 min), a 2-hour break, 6 more 30 s apart (2.5 min)
    ann = [("ann", at(m)) for m in range(11)] + [("ann", at(130 + k / 2)) for k in range(6)]
    bob = [("bob", at(0))]
    paces = {p.annotator: p for p in progress.paces(ann + bob)}
    assert paces["ann"].decisions == 17 and paces["ann"].gaps == 15
    assert paces["ann"].active_s == pytest.approx(12.5 * 60)
    assert paces["ann"].per_hour == pytest.approx(15 / 12.5 * 60)       # 72/h, not 17 over 2 h 12 min
    assert paces["ann"].first == T0 and paces["ann"].last == T0 + timedelta(minutes=132.5)
    assert paces["bob"].per_hour is None                                 # one decision: no pace yet
    assert [p.annotator for p in progress.paces(ann + bob)] == ["ann", "bob"]


def test_pace_accepts_naive_and_aware_times_in_any_order():
    naive = [("a", datetime(2025, 3, 1, 9, 2)), ("a", datetime(2025, 3, 1, 9, 0))]
    (pace,) = progress.paces(naive)
    assert pace.first.tzinfo is not None and pace.per_hour == pytest.approx(30.0)


def test_eta_uses_the_annotators_working_now_else_everyone():
    team = progress.paces([("ann", at(m)) for m in range(0, 61)] +          # 60/h, until minute 60
                          [("bob", at(m / 2)) for m in range(0, 41)])       # 120/h, until minute 20
    now = T0 + timedelta(minutes=100)                                       # bob stopped 80 min ago
    estimate = progress.eta(600, team, now)
    assert estimate.basis == "now" and estimate.per_hour == pytest.approx(60.0)
    assert estimate.seconds == pytest.approx(10 * 3600)
    later = progress.eta(600, team, T0 + timedelta(hours=5))
    assert later.basis == "usual" and later.per_hour == pytest.approx(180.0)
    assert later.seconds == pytest.approx(600 / 180 * 3600)
    assert progress.eta(10, progress.paces([("c", at(0))]), now) == progress.Eta(10, None, None, "")


@pytest.mark.parametrize("span, width", [
    (timedelta(minutes=30), timedelta(minutes=1)),
    (timedelta(hours=1), timedelta(minutes=5)),
    (timedelta(hours=8), timedelta(minutes=15)),
    (timedelta(days=1), timedelta(minutes=30)),
    (timedelta(days=30), timedelta(days=1)),
    (timedelta(days=3000), timedelta(days=7)),
])
def test_bin_width_follows_the_span(span, width):
    assert progress.choose_bin(span) == width


def test_one_hour_session_is_a_dozen_bins_with_empty_ones_kept():
    decisions = [("ann", at(m)) for m in range(0, 20)] + [("ann", at(m)) for m in range(40, 60)] + \
                [("bob", at(7))]
    bins = progress.binned(decisions)
    assert bins.width == timedelta(minutes=5) and len(bins.starts) == 12
    assert bins.starts[0] == T0 and bins.starts[-1] == T0 + timedelta(minutes=55)
    assert bins.counts["ann"] == [5, 5, 5, 5, 0, 0, 0, 0, 5, 5, 5, 5]
    assert bins.counts["bob"] == [0, 1] + [0] * 10
    assert bins.cumulative("ann")[-1] == 40 and bins.cumulative()[-1] == 41
    assert bins.cumulative()[:3] == [5, 11, 16]


def test_bins_align_to_the_clock_and_nothing_binned_is_empty():
    bins = progress.binned([("a", at(3)), ("a", at(14))], width=timedelta(minutes=5))
    assert bins.starts == [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)]
    assert bins.counts == {"a": [1, 0, 1]}
    assert progress.binned([]).starts == [] and progress.binned([]).cumulative() == []


def test_goal_line_reads_as_a_sentence():
    team = progress.paces([("ann", at(m)) for m in range(0, 61)])
    line = progress.goal_line(120, 300, progress.eta(150, team, T0 + timedelta(minutes=61)))
    assert line == ("120 of 300 items labeled (40%) · 150 left in the pool · 60 decisions/h "
                    "(the annotators working now) · about 2.5 h of labeling left")
    assert "no pace yet" in progress.goal_line(0, 0, progress.Eta(5, None, None, ""))
    assert progress.duration_text(90) == "2 min" and progress.duration_text(3 * 86400) == "3.0 days"
    assert progress.width_text(timedelta(minutes=15)) == "15 min" and progress.width_text(timedelta(days=7)) == "7 days"


def test_folder_prelabels_are_no_ones_pace():
    decisions = [("import", at(0))] * 60 + [("ann", at(m)) for m in range(3)]
    assert [p.annotator for p in progress.paces(decisions)] == ["ann"]
    assert list(progress.binned(decisions).counts) == ["ann"]
    assert progress.paces(decisions, ignore=frozenset())[0].annotator == "import"


def test_a_burst_of_decisions_within_a_second_claims_no_pace():
    start = datetime(2026, 5, 1, 9, 0, tzinfo=timezone.utc)
    burst = [("bot", start + timedelta(milliseconds=10 * k)) for k in range(500)]
    steady = [("ann", start + timedelta(seconds=30 * k)) for k in range(5)]   # 2 minutes of labeling
    by_name = {p.annotator: p for p in progress.paces(burst + steady)}
    assert by_name["bot"].per_hour is None and by_name["bot"].decisions == 500
    assert by_name["ann"].per_hour == pytest.approx(120.0)
