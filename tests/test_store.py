import json
import math

import pytest
import torch

import pti_lab.atomic
from pti_lab.tracking.store import RunStore


def row(image, stage, **metrics):
    return {"image": image, "stage": stage, **metrics}


def test_append_results_done_round_trip(tmp_path):
    store = RunStore(tmp_path)
    assert store.results() == [] and store.done("a", "inversion") is None
    store.append(row("a", "inversion", mse=0.1, seconds=2.0))
    store.append(row("a", "tuning", mse=0.01, seconds=3.0))
    assert [r["stage"] for r in RunStore(tmp_path).results()] == ["inversion", "tuning"]
    assert store.done("a", "tuning")["mse"] == 0.01
    assert store.done("a", "edit") is None and store.done("b", "inversion") is None
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_truncated_last_line_is_ignored(tmp_path, caplog):
    store = RunStore(tmp_path)
    store.append(row("a", "inversion", mse=0.1))
    with open(store.results_path, "a") as f:
        f.write('{"image": "b", "stage": "inv')  # a crash mid-write
    assert [r["image"] for r in store.results()] == ["a"]
    assert "truncated" in caplog.text
    store.append(row("b", "inversion", mse=0.2))  # appending heals the file
    assert [r["image"] for r in store.results()] == ["a", "b"]
    assert all(json.loads(line) for line in store.results_path.read_text().splitlines())


def test_resume_replaces_a_redone_row(tmp_path):
    store = RunStore(tmp_path)
    store.append(row("a", "inversion", mse=0.5))
    store.append(row("a", "edit", edit="age", strength=1.0, id_sim=0.9))
    store.append(row("a", "edit", edit="age", strength=2.0, id_sim=0.8))
    store.append(row("a", "inversion", mse=0.4))  # the image re-done after an interruption
    rows = store.results()
    assert len(rows) == 3 and store.done("a", "inversion")["mse"] == 0.4


def test_nan_is_refused_with_its_key(tmp_path):
    store = RunStore(tmp_path)
    with pytest.raises(ValueError, match="lpips"):
        store.append(row("a", "tuning", lpips=math.nan))
    with pytest.raises(ValueError, match="mse"):
        store.append(row("a", "tuning", extra={"mse": math.inf}))
    assert store.results() == []


def test_failures_replace_and_clear(tmp_path):
    store = RunStore(tmp_path)
    store.record_failure("a", "unreadable")
    store.record_failure("b", "NaN loss")
    store.record_failure("a", "too small")
    assert RunStore(tmp_path).failed() == [{"image": "b", "reason": "NaN loss"},
                                          {"image": "a", "reason": "too small"}]
    store.append(row("b", "inversion", mse=0.1))  # b succeeds on a resumed run
    assert store.failed() == [{"image": "a", "reason": "too small"}]


def test_summary_format_and_means(tmp_path):
    store = RunStore(tmp_path)
    store.append(row("a", "inversion", mse=0.2, lpips=0.4, id_sim=None, reasons={"id_sim": "no face"}, seconds=1.0,
                     steps=450))
    store.append(row("a", "tuning", mse=0.02, lpips=0.1, id_sim=0.9, seconds=2.0, steps=350, stopped_early=True))
    store.append(row("b", "inversion", mse=0.4, lpips=0.6, id_sim=0.5, seconds=3.0, steps=450))
    store.append(row("b", "tuning", mse=0.04, lpips=None, id_sim=0.7, seconds=4.0, steps=350, stopped_early=False))
    store.append(row("b", "edit", edit="smile", strength=1.5, id_sim=0.6, target_delta=0.3, seconds=0.5))
    store.record_failure("c", "corrupt file")
    summary = store.write_summary({"inverter": "w"}, {"locality": {"lpips": 0.01, "mse": 0.001}})
    assert json.loads(store.summary_path.read_text()) == summary
    assert summary["choices"] == {"inverter": "w"}
    assert summary["images"] == 2
    assert summary["failed"] == [{"image": "c", "reason": "corrupt file"}]
    assert summary["locality"] == {"lpips": 0.01, "mse": 0.001}
    assert summary["stages"]["inversion"] == pytest.approx({"mse": 0.3, "lpips": 0.5, "id_sim": 0.5})
    assert summary["stages"]["tuning"] == pytest.approx({"mse": 0.03, "lpips": 0.1, "id_sim": 0.8})
    assert summary["stages"]["edit"] == pytest.approx({"id_sim": 0.6, "target_delta": 0.3})
    assert summary["seconds_per_image"] == pytest.approx((3.0 + 7.5) / 2)


def test_metric_that_was_never_computed_is_null(tmp_path):
    store = RunStore(tmp_path)
    store.append(row("a", "inversion", mse=0.1, id_sim=None))
    assert store.write_summary({}, {})["stages"]["inversion"] == {"mse": 0.1, "id_sim": None}


def test_crash_inside_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    store.append(row("a", "inversion", mse=0.1))
    before = store.results_path.read_text()

    def crash(src, dst):
        raise KeyboardInterrupt  # killed between writing the temporary file and renaming it

    monkeypatch.setattr(pti_lab.atomic.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        store.append(row("b", "inversion", mse=0.2))
    assert store.results_path.read_text() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_image_files(tmp_path):
    store = RunStore(tmp_path)
    image = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    png = store.save_png("0001", "target.png", image)
    pivot = store.save_tensor("0001", "pivot.pt", torch.ones(1, 4, 8))
    assert png == tmp_path / "images" / "0001" / "target.png" and png.stat().st_size > 0
    assert torch.equal(torch.load(pivot, weights_only=True), torch.ones(1, 4, 8))
    assert store.image_dir("0002").is_dir()
