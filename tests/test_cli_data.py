"""The data commands end to end: `python -m activelearn --home TMP ...`, checked against labels.db."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activelearn import FMNIST_CLASSES, store
from activelearn.synthetic import make_product_photo

REPO = Path(__file__).resolve().parents[1]


def run(home: Path, *args: str, user: str = "tester") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "USER": user}
    return subprocess.run([sys.executable, "-m", "activelearn", "--home", str(home), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def garment(seed: int) -> np.ndarray:
    """A light rectangle of varying size on black: enough to make distinct photos."""
    image = np.zeros((28, 28), np.uint8)
    image[3 + seed % 5: 25 - seed % 3, 4 + seed % 4: 24 - seed % 6] = 200
    return image


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    root = tmp_path / "catalog"
    for seed, folder in enumerate(["Sneaker", "Sneaker", "Bag", "unsorted"]):
        (root / folder).mkdir(parents=True, exist_ok=True)
        make_product_photo(garment(seed), size=(90, 120), rng=np.random.default_rng(seed)).save(
            root / folder / f"p{seed}.jpg", quality=90)
    return root


def events(home: Path) -> list[tuple]:
    db = store.open_db(home / "labels.db")
    return db.execute("SELECT item_id, action, class_id, annotator FROM labels ORDER BY id").fetchall()


def test_import_status_label_undo_and_classes(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    sneaker, bag, shirt = (FMNIST_CLASSES.index(name) for name in ("Sneaker", "Bag", "Shirt"))

    result = run(home, "import", str(catalog), "--label-from-folders", "--holdout-fraction", "0", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["added"], report["duplicates"], report["labeled"], report["rejected"]) == (4, 0, 3, [])
    assert report["warnings"] == ["1 file(s) imported unlabeled: folder 'unsorted' names no class"]
    assert events(home) == [(1, "confirm", bag, "import"), (2, "confirm", sneaker, "import"),
                            (3, "confirm", sneaker, "import")]

    again = run(home, "import", str(catalog))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[0] == ("added 0, duplicates 4, near-duplicates 0, labeled 0, "
                                            "rejected 0")

    status = json.loads(run(home, "status", "--json").stdout)
    assert status["items"] == {"pool": 4, "holdout": 0}
    assert status["labeled_per_class"]["pool"] == {"Bag": 1, "Sneaker": 2}
    assert status["unlabeled_pool"] == 1
    assert "unlabeled: pool 1, holdout 0" in run(home, "status").stdout

    labeled = run(home, "label", "4", "shirt")
    assert (labeled.returncode, labeled.stdout.strip()) == (0, "item 4: confirm as Shirt (event 4)")
    assert run(home, "label", "1", "Sneaker", "--action", "correct", "--annotator", "ann").returncode == 0
    assert run(home, "label", "2", "--action", "skip").returncode == 0
    assert events(home)[3:] == [(4, "confirm", shirt, "tester"), (1, "correct", sneaker, "ann"),
                                (2, "skip", None, "tester")]

    undone = run(home, "undo")  # the newest decision of $USER: the skip of item 2
    assert (undone.returncode, undone.stdout.strip()) == (0, "undid event 6: item 2 skip")
    assert store.label_state(store.open_db(home / "labels.db"))[2] == ("confirm", sneaker)
    assert run(home, "undo", "--item", "1", "--annotator", "ann").returncode == 0
    assert store.label_state(store.open_db(home / "labels.db"))[1] == ("confirm", bag)
    assert run(home, "undo", "--annotator", "nobody").stdout.strip() == "nothing to undo for annotator nobody"

    added = run(home, "classes", "add", "Bucket hat")
    assert (added.returncode, added.stdout.strip()) == (0, "added class 'Bucket hat' with id 10")
    assert run(home, "classes", "list").stdout.splitlines()[-1] == " 10  Bucket hat  (added)"
    assert run(home, "label", "3", "bucket HAT").returncode == 0
    assert store.label_state(store.open_db(home / "labels.db"))[3] == ("confirm", 10)


def test_bulk_labels_from_csv_are_all_or_nothing(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    assert run(home, "import", str(catalog), "--holdout-fraction", "0").returncode == 0

    good = tmp_path / "labels.csv"
    good.write_text("item,class\n1,Bag\n2,sneaker\n\n3,8\n")
    result = run(home, "label", "--csv", str(good), "--annotator", "bulk")
    assert (result.returncode, result.stdout.strip()) == (0, f"recorded 3 confirm event(s) from {good}")
    assert events(home) == [(1, "confirm", 8, "bulk"), (2, "confirm", 7, "bulk"), (3, "confirm", 8, "bulk")]

    headerless_with_a_typo = tmp_path / "typo.csv"
    headerless_with_a_typo.write_text("4,Bag\n1,Snekaer\n")
    failed = run(home, "label", "--csv", str(headerless_with_a_typo))
    assert failed.returncode == 2
    assert failed.stderr.startswith("error: unknown class 'Snekaer'; known classes:")
    assert len(failed.stderr.strip().splitlines()) == 1
    assert len(events(home)) == 3  # the good first row was not recorded either

    unknown_item = tmp_path / "unknown.csv"
    unknown_item.write_text("4,Bag\n99,Bag\n")
    assert run(home, "label", "--csv", str(unknown_item)).returncode == 2
    assert len(events(home)) == 3


def test_holdout_fraction_one_imports_a_labeled_test_set(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    help_text = " ".join(run(home, "import", "--help").stdout.split())
    assert "from 0 to 1 inclusive" in help_text and "1.0 puts every new item in the holdout" in help_text

    result = run(home, "import", str(catalog), "--label-from-folders", "--holdout-fraction", "1.0")
    assert result.returncode == 0, result.stderr
    status = json.loads(run(home, "status", "--json").stdout)
    assert status["items"] == {"pool": 0, "holdout": 4}
    assert status["labeled_per_class"]["holdout"] == {"Bag": 1, "Sneaker": 2}


def test_import_warns_when_most_photos_have_no_plain_background(tmp_path: Path, catalog: Path):
    busy = tmp_path / "street"
    busy.mkdir()
    for seed in range(5):  # colour noise to the edges: nothing for the 28x28 conversion to cut out
        noise = np.random.default_rng(seed).integers(0, 256, (80, 60, 3), dtype=np.uint8)
        Image.fromarray(noise).save(busy / f"busy{seed}.png")
    home = tmp_path / "home"

    plain = run(home, "import", str(catalog), str(busy))
    assert plain.returncode == 0, plain.stderr
    warnings = [line for line in plain.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1
    assert warnings[0].startswith("warning: 5 of 9 added photos are flagged 'no-plain-background': "
                                  "their 28x28 Fashion-MNIST conversion is poor")
    assert "the photo model (a pretrained backbone on the original photo) does not need a plain " \
           "background" in warnings[0]

    more = tmp_path / "more"
    more.mkdir()
    Image.fromarray(np.random.default_rng(9).integers(0, 256, (80, 60, 3), dtype=np.uint8)).save(more / "b.png")
    as_json = json.loads(run(home, "import", str(more), "--json").stdout)
    assert (as_json["added"], as_json["no_plain_background"]) == (1, 1)
    assert as_json["warnings"] == [warnings[0].removeprefix("warning: ").replace("5 of 9", "1 of 1")]

    calm = run(tmp_path / "calm", "import", str(catalog), "--json")
    assert json.loads(calm.stdout)["warnings"] == []


@pytest.mark.parametrize("args, message", [
    (("label", "1", "Scarf"), "error: unknown class 'Scarf'"),
    (("label", "1"), "error: confirm needs a CLASS"),
    (("label", "1", "Bag", "--action", "skip"), "error: skip takes no CLASS"),
    (("label", "42", "Bag"), "error: cannot label item 42: unknown item or class"),
    (("label",), "error: give ITEM CLASS"),
    (("classes", "add", "sneaker"), "error: class 'sneaker' already exists"),
    (("import", "x", "--holdout-fraction", "1.5"), "error: holdout fraction must be"),
])
def test_user_errors_exit_2_with_one_line(tmp_path: Path, args: tuple[str, ...], message: str):
    home = tmp_path / "home"
    result = run(home, *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_data_commands_do_not_load_tensorflow(tmp_path: Path, catalog: Path):
    script = ("import sys; from activelearn.cli import main; "
              "codes = [main(['--home', sys.argv[1], 'import', sys.argv[2]]), main(['--home', sys.argv[1], 'status']), "
              "main(['--home', sys.argv[1], 'label', '1', 'Bag'])]; "
              "assert codes == [0, 0, 0], codes; "
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')); "
              "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "home"), str(catalog)],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    # a CLI labeler starts a process per batch: label and status stay clear of scikit-learn too
    # (1.2 s of import, more than the rest of the command)
    script = ("import sys; from activelearn.cli import main; "
              "codes = [main(['--home', sys.argv[1], 'status']), main(['--home', sys.argv[1], 'label', '2', 'Bag'])]; "
              "assert codes == [0, 0], codes; "
              "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'sklearn')); "
              "assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path / "home")],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_a_csv_that_is_not_utf8_is_one_sentence_and_records_nothing(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    assert run(home, "import", str(catalog), "--holdout-fraction", "0").returncode == 0
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("item,class\n1,Bag\n2,Pullover é\n".encode("latin-1"))
    result = run(home, "label", "--csv", str(latin1))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {latin1} is not UTF-8 text (byte 0xe9 at offset 28): save it as "
                                     "UTF-8 CSV and try again; nothing was recorded")
    assert events(home) == []


def test_a_rerun_csv_stores_only_what_is_missing_and_leased_items_are_refused(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    assert run(home, "import", str(catalog), "--holdout-fraction", "0").returncode == 0
    labels = tmp_path / "labels.csv"
    labels.write_text("1,Bag\n2,Bag\n")
    assert run(home, "label", "--csv", str(labels), "--annotator", "bulk").returncode == 0
    again = run(home, "label", "--csv", str(labels), "--annotator", "bulk")
    assert again.stdout.strip() == f"recorded 0 confirm event(s) from {labels} (2 already recorded by an " \
                                   "earlier run of this file)"
    assert len(events(home)) == 2

    db = store.open_db(home / "labels.db")
    from activelearn import labeling
    assert labeling.lease(db, [3], "ann") == {3}                     # ann has item 3 on screen
    refused = run(home, "label", "3", "Bag", "--annotator", "bob")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "error: item #3 is being labeled by ann, so your confirm was not recorded"
    labels.write_text("3,Bag\n4,Bag\n")
    refused = run(home, "label", "--csv", str(labels), "--annotator", "bob")
    assert refused.returncode == 2 and "1 item(s) are being labeled by others right now (#3 (ann))" in refused.stderr
    assert len(events(home)) == 2
    assert run(home, "label", "3", "Bag", "--annotator", "ann").returncode == 0, "ann's own lease"


def test_a_retried_label_with_a_request_id_is_stored_once(tmp_path: Path, catalog: Path):
    home = tmp_path / "home"
    assert run(home, "import", str(catalog), "--holdout-fraction", "0").returncode == 0
    first = run(home, "label", "2", "Bag", "--request-id", "r-17")
    retry = run(home, "label", "2", "Bag", "--request-id", "r-17")
    assert first.stdout == retry.stdout == "item 2: confirm as Bag (event 1)\n"
    assert events(home) == [(2, "confirm", FMNIST_CLASSES.index("Bag"), "tester")]


def test_cli_labelers_lease_what_they_query(tmp_path: Path, catalog: Path):
    """No model yet: `query --lease` serves random unlabeled items and keeps them from other labelers."""
    home = tmp_path / "home"
    assert run(home, "import", str(catalog), "--holdout-fraction", "0").returncode == 0
    first = json.loads(run(home, "query", "--n", "2", "--lease", "--annotator", "cli1", "--json").stdout)
    second = json.loads(run(home, "query", "--n", "4", "--lease", "--annotator", "cli2", "--json").stdout)
    mine, theirs = {e["item_id"] for e in first}, {e["item_id"] for e in second}
    assert len(mine) == 2 and len(theirs) == 2 and not mine & theirs, "only the two free items"
    leases = dict(store.open_db(home / "labels.db").execute("SELECT item_id, annotator FROM leases").fetchall())
    assert leases == {**dict.fromkeys(mine, "cli1"), **dict.fromkeys(theirs, "cli2")}
    peek = json.loads(run(home, "query", "--n", "4", "--json").stdout)
    assert len(peek) == 0 or {e["item_id"] for e in peek} <= mine | theirs


def test_import_url_lists_only_when_asked_and_private_hosts_only_when_allowed(tmp_path: Path, catalog: Path):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(catalog / "Bag"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    home = tmp_path / "home"
    urls = tmp_path / "urls.txt"
    url_root = f"http://127.0.0.1:{server.server_address[1]}"
    urls.write_text(f"{url_root}/p2.jpg\n")
    try:
        plain = run(home, "import", str(urls), "--json")
        assert plain.returncode == 0, plain.stderr
        assert "only in URL-list mode" in json.loads(plain.stdout)["rejected"][0]["reason"]
        local = run(home, "import", str(urls), "--url-list", "--json")
        assert "private, loopback or link-local" in json.loads(local.stdout)["rejected"][0]["reason"]
        assert events(home) == [] and store.open_db(home / "labels.db").execute(
            "SELECT COUNT(*) FROM items").fetchone()[0] == 0
        allowed = run(home, "import", str(urls), "--url-list", "--allow-private-urls", "--json")
        assert json.loads(allowed.stdout)["added"] == 1, allowed.stdout
        db = store.open_db(home / "labels.db")
        assert db.execute("SELECT source, original_name FROM items").fetchall() == [("url", f"{url_root}/p2.jpg")]
    finally:
        server.shutdown()
        server.server_close()


def test_overlap_is_set_and_shown_from_the_command_line(tmp_path: Path):
    home = tmp_path / "home"
    shown = run(home, "overlap")
    assert shown.returncode == 0 and "overlap off" in shown.stdout
    assert "overlap on: 20% of labeled items go to 3 annotators" in run(home, "overlap", "--share", "0.2",
                                                                        "--k", "3").stdout
    refused = run(home, "overlap", "--share", "2")
    assert refused.returncode == 2 and "between 0 and 1" in refused.stderr and "Traceback" not in refused.stderr
    from activelearn import labeling
    assert labeling.overlap_setting(store.open_db(home / "labels.db")) == labeling.Overlap(0.2, 3, 0)
