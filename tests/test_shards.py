"""data.shard=I data.shards=N: disjoint shards that cover a data set, stable when files are added,
checked in one line; the merge of a sharded sweep lists missing and duplicated images."""

import csv
import json
import re
import statistics

import PIL.Image
import pytest
import yaml

from pti_lab.data import ImageFolder, SingleImage, SynthfacesTestSet
from pti_lab.errors import BadInputError
from pti_lab.report.shards import merge_shards
from pti_lab.report.sweep import read_sweep
from pti_lab.tracking.store import RunStore
from tests.conftest import run_py


def folder_of(path, names):
    path.mkdir(exist_ok=True)
    for name in names:
        PIL.Image.new("RGB", (8, 8), (len(name) * 20 % 255, 0, 0)).save(path / f"{name}.png")
    return path


@pytest.mark.parametrize("shards", [1, 2, 3, 7])
def test_shards_are_disjoint_and_cover_the_data_set(shards):
    every = SynthfacesTestSet(kind="ood", count=32).names
    parts = [SynthfacesTestSet(kind="ood", count=32, shard=i, shards=shards).names for i in range(shards)]
    assert sorted(name for part in parts for name in part) == sorted(every)
    assert sum(len(part) for part in parts) == len(every) == 32
    if shards == 2:
        assert 8 <= len(parts[0]) <= 24  # a hash splits 32 names roughly evenly


def test_samples_follow_the_shard():
    dataset = SynthfacesTestSet(kind="ood", count=8, shard=1, shards=2)
    samples = list(dataset.samples(32))
    assert [s.name for s in samples] == dataset.names and len(samples) == len(dataset)
    full = {s.name: s.image for s in SynthfacesTestSet(kind="ood", count=8).samples(32)}
    assert all((s.image == full[s.name]).all() for s in samples)  # the same faces as without shards


def test_an_images_shard_does_not_change_when_files_are_added(tmp_path):
    folder = folder_of(tmp_path / "photos", [f"img{i:02d}" for i in range(12)])
    before = {i: ImageFolder(str(folder), shard=i, shards=3).names for i in range(3)}
    folder_of(folder, ["a_new_one", "zz_last", "img05b", "middle"])
    after = {i: ImageFolder(str(folder), shard=i, shards=3).names for i in range(3)}
    for i in range(3):
        assert set(before[i]) <= set(after[i])
    assert sum(map(len, after.values())) == 16


def test_limit_applies_before_the_shards(tmp_path):
    folder = folder_of(tmp_path / "photos", [f"img{i:02d}" for i in range(10)])
    parts = [ImageFolder(str(folder), limit=4, shard=i, shards=2).names for i in range(2)]
    assert sorted(parts[0] + parts[1]) == ["img00", "img01", "img02", "img03"]


@pytest.mark.parametrize("shard,shards,message", [
    (2, 2, "data.shard=2 is not one of the data.shards=2 shards (expected an integer from 0 to 1)"),
    (-1, 4, "data.shard=-1 is not one of the data.shards=4 shards"),
    (0, 0, "data.shards must be an integer >= 1, got 0"),
    ("1", 2, "data.shard='1' is not one of"),
])
def test_bad_shards_are_refused_in_one_line(tmp_path, shard, shards, message):
    folder_of(tmp_path, ["a"])
    for make in (lambda: SynthfacesTestSet(shard=shard, shards=shards),
                 lambda: ImageFolder(str(tmp_path), shard=shard, shards=shards),
                 lambda: SingleImage(str(tmp_path / "a.png"), shard=shard, shards=shards)):
        with pytest.raises(BadInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            make()


def write_job(sweep, number, shard, rows, failed=()):
    job = sweep / str(number)
    (job / ".hydra").mkdir(parents=True)
    data = {"_target_": "pti_lab.data.SynthfacesTestSet", "kind": "ood", "count": 32, "seed": None, "limit": 12,
            "shard": shard, "shards": 2}
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": data, "mode": "single"}))
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"data.shard={shard}", "data.shards=2",
                                                                    "data.limit=12"]))
    store = RunStore(job)
    for image, lpips in rows:
        for stage in ("inversion", "tuning"):
            store.append({"image": image, "stage": stage, "lpips": lpips, "seconds": 1.0})
    for image in failed:
        store.record_failure(image, "inversion: loss is nan")


def test_merge_lists_missing_and_duplicated_images(tmp_path):
    sweep = tmp_path / "sweep"
    names = SynthfacesTestSet(kind="ood", count=32, limit=12).names
    shard0 = SynthfacesTestSet(kind="ood", count=32, limit=12, shard=0, shards=2).names
    shard1 = [n for n in names if n not in shard0]
    assert shard0 and len(shard1) >= 3
    # job 0 did its shard and, as a stray, one image of shard 1; job 1 failed one image and lacks another
    write_job(sweep, 0, 0, [(n, 0.2) for n in shard0] + [(shard1[0], 0.9)])
    write_job(sweep, 1, 1, [(n, 0.4) for n in shard1[:-2]] + [(shard1[0], 0.4)], failed=[shard1[-2]])
    _, notes = merge_shards(read_sweep(sweep), tmp_path / "report")
    merged = tmp_path / "report" / "shards" / "all"
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["shards"]["missing_images"] == [shard1[-1]]
    assert summary["shards"]["duplicated_images"] == {shard1[0]: [0, 1]}
    assert [entry["image"] for entry in summary["failed"]] == [shard1[-2]]
    assert summary["images"] == len(names) - 2  # each image once: the failed and the missing one have no rows
    rows = RunStore(merged).results()
    assert [r["lpips"] for r in rows if r["image"] == shard1[0]] == [0.9, 0.9]  # job 0's rows kept
    assert (merged / "results.csv").read_text().splitlines()[0] == "image,stage,lpips,seconds"
    assert any(f"1 image(s) missing: {shard1[-1]}" in note for note in notes)
    assert any(f"image {shard1[0]} is in jobs 0, 1" in note for note in notes)


def test_merge_names_a_shard_without_a_job(tmp_path):
    sweep = tmp_path / "sweep"
    shard0 = SynthfacesTestSet(kind="ood", count=32, limit=12, shard=0, shards=2).names
    write_job(sweep, 0, 0, [(n, 0.2) for n in shard0])
    _, notes = merge_shards(read_sweep(sweep), tmp_path / "report")
    assert any("shard(s) 1 of 2 have no job" in note for note in notes)
    summary = json.loads((tmp_path / "report" / "shards" / "all" / "summary.json").read_text())
    assert summary["shards"]["missing_shards"] == [1] and len(summary["shards"]["missing_images"]) == 12 - len(shard0)


def test_a_sharded_sweep_reports_one_row_per_method_over_all_images(tmp_path):
    """`-m +method=w,pti data.shard=0,1,2 data.shards=3`: the report has one row per method whose n counts
    every image of the three shards and whose numbers are the means over all of them (shards of 1, 2 and
    2 images: a mean of the shards' means would differ), and no shard row."""
    sweep = tmp_path / "sweep"
    run_py("-m", "+method=w,pti", "data.shard=0,1,2", "data.shards=3", f"hydra.sweep.dir={sweep}", "debug=smoke",
           "data.limit=5", timeout=300)
    table = list(csv.DictReader((sweep / "report" / "runs.csv").open()))
    assert [(row["method"], row["n"]) for row in table] == [("W", "5"), ("PTI", "5")] and "setting" not in table[0]
    for row, jobs in zip(table, ([0, 1, 2], [3, 4, 5])):
        rows = [r for job in jobs for r in RunStore(sweep / str(job)).results()]
        assert sorted(len({r["image"] for r in RunStore(sweep / str(job)).results()}) for job in jobs) == [1, 2, 2]
        final = [r for r in rows if r["stage"] == ("tuning" if row["method"] == "PTI" else "inversion")]
        assert len({r["image"] for r in final}) == len(final) == 5
        for metric in ("mse", "lpips", "ms_ssim", "psnr", "id_sim"):
            assert float(row[metric]) == pytest.approx(statistics.fmean(r[metric] for r in final), rel=1e-12), metric
    markdown = (sweep / "report" / "runs.md").read_text()
    assert len([line for line in markdown.splitlines() if line.startswith("| W") or line.startswith("| PTI")]) == 2
    assert "at 256×256" in markdown.splitlines()[0]
    page = (sweep / "report" / "report.html").read_text()
    assert re.search(r'<td class="(PASS|FAIL)">\1</td><td>jobs 3, 4, 5 \(3 shards\) \(runs, PTI, synthfaces_ood\): tuned', page)
