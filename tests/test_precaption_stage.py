"""The precaption stage end to end on tiny generated clips.

Retrieval correctness uses `ColourEncoder` (dvtr_data.testing.precaption): a clip's embedding is its colour and a
caption's is the colour it names, so the right draft is known independently of any weights, and the stage's output
is checked against a plain full-matrix ranking written here. The real model (ViT-S-32-alt, random weights) is
checked for consistency with itself and with a bank whose text embeddings the test controls.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dvtr_data.dataset import Dataset
from dvtr_data.errors import DatasetError, InputError, UsageError
from dvtr_data.precaption.bank import bank_cache_path, load_bank, normalize_caption
from dvtr_data.precaption.embed import EmbeddingStore
from dvtr_data.precaption.retrieval import near_identical
from dvtr_data.precaption.sampling import SampleJob, sample_frames
from dvtr_data.precaption.stage import PrecaptionConfig, bank_cache_dir, precaption, show
from dvtr_data.schemas import TABLES
from dvtr_data.testing.precaption import COLOURS, ColourEncoder, clip_row, make_dataset, write_clip

BANK = [
    "A red roof in a village.", "a red roof in a village", "A red roof in a village!",  # near copies
    "Red cars are parked along a street.", "A red tractor ploughs a field.",
    "A green forest on a hill.", "Green fields around a farm.",
    "A blue lake between hills.", "A blue river bends.",
    "A yellow desert with dunes.", "A port with many boats.", "", "   ",
    "A church with a tall tower.", "A yellow and red market.",
]


def write_bank(tmp_path: Path, lines=BANK) -> Path:
    path = tmp_path / "bank.txt"
    path.write_text("\n".join(lines) + "\n" + "z" * 3000 + "\n")
    return path


def cfg(bank: Path | str, **over) -> PrecaptionConfig:
    base = dict(banks=(str(bank),), top_k=3, batch_size=12, workers=1, tags="all", top_tags=2)
    base.update(over)
    return PrecaptionConfig(**base)


def table(ds: Dataset, name: str) -> list[dict]:
    return pq.read_table(ds.table_path(name)).to_pylist()


def reference_drafts(clip_vec: np.ndarray, texts: list[str], text_vecs: np.ndarray, k: int) -> list[str]:
    """Plain answer: score every caption, sort (score desc, position asc), skip near-copies of a kept one."""
    scores = text_vecs.astype(np.float64) @ clip_vec.astype(np.float64)
    order = sorted(range(len(texts)), key=lambda j: (-round(scores[j], 5), j))
    kept: list[str] = []
    for j in order:
        if not any(near_identical(normalize_caption(texts[j]), normalize_caption(t), 0.9) for t in kept):
            kept.append(texts[j])
        if len(kept) == k:
            break
    return kept


def test_the_right_caption_comes_first_and_matches_the_reference(tmp_path):
    colours = ["red", "green", "blue", "yellow", "red"]
    ds = make_dataset(tmp_path / "ds", colours)
    enc = ColourEncoder()
    report = precaption(ds.root, cfg(write_bank(tmp_path)), encoder=enc)
    assert report.ok and report.clips_embedded == 5 and report.clips_failed == 0
    assert (report.bank_skipped_empty, report.bank_skipped_huge, report.bank_duplicates) == (2, 1, 2)
    assert report.bank_size == len(BANK) - 4 and report.bank.startswith("bank@")

    drafts = table(ds, "precaptions")
    assert len(drafts) == 15 and report.precaptions == 15
    by_clip: dict[str, list[dict]] = {}
    for row in drafts:
        by_clip.setdefault(row["clip_id"], []).append(row)
    bank = load_bank(write_bank(tmp_path))
    text_vecs = enc.encode_texts(bank.texts)
    emb = {r["clip_id"]: np.array(r["clip_embedding"], np.float32)
           for r in pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").to_pylist()}
    for cid, rows in by_clip.items():
        rows.sort(key=lambda r: r["rank"])
        colour = cid.rsplit("-", 1)[1]
        assert colour in rows[0]["text"].lower(), (cid, rows[0]["text"])
        assert rows[0]["score"] > 0.95
        assert [r["rank"] for r in rows] == [1, 2, 3]
        assert rows[0]["score"] >= rows[1]["score"] >= rows[2]["score"]
        assert all(r["model"] == "colour/fake-v1" and r["bank"] == report.bank for r in rows)
        assert [bank.texts[r["bank_index"]] for r in rows] == [r["text"] for r in rows]
        # the near copies of "A red roof in a village." never appear together
        assert sum("red roof" in r["text"].lower() for r in rows) <= 1
        assert [r["text"] for r in rows] == reference_drafts(emb[cid], list(bank.texts), text_vecs, 3)

    tags = table(ds, "tags")
    assert report.tagged == 5 and len(tags) == 10
    assert all(t["source"] == "zero-shot" and t["class_list"].startswith("all@") for t in tags)


def test_batches_span_clips_and_embeddings_are_pooled_frames(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "green", "blue", "yellow", "red"])
    enc = ColourEncoder()
    precaption(ds.root, cfg(write_bank(tmp_path), batch_size=12, frames=8), encoder=enc)
    assert enc.batch_sizes == [12, 12, 12, 4]  # 40 frames in fixed batches, clips split across them
    t = pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet")
    assert t.schema.field("frame_embeddings").type == pa.list_(pa.list_(pa.float32(), 4), 8)
    assert t.schema.field("clip_embedding").type == pa.list_(pa.float32(), 4)
    assert t.schema.metadata[b"dvtr.schema"] == b"embeddings/1"
    for row in t.to_pylist():
        assert row["status"] == "ok" and row["sampling"] == "uniform:8" and row["decoder"] == "decord"
        assert row["frame_indices"] == [1, 5, 9, 13, 16, 20, 24, 28] and row["source"] == "clip"
        path = ds.root / "clips" / "f0000000000000001" / f"{row['clip_id']}.mp4"
        frames = sample_frames(SampleJob(0, str(path), 8), enc.geometry).frames
        expect = enc.encode_frames(frames)
        np.testing.assert_allclose(np.array(row["frame_embeddings"]), expect, atol=1e-5)
        mean = expect.mean(0)
        np.testing.assert_allclose(row["clip_embedding"], mean / np.linalg.norm(mean), atol=1e-5)


def test_rerun_skips_embedded_clips_and_force_redoes_them(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "green"])
    bank = write_bank(tmp_path)
    precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    enc = ColourEncoder()
    again = precaption(ds.root, cfg(bank), encoder=enc)
    assert (again.clips_skipped, again.clips_embedded, enc.calls) == (2, 0, 0)
    assert again.bank_cached and again.precaptions == 6
    other = precaption(ds.root, cfg(bank, frames=4), encoder=ColourEncoder())  # other sampling: redone
    assert other.clips_embedded == 2
    forced = precaption(ds.root, cfg(bank, frames=4, force=True), encoder=ColourEncoder())
    assert forced.clips_embedded == 2 and forced.clips_skipped == 0
    t = pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet")
    assert t.num_rows == 2 and set(t.column("sampling").to_pylist()) == {"uniform:4"}
    assert not list((ds.work_dir / "precaption").rglob("*.parquet"))  # parts folded into the file


class InterruptingEncoder(ColourEncoder):
    """Ctrl-C arrives during the third model call."""

    def encode_frames(self, frames):
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().encode_frames(frames)


def test_an_interrupted_run_keeps_finished_clips_and_resumes(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "green", "blue", "yellow", "red"])
    bank = write_bank(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        precaption(ds.root, cfg(bank, batch_size=8, commit_every=1000), encoder=InterruptingEncoder())
    parts = list((ds.work_dir / "precaption" / "colour__fake-v1").glob("part-*.parquet"))
    assert len(parts) == 1 and pq.read_table(parts[0]).num_rows == 2  # the two finished clips were committed
    enc = ColourEncoder()
    report = precaption(ds.root, cfg(bank, batch_size=8), encoder=enc)
    assert (report.clips_skipped, report.clips_embedded) == (2, 3) and enc.calls == 3
    assert report.precaptions == 15
    assert pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").num_rows == 5


def test_missing_and_unreadable_clips_get_error_rows_and_the_rest_continues(tmp_path):
    extra = [clip_row("f0000000000000001-0000009-gone", "clips/f0000000000000001/gone.mp4"),
             clip_row("f0000000000000001-0000010-junk", "clips/f0000000000000001/junk.mp4")]
    ds = make_dataset(tmp_path / "ds", ["red", "green", "blue"], extra_rows=extra)
    (ds.root / "clips" / "f0000000000000001" / "junk.mp4").write_bytes(b"not a video at all" * 100)
    bank = write_bank(tmp_path)
    report = precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    assert not report.ok and report.clips_failed == 2 and report.clips_embedded == 3
    assert any("gone.mp4: clip file is missing" in e for e in report.errors)
    assert any("junk.mp4" in e and "cannot decode" in e for e in report.errors)
    rows = {r["clip_id"]: r for r in pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").to_pylist()}
    assert rows["f0000000000000001-0000009-gone"]["status"] == "error"
    assert rows["f0000000000000001-0000009-gone"]["clip_embedding"] is None
    assert {r["clip_id"] for r in table(ds, "precaptions")} == {c for c, r in rows.items() if r["status"] == "ok"}
    log = report.log_path.read_text()
    assert '"event": "error"' in log and "gone.mp4" in log
    # the file appears: the next run embeds only it
    write_clip(ds.root / "clips" / "f0000000000000001" / "gone.mp4", COLOURS["blue"], seed=9)
    (ds.root / "clips" / "f0000000000000001" / "junk.mp4").unlink()
    again = precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    assert (again.clips_embedded, again.clips_skipped, again.clips_failed) == (1, 3, 1)


def test_a_bad_bank_fails_before_any_clip_is_embedded(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red"])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    enc = ColourEncoder()
    with pytest.raises(InputError, match="holds no usable captions"):
        precaption(ds.root, cfg(empty), encoder=enc)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(InputError, match="line 2"):
        precaption(ds.root, cfg(bad), encoder=enc)
    assert enc.calls == 0 and not (ds.root / "embeddings").exists()


def test_dataset_and_option_errors(tmp_path):
    with pytest.raises(DatasetError, match="not a dvtr-data dataset"):
        precaption(tmp_path / "nothing", cfg("builtin"), encoder=ColourEncoder())
    ds = Dataset(tmp_path / "empty").create()
    with pytest.raises(DatasetError, match="has no clips"):
        precaption(ds.root, cfg("builtin"), encoder=ColourEncoder())
    for bad in (dict(frames=0), dict(top_k=0), dict(dedupe_threshold=0.0), dict(batch_size=0), dict(workers=0)):
        with pytest.raises(UsageError):
            precaption(ds.root, cfg("builtin", **bad), encoder=ColourEncoder())


def test_rejected_and_failed_clips_are_not_embedded_unless_asked(tmp_path):
    extra = [clip_row("f0000000000000001-0000007-rej", "clips/f0000000000000001/rej.mp4", qc_verdict="reject"),
             clip_row("f0000000000000001-0000008-err", None, status="error", error="cut failed")]
    ds = make_dataset(tmp_path / "ds", ["red"], extra_rows=extra)
    write_clip(ds.root / "clips" / "f0000000000000001" / "rej.mp4", COLOURS["green"])
    bank = write_bank(tmp_path)
    report = precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    assert (report.clips_selected, report.clips_not_selected, report.clips_embedded) == (1, 2, 1)
    report = precaption(ds.root, cfg(bank, include_rejected=True), encoder=ColourEncoder())
    assert (report.clips_selected, report.clips_embedded, report.clips_skipped) == (2, 1, 1)


def test_clips_without_files_are_sampled_from_their_flight(tmp_path):
    ds = Dataset(tmp_path / "ds").create()
    flight = write_clip(tmp_path / "flight.mp4", COLOURS["blue"], n_frames=60)
    frow = {name: None for name in TABLES["flights"].schema.names}
    frow.update(flight_id="f0000000000000001", status="ok", source_path=str(flight), file_name="flight.mp4",
                size_bytes=flight.stat().st_size, settings_hash="x", ingested_at=datetime.now(UTC))
    ds.write_table("flights", [frow])
    ds.write_table("clips", [clip_row("f0000000000000001-0000020-0000040", None, start_frame=20, end_frame=40)])
    report = precaption(ds.root, cfg(write_bank(tmp_path), frames=4), encoder=ColourEncoder())
    assert report.ok and report.clips_embedded == 1
    (row,) = pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").to_pylist()
    assert row["source"] == "flight" and row["frame_indices"] == [22, 27, 32, 37]
    assert "blue" in table(ds, "precaptions")[0]["text"].lower()


def test_show_lists_drafts_tags_and_embedding_state(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["green"])
    precaption(ds.root, cfg(write_bank(tmp_path)), encoder=ColourEncoder())
    info = show(ds.root, " f0000000000000001-0000000-green ")
    assert [d["rank"] for d in info.drafts] == [1, 2, 3] and "green" in info.drafts[0]["text"].lower()
    assert len(info.tags) == 2 and info.embeddings[0]["status"] == "ok"
    assert info.clip["qc_verdict"] == "pass"
    with pytest.raises(UsageError, match="did you mean f0000000000000001-0000000-green"):
        show(ds.root, "f0000000000000001-0000000-gren")


# ----------------------------------------------------------------------------------------------------------------
# the real model
# ----------------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_real_model_embeddings_and_a_bank_with_controlled_text_embeddings(tmp_path):
    """ViT-S-32-alt (random weights): stored embeddings equal the model on the sampled frames, and a bank whose
    cached text embeddings are the clips' own embeddings retrieves each clip's caption first."""
    from dvtr_data.precaption.encoder import ModelSpec, load_encoder

    colours = ["red", "green", "blue", "yellow"]
    ds = make_dataset(tmp_path / "ds", colours)
    enc = load_encoder(ModelSpec("ViT-S-32-alt", None, device="cpu"))
    bank = write_bank(tmp_path, ["a first caption", "a second caption"])
    report = precaption(ds.root, cfg(bank, batch_size=12, top_tags=0), encoder=enc)
    assert report.ok and report.model == "ViT-S-32-alt/random-s0"
    store = EmbeddingStore(ds, enc.identity, 8)
    rows = {r["clip_id"]: r for r in store.load()[0].to_pylist()}
    for cid, row in rows.items():
        frames = sample_frames(SampleJob(0, str(ds.root / "clips" / "f0000000000000001" / f"{cid}.mp4"), 8),
                               enc.geometry).frames
        np.testing.assert_allclose(np.array(row["frame_embeddings"]), enc.encode_frames(frames), atol=1e-4)
        assert row["model_config"] == enc.identity.config_hash and row["precision"] == "fp32"

    # a bank of one caption per clip, listed in reverse, whose text embeddings are the clips' embeddings
    ids = sorted(rows)
    captions = [f"caption written for {cid}" for cid in reversed(ids)]
    controlled = write_bank(tmp_path, captions)
    vectors = np.stack([np.array(rows[cid]["clip_embedding"], np.float32) for cid in reversed(ids)])
    cache = bank_cache_path(bank_cache_dir(ds), enc.identity, load_bank(controlled).digest)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, vectors)
    report = precaption(ds.root, cfg(controlled, top_k=2, top_tags=0), encoder=enc)
    assert report.bank_cached and report.clips_skipped == 4
    for row in table(ds, "precaptions"):
        if row["rank"] == 1:
            assert row["text"] == f"caption written for {row['clip_id']}"
            assert row["score"] == pytest.approx(1.0, abs=1e-5)


def test_without_overlap_the_embeddings_are_the_same(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "green", "blue"])
    bank = write_bank(tmp_path)
    precaption(ds.root, cfg(bank, overlap=True), encoder=ColourEncoder())
    first = pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").column("clip_embedding").to_pylist()
    report = precaption(ds.root, cfg(bank, overlap=False, force=True), encoder=ColourEncoder())
    assert report.ok and report.clips_embedded == 3
    second = pq.read_table(ds.root / "embeddings" / "colour__fake-v1.parquet").column("clip_embedding").to_pylist()
    np.testing.assert_allclose(np.array(first), np.array(second), atol=1e-6)


def test_a_damaged_part_file_is_redone_and_a_newer_embeddings_file_is_refused(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red", "green", "blue"])
    bank = write_bank(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        precaption(ds.root, cfg(bank, batch_size=8, commit_every=1000), encoder=InterruptingEncoder())
    (part,) = (ds.work_dir / "precaption" / "colour__fake-v1").glob("part-*.parquet")
    part.write_bytes(b"PAR1 damaged")
    report = precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    assert report.ok and report.clips_embedded == 3 and not part.exists()
    path = ds.root / "embeddings" / "colour__fake-v1.parquet"
    t = pq.read_table(path)
    pq.write_table(t.replace_schema_metadata({b"dvtr.schema": b"embeddings/9"}), path)
    with pytest.raises(DatasetError, match="embeddings/9"):
        precaption(ds.root, cfg(bank), encoder=ColourEncoder())


def test_one_run_at_a_time_and_leftover_temp_files_are_swept(tmp_path):
    ds = make_dataset(tmp_path / "ds", ["red"])
    bank = write_bank(tmp_path)
    leftover = ds.root / "embeddings" / ".colour__fake-v1.parquet.abc.tmp"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half written")
    with ds.lock("precaption"):
        with pytest.raises(DatasetError, match="another `precaption` run"):
            precaption(ds.root, cfg(bank), encoder=ColourEncoder())
    assert precaption(ds.root, cfg(bank), encoder=ColourEncoder()).ok
    assert not leftover.exists()
