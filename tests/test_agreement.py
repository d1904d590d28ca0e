"""Teams: overlap selection, agreement, CROWDLAB consensus and annotator quality (activelearn.agreement).

Most tests run on a Fashion-MNIST-like team made here: 10 classes whose confusable
garments (tops, shoes, trousers/dresses) draw most mistakes, simulated annotators of
known accuracy and a model whose probabilities are ~80% accurate, made by noise.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from activelearn import agreement as ag
from activelearn import store
from tests.helpers import ACCURACY, mistake


def model_probs(truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Softmax of a boosted true logit plus Gaussian noise: ~80% top-1 accuracy."""
    logits = 2.45 * np.eye(10)[truth] + rng.normal(0, 1, (len(truth), 10))
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def simulate_team(seed: int, n: int, overlap_share: float):
    """(true classes, votes, pred_probs): `overlap_share` of items get 2-3 votes, the rest one."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 10, n)
    plan = ag.choose_overlap_items(range(n), share=overlap_share, k=3, rng=rng)
    rows = []
    for item in range(n):
        k = int(rng.integers(2, 4)) if item in plan.items else 1
        for who in rng.choice(list(ACCURACY), size=k, replace=False):
            vote = int(truth[item]) if rng.random() < ACCURACY[who] else mistake(int(truth[item]), rng)
            rows.append((item, str(who), vote))
    return truth, ag.votes_frame(rows), model_probs(truth, rng)


def accuracy_of(votes, truth: np.ndarray, annotator: str) -> float:
    own = votes[votes[ag.ANNOTATOR] == annotator]
    return float((own[ag.CLASS].to_numpy() == truth[own[ag.ITEM].to_numpy()]).mean())


@pytest.fixture(scope="module")
def team():
    """600 items, each labeled by 2 or 3 of the three annotators, and its CROWDLAB result."""
    truth, votes, probs = simulate_team(seed=0, n=600, overlap_share=1.0)
    assert 0.77 <= (probs.argmax(axis=1) == truth).mean() <= 0.83   # the model the brief asks for
    return truth, votes, probs, ag.consensus(votes, probs)


# ---------------------------------------------------------------- consensus and quality

def test_quality_ranking_recovers_the_true_order(team):
    truth, votes, _, result = team
    assert [a.annotator for a in result.annotators] == ["ann95", "ann85", "ann60"]
    simulated = [accuracy_of(votes, truth, a) for a in ("ann95", "ann85", "ann60")]
    assert simulated[0] > simulated[1] > simulated[2]   # the simulation is what it claims
    assert sum(a.n_items for a in result.annotators) == len(votes)


def test_ranking_with_ten_percent_overlap():
    """The project's default setting: 10% of 2,000 items labeled by 2-3 people, the rest by one."""
    truth, votes, probs = simulate_team(seed=1, n=2000, overlap_share=0.10)
    result = ag.consensus(votes, probs)
    assert [a.annotator for a in result.annotators] == ["ann95", "ann85", "ann60"]
    assert int((result.n_votes >= 2).sum()) == 200


def test_consensus_beats_the_best_single_annotator(team):
    truth, votes, _, result = team
    consensus_accuracy = (result.labels == truth[result.item_ids]).mean()
    best = max(accuracy_of(votes, truth, a) for a in ACCURACY)
    assert consensus_accuracy > best + 0.01, (consensus_accuracy, best)


def test_single_votes_keep_their_label_even_against_the_model():
    rng = np.random.default_rng(3)
    rows = [(i, who, i % 3) for i in range(30) for who in ("a", "b")]   # 30 items both agree on
    rows += [(100, "a", 0), (101, "b", 2)]                              # two items with one vote
    votes = ag.votes_frame(rows)
    probs = np.full((32, 3), 0.01)
    probs[np.arange(30), np.arange(30) % 3] = 0.98
    probs[30] = [0.01, 0.98, 0.01]    # the model is sure item 100 is class 1, its one vote says 0
    probs[31] = [0.98, 0.01, 0.01]
    probs = probs / probs.sum(axis=1, keepdims=True) + rng.uniform(0, 1e-6, probs.shape)
    result = ag.consensus(votes, probs)
    by_item = dict(zip(result.item_ids.tolist(), result.labels.tolist()))
    assert (by_item[100], by_item[101]) == (0, 2)
    assert np.all(result.quality[-2:] < result.quality[:30].min())   # contested by the model: low quality
    assert result.agreement[-2:].tolist() == [1.0, 1.0] and result.n_votes[-2:].tolist() == [1, 1]


def test_consensus_refuses_what_it_cannot_weigh():
    alone = ag.votes_frame([(1, "a", 0), (2, "a", 1)])
    with pytest.raises(ag.AgreementError, match="at least two annotators"):
        ag.consensus(alone, np.full((2, 2), 0.5))
    pair = ag.votes_frame([(1, "a", 0), (1, "b", 0), (2, "a", 1)])
    with pytest.raises(ag.AgreementError, match="one probability row per voted item"):
        ag.consensus(pair, np.full((3, 2), 0.5))
    with pytest.raises(ag.AgreementError, match="names class 1 but the model has only 1 classes"):
        ag.consensus(pair, np.ones((2, 1)))


def test_annotator_accuracy_against_consensus_and_reference(team):
    truth, votes, _, result = team
    rng = np.random.default_rng(5)
    audit = rng.choice(600, 120, replace=False)          # a random slice with trusted labels
    reference = {int(i): int(truth[i]) for i in audit}
    rows = {r.annotator: r for r in ag.annotator_accuracy(votes, reference, result)}
    assert set(rows) == set(ACCURACY)
    for who, expected in ACCURACY.items():
        own = votes[votes[ag.ANNOTATOR] == who]
        assert rows[who].n_reference == int(own[ag.ITEM].isin(audit).sum())
        assert rows[who].n_consensus == len(own)         # every item here has another vote
        assert abs(rows[who].vs_reference - expected) < 0.12
    assert rows["ann95"].vs_consensus > rows["ann85"].vs_consensus > rows["ann60"].vs_consensus
    assert rows["ann95"].vs_reference > rows["ann85"].vs_reference > rows["ann60"].vs_reference


def test_accuracy_against_consensus_ignores_items_labeled_alone():
    votes = ag.votes_frame([(1, "a", 0), (1, "b", 1), (2, "a", 1), (2, "b", 1), (3, "a", 2)])
    probs = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    result = ag.consensus(votes, probs)
    rows = {r.annotator: r for r in ag.annotator_accuracy(votes, {3: 0}, result)}
    assert (rows["a"].n_consensus, rows["b"].n_consensus) == (2, 2)    # item 3 (a alone) is left out
    assert rows["a"].vs_consensus + rows["b"].vs_consensus == pytest.approx(1.5)   # they split item 1
    assert (rows["a"].vs_reference, rows["a"].n_reference) == (0.0, 1)
    assert math.isnan(rows["b"].vs_reference) and rows["b"].n_reference == 0


def test_disagreement_queue_puts_contested_items_first(team):
    _, votes, _, result = team
    queue = ag.disagreement_queue(result)
    distinct = votes.groupby(ag.ITEM)[ag.CLASS].nunique()
    contested = set(distinct.index[distinct > 1].tolist())
    assert 0 < len(contested) < len(queue) == 600
    assert {e.item_id for e in queue[:len(contested)]} == contested
    head, tail = queue[:len(contested)], queue[len(contested):]
    assert all(x.quality <= y.quality for x, y in zip(head, head[1:]))
    assert all(x.quality <= y.quality for x, y in zip(tail, tail[1:]))
    first = queue[0]
    assert first.votes == {r.annotator: r.class_index for r in votes[votes[ag.ITEM] == first.item_id].itertuples()}


def test_queue_leaves_out_items_with_one_vote():
    votes = ag.votes_frame([(1, "a", 0), (1, "b", 1), (2, "a", 1), (2, "b", 1), (3, "a", 0)])
    result = ag.consensus(votes, np.array([[0.6, 0.4], [0.2, 0.8], [0.9, 0.1]]))
    assert [e.item_id for e in ag.disagreement_queue(result)] == [1, 2]


# ---------------------------------------------------------------- agreement

def test_pairwise_kappa_hand_checked():
    # A and B share items 1-8:  A = 0 0 0 0 1 1 1 2,  B = 0 0 0 1 1 1 2 2.
    #   observed agreement p_o = 6/8 (they differ on items 4 and 7)
    #   marginals A: 0 4/8, 1 3/8, 2 1/8;  B: 0 3/8, 1 3/8, 2 2/8
    #   chance agreement p_e = (4*3 + 3*3 + 1*2) / 64 = 23/64
    #   kappa = (48/64 - 23/64) / (1 - 23/64) = 25/41
    # C labeled items 1, 2, 4 as 0 1 1; B there says 0 0 1:
    #   p_o = 2/3; B: 0 2/3, 1 1/3; C: 0 1/3, 1 2/3; p_e = 2/9 + 2/9 = 4/9; kappa = (2/9)/(5/9) = 2/5
    # A there says 0 0 0: p_o = 1/3 = p_e (A always says 0), kappa = 0.  D shares no item with anyone.
    a = [0, 0, 0, 0, 1, 1, 1, 2]
    b = [0, 0, 0, 1, 1, 1, 2, 2]
    rows = [(i + 1, "A", v) for i, v in enumerate(a)] + [(i + 1, "B", v) for i, v in enumerate(b)]
    rows += [(1, "C", 0), (2, "C", 1), (4, "C", 1), (9, "D", 2)]
    result = ag.pairwise_kappa(ag.votes_frame(rows))
    assert result.annotators == ["A", "B", "C", "D"]
    assert result.kappa.loc["A", "B"] == pytest.approx(25 / 41)
    assert result.kappa.loc["A", "B"] == pytest.approx(cohen_kappa_score(a, b))
    assert result.kappa.loc["B", "C"] == pytest.approx(2 / 5) == result.kappa.loc["C", "B"]
    assert result.kappa.loc["A", "C"] == pytest.approx(0.0)
    assert math.isnan(result.kappa.loc["A", "D"])
    assert result.n_items.loc["A", "B"] == 8 and result.n_items.loc["B", "C"] == 3
    assert result.n_items.loc["C", "D"] == 0 and result.n_items.loc["A", "A"] == 8
    assert {(p.annotator_a, p.annotator_b): p.n_items for p in result.pairs} == {
        ("A", "B"): 8, ("A", "C"): 3, ("A", "D"): 0, ("B", "C"): 3, ("B", "D"): 0, ("C", "D"): 0}
    assert json.loads(json.dumps(result.as_dict()))["pairs"][2] == {
        "annotator_a": "A", "annotator_b": "D", "kappa": None, "n_items": 0}


def test_alpha_hand_checked():
    # Items (votes): u1 (0,0)  u2 (1,1)  u3 (0,1)  u5 (2,2,0); u4 has one vote and cannot be paired.
    # Coincidences (each ordered pair of an item weighs 1/(votes-1)):
    #   o00 = 2 (u1), o11 = 2 (u2), o01 = o10 = 1 (u3), o22 = o20 = o02 = 1 (u5, weight 1/2 each of 2 pairs)
    #   n0 = 4, n1 = 3, n2 = 2, n = 9; disagreeing coincidences: 4
    #   alpha = 1 - (n - 1) * 4 / (2 * (4*3 + 4*2 + 3*2)) = 1 - 32/52 = 5/13
    # Class 2 against the rest: u1-u3 all "rest" (o00 = 6), u5 (1,1,0): o11 = o10 = o01 = 1
    #   n0 = 7, n1 = 2: alpha = 1 - 8 * 2 / (2 * 7 * 2) = 3/7
    rows = [(1, "a", 0), (1, "b", 0), (2, "a", 1), (2, "b", 1), (3, "a", 0), (3, "b", 1),
            (4, "a", 1), (5, "a", 2), (5, "b", 2), (5, "c", 0)]
    report = ag.alpha(ag.votes_frame(rows))
    assert report.overall.alpha == pytest.approx(5 / 13)
    assert (report.overall.n_items, report.overall.n_votes) == (4, 9)
    reliability = [[0, 1, 0, 2], [0, 1, 1, 2], [np.nan, np.nan, np.nan, 0]]   # annotators x items u1 u2 u3 u5
    assert report.overall.alpha == pytest.approx(krippendorff.alpha(reliability_data=reliability,
                                                                    level_of_measurement="nominal"))
    per_class = {c.class_index: c for c in report.per_class}
    assert per_class[2].alpha == pytest.approx(3 / 7)
    assert (per_class[2].n_items, per_class[2].n_items_with_class) == (4, 1)
    for cls in (0, 1):
        binary = [[np.nan if np.isnan(v) else float(v == cls) for v in row] for row in reliability]
        assert per_class[cls].alpha == pytest.approx(krippendorff.alpha(reliability_data=binary,
                                                                        level_of_measurement="nominal"))


def test_alpha_is_undefined_without_overlap_or_variety():
    assert math.isnan(ag.alpha(ag.votes_frame([(1, "a", 0), (2, "b", 1)])).overall.alpha)
    same = ag.alpha(ag.votes_frame([(1, "a", 3), (1, "b", 3), (2, "a", 3), (2, "b", 3)]))
    assert math.isnan(same.overall.alpha) and same.overall.n_items == 2


def test_team_agreement_orders_the_pairs(team):
    _, votes, _, _ = team
    kappa = ag.pairwise_kappa(votes)
    assert kappa.kappa.loc["ann95", "ann85"] > kappa.kappa.loc["ann95", "ann60"] > 0.3
    assert 0.4 < ag.alpha(votes).overall.alpha < 0.9


def test_agreement_over_time_shows_a_team_converging():
    rng = np.random.default_rng(2)
    start = datetime(2024, 5, 1, 9, tzinfo=timezone.utc)
    rows = []
    for day, agree in ((0, 0.0), (1, 0.9)):
        for i in range(40):
            item = day * 100 + i
            first = int(rng.integers(0, 10))
            second = first if rng.random() < agree else int((first + rng.integers(1, 10)) % 10)
            when = start + timedelta(days=day, minutes=i)
            rows += [(item, "a", first, when.isoformat()), (item, "b", second, (when + timedelta(seconds=5)).isoformat())]
    rows += [(500, "a", 1, start.isoformat()), (500, "b", 1, (start + timedelta(days=1)).isoformat())]
    rows += [(600, "a", 4, start.isoformat())]   # one vote: not in any period
    votes = ag.votes_frame(rows)
    daily = ag.agreement_over_time(votes, "D")
    assert [p.n_items for p in daily] == [40, 41]   # item 500 counts on the day its second vote came
    assert daily[0].start == datetime(2024, 5, 1, tzinfo=timezone.utc) == daily[1].start - timedelta(days=1)
    assert daily[0].alpha < 0.1 and daily[1].alpha > 0.8
    assert daily[0].unanimous == 0.0 and daily[1].unanimous > 0.85
    equal = ag.agreement_over_time(votes, 4)
    assert sum(p.n_items for p in equal) == 81 and len(equal) == 4
    assert [p.n_items for p in equal[1:3]] == [0, 0] and math.isnan(equal[1].alpha)
    first_done, last_done = start + timedelta(seconds=5), start + timedelta(days=1, minutes=39, seconds=5)
    assert (equal[0].start, equal[-1].end) == (first_done, last_done)   # the first and last completed overlap
    with pytest.raises(ag.AgreementError, match="time of each vote"):
        ag.agreement_over_time(ag.votes_frame([(1, "a", 0)]), 3)


# ---------------------------------------------------------------- votes

def test_votes_table_and_cleanlab_format():
    votes = ag.votes_frame([(7, "bo", 2), (3, "al", 1), (7, "al", 0)])
    matrix = ag.multiannotator_matrix(votes)
    assert list(matrix.columns) == ["al", "bo"] and matrix.index.tolist() == [3, 7]
    assert matrix.loc[7].tolist() == [0.0, 2.0] and math.isnan(matrix.loc[3, "bo"])
    assert ag.voted_items(votes).tolist() == [3, 7]
    assert ag.overlapped(votes)[ag.ITEM].tolist() == [7, 7]
    with pytest.raises(ag.AgreementError, match="al has two votes on item 3"):
        ag.votes_frame([(3, "al", 1), (3, "al", 2)])


def test_align_probs_keeps_what_the_model_scored():
    votes = ag.votes_frame([(5, "a", 0), (5, "b", 1), (9, "a", 2), (2, "a", 1), (4, "b", 3)])
    scored = np.array([9, 2, 5])        # item 4 not scored; class 3 unknown to a 3-class model anyway
    probs = np.array([[0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1]])
    kept, rows, left_out = ag.align_probs(votes, scored, probs)
    assert left_out == 1 and ag.voted_items(kept).tolist() == [2, 5, 9]
    assert rows.tolist() == [probs[1].tolist(), probs[2].tolist(), probs[0].tolist()]


# ---------------------------------------------------------------- overlap selection

def test_overlap_hits_the_share_and_never_serves_an_item_twice_to_one_person():
    """Five annotators work through 2,000 items: overlapped items first, each to k different people."""
    rng = np.random.default_rng(11)
    item_ids = list(range(1000, 3000))
    plan = ag.choose_overlap_items(item_ids, share=0.10, k=2, rng=rng)
    assert len(plan.items) == 200 and plan.items <= set(item_ids)
    annotators = [f"ann{i}" for i in range(5)]
    fresh = iter(item_ids)
    votes = ag.votes_frame([], with_times=False)
    rows: list[tuple[int, str, int]] = []
    open_overlap: list[int] = []      # overlapped items that still want votes
    for turn in range(2400):
        who = annotators[int(rng.integers(0, 5))]
        item = next((i for i in open_overlap if ag.eligible_for_overlap(i, who, votes, plan.k)), None)
        if item is None:
            item = next(fresh, None)
            if item is None:
                break
            if plan.votes_wanted(item) > 1:
                open_overlap.append(item)
        rows.append((item, who, int(rng.integers(0, 10))))
        votes = ag.votes_frame(rows)     # raises if anyone voted twice on an item
        if item in open_overlap and votes[ag.ITEM].eq(item).sum() == plan.k:
            open_overlap.remove(item)
    counts = votes.groupby(ag.ITEM).size()
    assert len(counts) == 2000 and not open_overlap
    assert abs((counts >= 2).mean() - 0.10) <= 0.02
    assert set(counts[counts >= 2].index) == plan.items and counts.max() == 2


def test_overlap_choice_is_random_and_reproducible():
    ids = np.arange(5000)
    a = ag.choose_overlap_items(ids, share=0.1, k=3, rng=np.random.default_rng(1))
    b = ag.choose_overlap_items(ids, share=0.1, k=3, rng=np.random.default_rng(1))
    c = ag.choose_overlap_items(ids, share=0.1, k=3, rng=np.random.default_rng(2))
    assert a == b and a.items != c.items and len(a.items) == 500
    assert abs(np.mean(list(a.items)) - 2500) < 150       # spread over the whole range, not one end
    assert a.votes_wanted(next(iter(a.items))) == 3
    assert a.votes_wanted(next(i for i in ids if int(i) not in a.items)) == 1
    assert len(ag.choose_overlap_items(range(7), share=0.5).items) == 4   # half up
    with pytest.raises(ag.AgreementError, match="between 0 and 1"):
        ag.choose_overlap_items(ids, share=1.5)
    with pytest.raises(ag.AgreementError, match="at least 2"):
        ag.choose_overlap_items(ids, k=1)


def test_eligible_for_overlap():
    votes = ag.votes_frame([(1, "a", 0), (2, "a", 0), (2, "b", 1)])
    assert not ag.eligible_for_overlap(1, "a", votes, k=2)      # never twice to the same person
    assert ag.eligible_for_overlap(1, "b", votes, k=2)
    assert not ag.eligible_for_overlap(2, "c", votes, k=2)      # already has k votes
    assert ag.eligible_for_overlap(2, "c", votes, k=3)
    assert ag.eligible_for_overlap(3, "a", votes, k=2)          # nobody has it yet


# ---------------------------------------------------------------- CLI on a real labels.db

def run_cli(paths, *argv: str, capsys) -> tuple[int, str, str]:
    """One `python -m activelearn` command in this process, parsed by the real CLI parser."""
    from activelearn.cli import build_parser

    args = build_parser().parse_args(list(argv))
    code = args.func(args, paths)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def team_home(seeded_home):
    """labels.db with 12 items: pre-labels, overlap, an undone vote and a vote withdrawn by a skip."""
    from tests.helpers import add_items

    items = add_items(seeded_home, 12)
    db = store.open_db(seeded_home.db)
    for item in items[:4]:
        store.record_label(db, item, "confirm", class_id=8, annotator="import")
    for k, item in enumerate(items[:8]):
        store.record_label(db, item, "confirm", class_id=k % 3, annotator="ann_a")
        store.record_label(db, item, "correct", class_id=k % 3 if k < 6 else 5, annotator="ann_b")
    store.record_label(db, items[8], "confirm", class_id=4, annotator="ann_a")
    store.record_label(db, items[8], "correct", class_id=6, annotator="ann_b")
    store.undo(db, annotator="ann_b", item_id=items[8])       # ann_b's vote on item 9 is gone
    store.record_label(db, items[9], "confirm", class_id=2, annotator="ann_b")
    store.record_label(db, items[9], "confirm", class_id=2, annotator="ann_a")
    store.record_label(db, items[9], "skip", annotator="ann_a")   # ann_a withdrew: item 10 has one vote
    store.record_label(db, items[0], "confirm", class_id=1, annotator="lead")
    store.record_label(db, items[6], "confirm", class_id=0, annotator="lead")
    return seeded_home, items


def test_cli_agreement_reads_latest_votes(team_home, capsys):
    paths, items = team_home
    code, out, _ = run_cli(paths, "agreement", "--json", capsys=capsys)
    assert code == 0
    report = json.loads(out)
    assert report["alpha"]["overall"]["n_items"] == 8          # items 1-8; 9 and 10 have one vote each
    assert report["kappa"]["annotators"] == ["ann_a", "ann_b", "lead"]
    a = [k % 3 for k in range(8)]
    b = [k % 3 if k < 6 else 5 for k in range(8)]
    pair = report["kappa"]["pairs"][0]
    assert pair["n_items"] == 8 and pair["kappa"] == pytest.approx(cohen_kappa_score(a, b))
    code, out, _ = run_cli(paths, "agreement", capsys=capsys)
    assert code == 0 and "8 overlapped item(s), 18 votes, 3 annotator(s)" in out


def test_cli_consensus_with_a_reference(team_home, capsys):
    paths, items = team_home
    code, out, _ = run_cli(paths, "consensus", "--reference", "lead", "--json", capsys=capsys)
    assert code == 0
    result = json.loads(out)
    assert result["reference_items"] == 2 and result["left_out_votes"] == 0
    by_item = {row["item_id"]: row for row in result["items"]}
    assert sorted(by_item) == items[:10]
    assert (by_item[items[8]]["consensus"], by_item[items[8]]["n_votes"]) == (4, 1)   # ann_a's vote alone
    assert (by_item[items[9]]["consensus"], by_item[items[9]]["n_votes"]) == (2, 1)
    annotators = {row["annotator"]: row for row in result["annotators"]}
    assert set(annotators) == {"ann_a", "ann_b"}
    assert annotators["ann_a"]["n_reference"] == 2 and annotators["ann_a"]["vs_reference"] == 0.5
    assert {entry["item_id"] for entry in result["queue"][:2]} == {items[6], items[7]}   # the two contested
    code, out, _ = run_cli(paths, "consensus", capsys=capsys)   # the lead's votes now count: item 1 is contested
    assert code == 0 and "3 contested item(s)" in out and f"item {items[0]}: " in out


def test_cli_consensus_without_overlap_says_why(seeded_home, capsys):
    from tests.helpers import add_items

    items = add_items(seeded_home, 2)
    db = store.open_db(seeded_home.db)
    store.record_label(db, items[0], "confirm", class_id=1, annotator="ann_a")
    with pytest.raises(ag.AgreementError, match="at least two annotators"):
        run_cli(seeded_home, "consensus", capsys=capsys)
    code, out, _ = run_cli(seeded_home, "agreement", capsys=capsys)
    assert code == 0 and "no item has votes from two annotators yet" in out
    with pytest.raises(ag.AgreementError, match="neither a number of periods nor a frequency"):
        run_cli(seeded_home, "agreement", "--bins", "fortnightly", capsys=capsys)


def test_majority_labels_survive_a_tie_nothing_can_break():
    rows = [(7, "a", 1), (7, "b", 1), (7, "c", 2), (7, "d", 2), (8, "a", 3)]
    assert ag.majority_labels(rows) == {7: 1}          # item 8 has one vote: no consensus needed
    labels = ag.majority_labels([(1, "a", 0), (1, "b", 4), (2, "a", 4), (2, "b", 4)])
    assert labels[2] == 4 and labels[1] in (0, 4)      # cleanlab breaks item 1's tie its own way
