"""How labeling is going: how much is done, how fast each annotator works, when the pool runs out.

Pure functions over (annotator, time) pairs, one per decision, as
`store.decision_times` returns them, so they are tested on a few made-up
decisions and the Review tab only draws what they compute.

Pace is measured on *labeling time*, not on the wall clock: a pause longer
than IDLE_GAP between two decisions is a break (lunch, a meeting) and counts
for nothing, so one morning session and one evening session do not make a
rate of a few decisions an hour. Within a session, n decisions span n - 1
gaps, so the rate is gaps / time. The ETA divides what is left in the pool by
the summed pace of the annotators working now (a decision within RECENT), or,
when nobody is, by everyone's usual pace.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from activelearn.store import IMPORT_ANNOTATOR

#: Who writes labels without labeling: folder pre-labels (IMPORT_ANNOTATOR), sixty at once,
#: which would read as millions of decisions an hour.
PRELABELERS = frozenset({IMPORT_ANNOTATOR})
#: A longer pause between two decisions of one annotator is a break, not labeling time.
IDLE_GAP = timedelta(minutes=5)
#: Labeling time an annotator needs before their pace (decisions per hour) is shown.
MIN_ACTIVE_S = 60.0
#: An annotator whose last decision is this recent is labeling now: the ETA uses their pace.
RECENT = timedelta(hours=1)
#: Bin widths a progress plot may use, smallest first.
BIN_CHOICES = tuple(timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 180, 360, 720, 1440, 10080))
#: A plot gets at most this many bins: the smallest width from BIN_CHOICES that fits is chosen.
MAX_BINS = 48


def as_time(value: datetime | str) -> datetime:
    """A stored ISO timestamp (or datetime) as an aware UTC datetime."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass(frozen=True)
class Pace:
    """One annotator's decisions and the labeling time they took."""

    annotator: str
    decisions: int
    gaps: int               # gaps between consecutive decisions no longer than IDLE_GAP
    active_s: float         # the summed length of those gaps
    first: datetime
    last: datetime

    @property
    def per_hour(self) -> float | None:
        """Decisions per hour of labeling; None until there is MIN_ACTIVE_S of it (decisions within
        IDLE_GAP of each other), so a burst written in a second (a bulk CSV, a script) claims no pace."""
        return 3600.0 * self.gaps / self.active_s if self.active_s >= MIN_ACTIVE_S else None


def paces(decisions: Iterable[tuple[str, datetime | str]], idle_gap: timedelta = IDLE_GAP,
          ignore: frozenset[str] = PRELABELERS) -> list[Pace]:
    """Each annotator's pace, most decisions first; pre-labels (`ignore`) are no one's pace."""
    times: dict[str, list[datetime]] = defaultdict(list)
    for annotator, moment in decisions:
        if annotator not in ignore:
            times[annotator].append(as_time(moment))
    result = []
    for annotator, moments in times.items():
        moments.sort()
        within = [(b - a).total_seconds() for a, b in zip(moments, moments[1:]) if b - a <= idle_gap]
        result.append(Pace(annotator, len(moments), len(within), sum(within), moments[0], moments[-1]))
    return sorted(result, key=lambda p: (-p.decisions, p.annotator))


@dataclass(frozen=True)
class Eta:
    """When the pool runs out at the team's pace."""

    remaining: int
    per_hour: float | None      # the team's decisions per labeling hour used for the estimate
    seconds: float | None       # labeling time left; None without a pace
    basis: str                  # "now": the annotators labeling now; "usual": everyone's usual pace; "" none


def eta(remaining: int, team: Sequence[Pace], now: datetime, recent: timedelta = RECENT) -> Eta:
    """Labeling time until `remaining` items are decided, at the pace of those working now (else everyone's)."""
    now = as_time(now)
    working = [p.per_hour for p in team if p.per_hour and now - p.last <= recent]
    basis = "now" if working else "usual"
    rates = working or [p.per_hour for p in team if p.per_hour]
    if not rates:
        return Eta(remaining, None, None, "")
    per_hour = sum(rates)
    return Eta(remaining, per_hour, 3600.0 * remaining / per_hour, basis)


def choose_bin(span: timedelta, max_bins: int = MAX_BINS) -> timedelta:
    """The smallest width in BIN_CHOICES that shows `span` in at most max_bins bins (an hour: 5 minutes)."""
    for width in BIN_CHOICES:
        if span <= width * max_bins:
            return width
    return BIN_CHOICES[-1]


def floor_time(moment: datetime, width: timedelta) -> datetime:
    """The start of the bin holding `moment`; bins are aligned to the Unix epoch, in UTC."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((as_time(moment) - epoch) // width) * width


@dataclass(frozen=True)
class Binned:
    """Decisions per bin and annotator: `starts[i]` opens bin i, `counts[a][i]` is a's decisions in it."""

    width: timedelta
    starts: list[datetime]
    counts: dict[str, list[int]]

    def cumulative(self, annotator: str | None = None) -> list[int]:
        """Running total at the end of each bin, of one annotator or (None) of everyone."""
        rows = [self.counts[annotator]] if annotator is not None else list(self.counts.values())
        total, out = 0, []
        for i in range(len(self.starts)):
            total += sum(row[i] for row in rows)
            out.append(total)
        return out


def binned(decisions: Iterable[tuple[str, datetime | str]], width: timedelta | None = None,
           max_bins: int = MAX_BINS, ignore: frozenset[str] = PRELABELERS) -> Binned:
    """Count decisions per time bin and annotator; every bin from the first to the last is present (gaps as 0).

    Without a width, choose_bin picks one from the span, so a one-hour session draws as
    a dozen bars rather than one step. Pre-labels (`ignore`) are left out.
    """
    pairs = [(annotator, as_time(moment)) for annotator, moment in decisions if annotator not in ignore]
    if not pairs:
        return Binned(width or BIN_CHOICES[0], [], {})
    first, last = min(t for _, t in pairs), max(t for _, t in pairs)
    width = width or choose_bin(last - first, max_bins)
    origin = floor_time(first, width)
    n = (floor_time(last, width) - origin) // width + 1
    counts: dict[str, list[int]] = {}
    for annotator, moment in pairs:
        counts.setdefault(annotator, [0] * n)[(floor_time(moment, width) - origin) // width] += 1
    return Binned(width, [origin + i * width for i in range(n)], dict(sorted(counts.items())))


def duration_text(seconds: float | None) -> str:
    """'45 min', '3.5 h', '2.1 days' (of labeling time); '—' when unknown."""
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{max(1, round(seconds / 60))} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def width_text(width: timedelta) -> str:
    """A bin width in words: '5 min', '3 h', '1 day'."""
    minutes = int(width.total_seconds() // 60)
    if minutes < 60:
        return f"{minutes} min"
    if minutes < 1440:
        return f"{minutes // 60} h"
    return f"{minutes // 1440} day" + ("s" if minutes >= 2880 else "")


def goal_line(labeled: int, total: int, estimate: Eta) -> str:
    """'120 of 300 items labeled (40%) · 150 left in the pool · 90 decisions/h now · about 1.7 h of labeling left'."""
    share = f" ({labeled / total:.0%})" if total else ""
    parts = [f"{labeled:,} of {total:,} items labeled{share}", f"{estimate.remaining:,} left in the pool"]
    if estimate.per_hour is None:
        parts.append("no pace yet (it needs two decisions within a few minutes)")
    else:
        whose = "the annotators working now" if estimate.basis == "now" else "everyone's usual pace"
        parts.append(f"{estimate.per_hour:.0f} decisions/h ({whose})")
        parts.append(f"about {duration_text(estimate.seconds)} of labeling left" if estimate.remaining
                     else "the pool is done")
    return " · ".join(parts)
