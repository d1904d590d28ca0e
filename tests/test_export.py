"""Curated export: every format read back by its consumer library, filters, safe paths, no overwrite."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from activelearn import FMNIST_CLASSES, label_issues, store
from activelearn.cli import main as cli_main
from activelearn.config import Paths, resolve_paths
from activelearn.errors import ActiveLearnError, StoreError
from activelearn.export import ExportFilters, class_folder_names, export_dataset, exporter
from activelearn.fmnist import TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS, read_idx
from activelearn.ingest import import_paths
from activelearn.synthetic import make_product_photo
from tests.helpers import legacy_class

SNEAKER, BAG, TSHIRT = (FMNIST_CLASSES.index(n) for n in ("Sneaker", "Bag", "T-shirt/top"))
HAT = 10
ALL_CLASSES = [*FMNIST_CLASSES, "hat/cap"]
CATALOG = {"Sneaker": ["s1", "s2", "s3"], "Bag": ["b1", "b2"], "T-shirt_top": ["t1", "t2"],
           "unsorted": ["u1", "u2", "u3", "u4"]}
#: What a default export holds: stem -> (split, class id).
EXPECTED = {"s1": ("train", SNEAKER), "s2": ("train", SNEAKER), "b1": ("train", BAG),
            "b2": ("train", BAG), "t1": ("train", TSHIRT), "u1": ("train", HAT),
            "u2": ("train", HAT), "t2": ("test", TSHIRT)}
OLD_TIME = "2020-03-01T10:00:00.000+00:00"


def garment(seed: int) -> np.ndarray:
    """A light rectangle of varying size on black: enough to make distinct photos."""
    image = np.zeros((28, 28), np.uint8)
    image[2 + seed % 6: 26 - seed % 4, 3 + seed % 5: 25 - seed % 7] = 120 + 10 * seed
    return image


@pytest.fixture
def home(tmp_path: Path) -> tuple[Paths, dict[str, int]]:
    """Eleven imported photos (b2 a PNG) with every kind of decision history; returns (paths, stem -> id).

    s1: import, then carol (back in 2020); s2: import, then alice (with a prediction);
    s3: rejected by bob; b2: alice's correction undone; t2: holdout; u1/u2: the user
    class "hat/cap" by alice/bob; u3: skipped; u4: never labeled.
    Near-duplicate chain: b1 -> s2 -> s1.
    """
    catalog = tmp_path / "catalog"
    seed = 0
    for folder, stems in CATALOG.items():
        (catalog / folder).mkdir(parents=True)
        for stem in stems:
            photo = make_product_photo(garment(seed), size=(60, 80), rng=np.random.default_rng(seed))
            suffix = ".png" if stem == "b2" else ".jpg"
            photo.save(catalog / folder / f"{stem}{suffix}")
            seed += 1
    paths = resolve_paths(tmp_path / "home", tmp_path / "no-fmnist")
    report = import_paths([catalog], paths=paths, label_from_folders=True, holdout_fraction=0.0)
    assert report.added == 11 and report.labeled == 7
    db = store.open_db(paths.db)
    ids = {Path(name).stem: item for item, name in db.execute("SELECT id, original_name FROM items")}
    db.execute("UPDATE items SET near_dup_of = NULL")
    db.execute("UPDATE items SET near_dup_of = ? WHERE id = ?", [ids["s1"], ids["s2"]])
    db.execute("UPDATE items SET near_dup_of = ? WHERE id = ?", [ids["s2"], ids["b1"]])
    db.execute("UPDATE items SET split = 'holdout' WHERE id = ?", [ids["t2"]])
    assert legacy_class(db, "hat/cap") == HAT
    store.record_label(db, ids["s2"], "confirm", class_id=SNEAKER, annotator="alice",
                       model_version="v1", predicted_class_id=SNEAKER, confidence=0.93)
    store.record_label(db, ids["u1"], "confirm", class_id=HAT, annotator="alice")
    store.record_label(db, ids["u2"], "correct", class_id=HAT, annotator="bob",
                       model_version="v1", predicted_class_id=BAG, confidence=0.55)
    store.record_label(db, ids["s3"], "reject", annotator="bob")
    store.record_label(db, ids["u3"], "skip", annotator="alice")
    store.record_label(db, ids["b2"], "correct", class_id=SNEAKER, annotator="alice")
    store.undo(db, annotator="alice", item_id=ids["b2"])
    db.execute("INSERT INTO labels (item_id, class_id, action, annotator, created_at) "
               "VALUES (?, ?, 'confirm', 'carol', ?)", [ids["s1"], SNEAKER, OLD_TIME])
    return paths, ids


def original_bytes(paths: Paths, item_id: int) -> bytes:
    stored = store.get_item(store.open_db(paths.db), item_id)["stored_path"]
    return (paths.home / stored).read_bytes()


def expected_files(ids: dict[str, int], paths: Paths) -> set[str]:
    db = store.open_db(paths.db)
    folders = {SNEAKER: "Sneaker", BAG: "Bag", TSHIRT: "T-shirt_top", HAT: "hat_cap"}
    files = set()
    for stem, (split, cls) in EXPECTED.items():
        sha = store.get_item(db, ids[stem])["sha256"]
        files.add(f"{split}/{folders[cls]}/{sha}.{'png' if stem == 'b2' else 'jpg'}")
    return files


def exported_ids(paths: Paths, ids: dict[str, int], tmp_path: Path, filters: ExportFilters) -> set[str]:
    out = tmp_path / f"filtered-{len(list(tmp_path.iterdir()))}.jsonl"
    export_dataset(paths, "jsonl", out, filters=filters)
    by_id = {v: k for k, v in ids.items()}
    return {by_id[item] for item in pd.read_json(out, lines=True)["item_id"]}


# ---------------------------------------------------------------- formats

def test_imagefolder_keeps_the_original_photos_and_loads_with_keras(home, tmp_path):
    import keras

    paths, ids = home
    progress: list[tuple[int, int]] = []
    result = export_dataset(paths, "imagefolder", tmp_path / "out" / "set",
                            progress=lambda done, total: progress.append((done, total)))
    out = tmp_path / "out" / "set"
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == expected_files(ids, paths) | {"README.md"}
    for stem in EXPECTED:
        matches = list(out.rglob(f"{store.get_item(store.open_db(paths.db), ids[stem])['sha256']}.*"))
        assert len(matches) == 1 and matches[0].read_bytes() == original_bytes(paths, ids[stem])
        assert hashlib.sha256(matches[0].read_bytes()).hexdigest() == matches[0].stem
    assert progress[-1] == (8, 8) and len(progress) == 8
    assert result.counts == {"train": {"T-shirt/top": 1, "Bag": 2, "Sneaker": 2, "hat/cap": 2},
                             "test": {"T-shirt/top": 1}}
    assert result.files == {"train/Sneaker": 2, "train/Bag": 2, "train/T-shirt_top": 1,
                            "train/hat_cap": 2, "test/T-shirt_top": 1, "README.md": 1}
    assert result.total == 8 and result.warnings == []

    train = keras.utils.image_dataset_from_directory(out / "train", image_size=(32, 32), batch_size=16,
                                                     shuffle=False, verbose=False)
    assert train.class_names == ["Bag", "Sneaker", "T-shirt_top", "hat_cap"]
    labels = np.concatenate([y.numpy() for _, y in train])
    assert np.bincount(labels).tolist() == [2, 2, 1, 2]
    test = keras.utils.image_dataset_from_directory(out / "test", image_size=(32, 32), batch_size=16,
                                                    verbose=False)
    assert test.class_names == ["T-shirt_top"]

    card = (out / "README.md").read_text()
    assert "| 10 | hat/cap | hat_cap | 2 | 0 | 2 |" in card
    assert "| 0 | T-shirt/top | T-shirt_top | 1 | 1 | 2 |" in card
    assert "| alice | 2 |" in card and "| import | 4 |" in card and "| folder | 8 |" in card
    assert "Model version active at export: none" in card
    assert "Filters: none" in card


def test_imagefolder_zip_has_the_same_layout_stored_uncompressed(home, tmp_path):
    paths, ids = home
    result = export_dataset(paths, "imagefolder", tmp_path / "set.zip")
    assert result.path == tmp_path / "set.zip"
    with zipfile.ZipFile(tmp_path / "set.zip") as archive:
        names = set(archive.namelist())
        assert names == expected_files(ids, paths) | {"README.md"}
        db = store.open_db(paths.db)
        for stem in EXPECTED:
            sha = store.get_item(db, ids[stem])["sha256"]
            name = next(n for n in names if sha in n)
            assert archive.read(name) == original_bytes(paths, ids[stem])
            assert archive.getinfo(name).compress_type == zipfile.ZIP_STORED
        assert "hat/cap" in archive.read("README.md").decode()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_fmnist_format_reads_back_like_fashion_mnist(home, tmp_path):
    paths, ids = home
    export_dataset(paths, "fmnist", tmp_path / "fm")
    out = tmp_path / "fm"
    assert {p.name for p in out.iterdir()} == {TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS,
                                               "fashion-mnist.npz", "classes.txt", "README.md"}
    x_train, y_train = read_idx(out / TRAIN_IMAGES), read_idx(out / TRAIN_LABELS)
    x_test, y_test = read_idx(out / TEST_IMAGES), read_idx(out / TEST_LABELS)
    train_stems = sorted((s for s, (split, _) in EXPECTED.items() if split == "train"), key=ids.get)
    db = store.open_db(paths.db)
    assert x_train.dtype == np.uint8 and x_train.shape == (7, 28, 28) and x_test.shape == (1, 28, 28)
    np.testing.assert_array_equal(x_train, store.item_pixels(db, [ids[s] for s in train_stems]))
    np.testing.assert_array_equal(x_test, store.item_pixels(db, [ids["t2"]]))
    assert y_train.tolist() == [EXPECTED[s][1] for s in train_stems] and y_test.tolist() == [TSHIRT]
    assert HAT in y_train.tolist()
    with np.load(out / "fashion-mnist.npz") as npz:
        assert sorted(npz.files) == ["x_test", "x_train", "y_test", "y_train"]
        for name, array in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test), ("y_test", y_test)):
            np.testing.assert_array_equal(npz[name], array)
            assert npz[name].dtype == np.uint8
    assert (out / "classes.txt").read_text().splitlines() == ALL_CLASSES


def test_fmnist_zip(home, tmp_path):
    paths, _ = home
    export_dataset(paths, "fmnist", tmp_path / "fm.zip")
    with zipfile.ZipFile(tmp_path / "fm.zip") as archive:
        archive.extractall(tmp_path / "unzipped")
    assert read_idx(tmp_path / "unzipped" / TRAIN_LABELS).shape == (7,)
    assert (tmp_path / "unzipped" / "classes.txt").read_text().splitlines()[HAT] == "hat/cap"


def test_csv_and_jsonl_manifests_carry_the_decision_history(home, tmp_path):
    paths, ids = home
    export_dataset(paths, "csv", tmp_path / "m.csv")
    export_dataset(paths, "jsonl", tmp_path / "m.jsonl")
    as_csv = pd.read_csv(tmp_path / "m.csv", keep_default_na=False).set_index("item_id")
    as_jsonl = pd.read_json(tmp_path / "m.jsonl", lines=True).set_index("item_id")
    assert sorted(as_csv.index) == sorted(as_jsonl.index) == sorted(ids[s] for s in EXPECTED)
    db = store.open_db(paths.db)
    sha = {stem: store.get_item(db, item)["sha256"] for stem, item in ids.items()}
    for stem, (split, cls) in EXPECTED.items():
        for manifest in (as_csv, as_jsonl):
            row = manifest.loc[ids[stem]]
            assert (row["sha256"], row["split"], row["label"], row["label_index"]) == \
                (sha[stem], split, ALL_CLASSES[cls], cls)
            assert row["source"] == "folder" and Path(row["original_name"]).stem == stem
    s2, u2, b2, s1 = (as_jsonl.loc[ids[s]] for s in ("s2", "u2", "b2", "s1"))
    assert (s2["annotators"], s2["decisions"], s2["labeled_by"]) == (["alice", "import"], 2, "alice")
    assert (s2["model_version"], s2["predicted_label"], s2["confidence"]) == ("v1", "Sneaker", 0.93)
    assert s2["first_decision_at"] < s2["last_decision_at"]
    assert (u2["annotators"], u2["decision"], u2["predicted_label"], u2["predicted_index"]) == \
        (["bob"], "correct", "Bag", BAG)
    assert (b2["annotators"], b2["decisions"], b2["decision"]) == (["import"], 1, "confirm")  # undo undone
    assert (s1["labeled_by"], s1["last_decision_at"]) == ("carol", pd.Timestamp(OLD_TIME))  # pandas parses *_at
    assert as_csv.loc[ids["s1"], "last_decision_at"] == OLD_TIME
    assert as_csv.loc[ids["s2"], "annotators"] == "alice;import"
    assert as_csv.loc[ids["t1"], "predicted_label"] == ""
    groups = as_jsonl["near_dup_group"]
    assert groups[ids["s1"]] == groups[ids["s2"]] == groups[ids["b1"]] == sha["s1"]
    assert groups[ids["t1"]] == sha["t1"]
    card = (tmp_path / "m.csv.README.md").read_text()
    assert "pd.read_csv(\"m.csv\")" in card and "| 10 | hat/cap |" in card


def test_parquet_has_image_bytes_labels_and_hugging_face_features(home, tmp_path):
    paths, ids = home
    export_dataset(paths, "parquet", tmp_path / "set.parquet")
    table = pq.read_table(tmp_path / "set.parquet")
    features = json.loads(table.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["label"] == {"names": ALL_CLASSES, "_type": "ClassLabel"}
    assert list(features) == table.column_names  # datasets requires one feature per column
    assert features["annotators"] == {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"}
    assert [f.name for f in table.schema.field("image").type] == ["bytes", "path"]
    frame = table.to_pandas().set_index("item_id")
    assert sorted(frame.index) == sorted(ids[s] for s in EXPECTED)
    for stem, (split, cls) in EXPECTED.items():
        row = frame.loc[ids[stem]]
        assert (row["label"], row["label_name"], row["split"]) == (cls, ALL_CLASSES[cls], split)
        assert row["image"]["bytes"] == original_bytes(paths, ids[stem])
        assert row["image"]["path"].startswith(row["sha256"])
        assert Image.open(io.BytesIO(row["image"]["bytes"])).size == (60, 80)
    assert list(frame.loc[ids["s2"], "annotators"]) == ["alice", "import"]
    assert (tmp_path / "set.parquet.README.md").is_file()


def test_items_without_a_stored_original_export_their_28x28_image(home, tmp_path):
    paths, _ = home
    db = store.open_db(paths.db)
    pixels = garment(3)
    with store.transaction(db):
        item = store.insert_item(db, sha256="f" * 64, source="fmnist", original_name="fmnist-3",
                                 pixels=pixels)
    store.record_label(db, item, "confirm", class_id=BAG, annotator="alice")
    result = export_dataset(paths, "imagefolder", tmp_path / "set")
    png = tmp_path / "set" / "train" / "Bag" / f"{'f' * 64}.png"
    np.testing.assert_array_equal(np.asarray(Image.open(png)), pixels)
    assert any("no stored original" in w for w in result.warnings)
    assert "no stored original" in (tmp_path / "set" / "README.md").read_text()


# ---------------------------------------------------------------- filters

def test_filters_select_by_class_annotator_origin_date_and_split(home, tmp_path):
    paths, ids = home
    everything = set(EXPECTED)
    assert exported_ids(paths, ids, tmp_path, ExportFilters()) == everything
    assert exported_ids(paths, ids, tmp_path, ExportFilters(classes=("hat/cap",))) == {"u1", "u2"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(classes=("HAT/CAP", "Bag"))) == {"u1", "u2", "b1", "b2"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(only_human_confirmed=True)) == {"s1", "s2", "u1", "u2"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(annotator="bob")) == {"u2"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(include_holdout=False)) == everything - {"t2"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(until="2020-03-01")) == {"s1"}
    assert exported_ids(paths, ids, tmp_path, ExportFilters(since="2021-01-01")) == everything - {"s1"}
    assert exported_ids(paths, ids, tmp_path,
                        ExportFilters(since="2020-03-01T10:00:00+00:00", until="2020-03-01T10:00:00Z")) == {"s1"}
    assert exported_ids(paths, ids, tmp_path,
                        ExportFilters(only_human_confirmed=True, since="2021-01-01", classes=("Sneaker",))) == {"s2"}


def test_filters_refuse_unknown_classes_bad_dates_and_empty_selections(home, tmp_path):
    paths, _ = home
    with pytest.raises(StoreError, match="unknown class 'Hats'"):
        export_dataset(paths, "csv", tmp_path / "a.csv", filters=ExportFilters(classes=("Hats",)))
    with pytest.raises(ActiveLearnError, match="bad date"):
        export_dataset(paths, "csv", tmp_path / "a.csv", filters=ExportFilters(since="last tuesday"))
    with pytest.raises(ActiveLearnError, match="nothing to export"):
        export_dataset(paths, "csv", tmp_path / "a.csv", filters=ExportFilters(until="2020-03-01T09:59:59"))
    with pytest.raises(ActiveLearnError, match="unknown export format"):
        export_dataset(paths, "tfrecord", tmp_path / "a")
    assert list(tmp_path.glob("a*")) == []


def test_exclude_label_errors_leaves_out_open_issues_until_resolved(home, tmp_path):
    paths, ids = home
    with pytest.raises(ActiveLearnError, match="label-errors"):
        export_dataset(paths, "csv", tmp_path / "a.csv", filters=ExportFilters(exclude_label_errors=True))
    db = store.open_db(paths.db)
    issue = label_issues.LabelIssue(ids["u1"], HAT, BAG, 0.02, label_issues.CONFIDENT_LEARNING)
    label_issues.save_scan(db, [issue], settings={"k": 5}, labeled=8)
    filters = ExportFilters(exclude_label_errors=True)
    assert exported_ids(paths, ids, tmp_path, filters) == set(EXPECTED) - {"u1"}
    label_issues.resolve_issue(db, ids["u1"], None, "lead")
    assert exported_ids(paths, ids, tmp_path, filters) == set(EXPECTED)


# ---------------------------------------------------------------- safety

def test_class_folder_names_are_safe_and_unique():
    classes = [store.ClassInfo(i, name, None) for i, name in enumerate(
        ["T-shirt/top", "../../etc", "Schürze", "帽子", "con", "hat/cap", "hat cap", "Hat?", "hat!", ".."])]
    folders = class_folder_names(classes)
    assert folders == {0: "T-shirt_top", 1: "etc", 2: "Schurze", 3: "class_3", 4: "con_",
                       5: "hat_cap_5", 6: "hat_cap_6", 7: "Hat_7", 8: "hat_8", 9: "class_9"}
    assert len({f.casefold() for f in folders.values()}) == len(folders)
    # A suffixed name can meet a class that already has that name: suffix again.
    tricky = class_folder_names([store.ClassInfo(0, "hat/cap", None), store.ClassInfo(1, "hat cap", None),
                                 store.ClassInfo(2, "hat_cap_0", None)])
    assert tricky == {0: "hat_cap_0_0", 1: "hat_cap_1", 2: "hat_cap_0_2"}


def test_hostile_class_names_stay_inside_the_export(home, tmp_path):
    paths, ids = home
    db = store.open_db(paths.db)
    evil = legacy_class(db, "../../escape")
    store.record_label(db, ids["u4"], "confirm", class_id=evil, annotator="alice")
    out = tmp_path / "nest" / "set"
    export_dataset(paths, "imagefolder", out)
    assert (out / "train" / "escape").is_dir()
    assert {p.name for p in tmp_path.iterdir()} == {"catalog", "home", "nest"}
    assert {p.name for p in (tmp_path / "nest").iterdir()} == {"set"}


def test_existing_output_is_never_overwritten_without_permission(home, tmp_path):
    paths, _ = home
    target = tmp_path / "m.csv"
    export_dataset(paths, "csv", target, filters=ExportFilters(annotator="bob"))
    before = target.read_bytes()
    with pytest.raises(ActiveLearnError, match="already exists"):
        export_dataset(paths, "csv", target)
    assert target.read_bytes() == before
    export_dataset(paths, "csv", target, overwrite=True)
    assert len(pd.read_csv(target)) == 8

    lone_card = tmp_path / "n.csv.README.md"
    lone_card.write_text("mine")
    with pytest.raises(ActiveLearnError, match="n.csv.README.md already exists"):
        export_dataset(paths, "csv", tmp_path / "n.csv")
    assert lone_card.read_text() == "mine" and not (tmp_path / "n.csv").exists()

    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(ActiveLearnError, match="already exists"):
        export_dataset(paths, "imagefolder", folder)
    assert [p.name for p in folder.iterdir()] == ["keep.txt"]
    export_dataset(paths, "imagefolder", folder, overwrite=True)
    assert not (folder / "keep.txt").exists() and (folder / "README.md").is_file()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("name", ["set", "set.zip", "set.parquet"])
def test_a_failed_export_leaves_no_partial_output(home, tmp_path, name):
    paths, ids = home
    db = store.open_db(paths.db)
    (paths.home / store.get_item(db, ids["u2"])["stored_path"]).unlink()
    out_dir = tmp_path / "exports"
    out_dir.mkdir()
    fmt = "parquet" if name.endswith(".parquet") else "imagefolder"
    with pytest.raises(ActiveLearnError, match=f"original photo of item {ids['u2']} is missing"):
        export_dataset(paths, fmt, out_dir / name)
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_the_card_is_published_before_the_data_and_never_left_alone(home, tmp_path, monkeypatch, fmt):
    paths, _ = home
    real_publish = exporter.publish
    card_when_data_appeared: list[bool] = []

    def watching(staging: Path, target: Path, overwrite: bool) -> None:
        if not target.name.endswith(".README.md"):
            card_when_data_appeared.append(target.with_name(target.name + ".README.md").is_file())
        real_publish(staging, target, overwrite)

    monkeypatch.setattr(exporter, "publish", watching)
    export_dataset(paths, fmt, tmp_path / "ok" / f"set.{fmt}")
    assert card_when_data_appeared == [True]

    for failing_suffix in (".README.md", f".{fmt}"):  # a crash publishing the card, then the data
        def failing(staging: Path, target: Path, overwrite: bool, suffix: str = failing_suffix) -> None:
            if target.name.endswith(suffix):
                raise OSError("disk full")
            real_publish(staging, target, overwrite)

        monkeypatch.setattr(exporter, "publish", failing)
        out = tmp_path / f"failed{failing_suffix}" / f"set.{fmt}"
        with pytest.raises(OSError, match="disk full"):
            export_dataset(paths, fmt, out)
        assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------- command line

def test_cli_export_prints_json_and_refuses_to_overwrite(home, tmp_path, capsys):
    paths, _ = home
    out = tmp_path / "hats.jsonl"
    argv = ["--home", str(paths.home), "export", "--format", "jsonl", "--out", str(out),
            "--class", "hat/cap", "--only-human", "--json"]
    assert cli_main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["total"] == 2 and report["counts"] == {"train": {"hat/cap": 2}}
    assert report["path"] == str(out)
    assert cli_main(argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main([*argv, "--overwrite", "--no-holdout", "--annotator", "bob"]) == 0
    assert pd.read_json(out, lines=True)["labeled_by"].tolist() == ["bob"]


def test_where_several_people_voted_the_export_and_training_use_the_majority(home, tmp_path):
    from activelearn.retrain import _human_labels

    paths, ids = home
    db = store.open_db(paths.db)
    store.record_label(db, ids["u1"], "confirm", class_id=HAT, annotator="cy")     # alice said hat/cap too
    store.record_label(db, ids["u1"], "correct", class_id=BAG, annotator="bob")    # the last vote, outvoted
    store.record_label(db, ids["u2"], "confirm", class_id=BAG, annotator="alice")  # bob said hat/cap
    store.record_label(db, ids["u2"], "confirm", class_id=BAG, annotator="cy")     # 2 to 1 for Bag
    export_dataset(paths, "jsonl", tmp_path / "m.jsonl")
    manifest = pd.read_json(tmp_path / "m.jsonl", lines=True).set_index("item_id")
    u1, u2 = manifest.loc[ids["u1"]], manifest.loc[ids["u2"]]
    assert (u1["label_index"], u1["decision"], u1["annotators"]) == (HAT, "consensus", ["alice", "bob", "cy"])
    assert (u2["label_index"], u2["decision"]) == (BAG, "confirm")   # the last vote is the majority already
    hats = exported_ids(paths, ids, tmp_path, ExportFilters(classes=("hat/cap",)))
    assert hats == {"u1"}                                            # by the consensus, not the last vote
    human_ids, human_y = _human_labels(db)
    assert {ids["u1"]: HAT, ids["u2"]: BAG}.items() <= dict(zip(human_ids.tolist(), human_y.tolist())).items()
