"""``idguide eval``: DreamBench++ alignment on the published ratings, key reconciliation, the
resumable dreambench-score, and the score-file protocols."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from idguide.cli import main
from idguide.evaluation import dreambench as db
from idguide.evaluation import stats

from conftest import scorer_for

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "dreambench_plus"


@pytest.fixture(scope="module")
def ratings():
    if not (SHARED / "data_human_rating").is_dir():
        pytest.skip(f"the published DreamBench++ ratings are not at {SHARED} (../shared beside the repository)")
    group1, group2 = db.find_groups(SHARED)
    return SHARED, db.read_folder(group1, "-cp"), db.read_folder(group2, "-cp")


SUBJECTS = {"object": ["00_motorcycle", "07_basketball_shoe", "12_teapot"], "live_subject_animal": ["01_stork", "03_cat"],
            "live_subject_human": ["00_woman", "02_man"], "style": ["00_ukiyoe", "01_pixel_art"]}
IMAGES = 4


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """DreamBench++-layout human ratings made up here (every method, category and key form of the
    published ones, fewer subjects): the reconciliation logic runs without the published data."""
    root = tmp_path_factory.mktemp("ratings")
    rng = np.random.default_rng(7)
    groups = {}
    for group in ("group1", "group2"):
        folder = root / "data_human_rating" / "merged_data" / group
        folder.mkdir(parents=True)
        groups[group] = {}
    for method in db.METHODS:
        truth = {f"{c}_{s}-{i}": float(rng.integers(0, 5)) for c, subjects in SUBJECTS.items() for s in subjects
                 for i in range(IMAGES)}
        for group in groups:
            ratings = {k: float(np.clip(v + rng.integers(-1, 2), 0, 4)) for k, v in truth.items()}
            (root / "data_human_rating" / "merged_data" / group / f"{method}-cp.json").write_text(json.dumps(ratings))
    group1, group2 = db.find_groups(root)
    return root, db.read_folder(group1, "-cp"), db.read_folder(group2, "-cp")


def write_metric(folder: Path, group1, group2, noise: float, seed: int, suffix: str = "", rename=None, drop=None):
    """A metric's rating files as published ones look: human mean + noise, optional `_0` key suffix,
    a renamed subject, a missing score (null)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for method in group1:
        data = {}
        for key in group1[method]:
            value = 50 + 10 * (group1[method][key] + group2[method][key]) / 2 + rng.normal(0, noise)
            out = key.replace(*rename) if rename else key
            data[out + suffix] = None if key == drop else round(float(value), 4)
        (folder / f"{method}.json").write_text(json.dumps(data, indent=4))


def expected_r(group1, group2, metric_dir: Path, category: str, rename=None, suffix=""):
    """Independent computation: pair by the human keys, mapping each to the metric file's key."""
    per_method = []
    for method in db.METHODS:
        metric = json.loads((metric_dir / f"{method}.json").read_text())
        keys = [k for k in group1[method] if k.startswith(category + "_") and
                metric[(k.replace(*rename) if rename else k) + suffix] is not None]
        m = [metric[(k.replace(*rename) if rename else k) + suffix] for k in keys]
        r1 = round(float(np.corrcoef(m, [group1[method][k] for k in keys])[0, 1]), 4)
        r2 = round(float(np.corrcoef(m, [group2[method][k] for k in keys])[0, 1]), 4)
        per_method.append((r1 + r2) / 2)
    return np.tanh(np.mean(np.arctanh(per_method))), per_method


def test_human_human_ceiling_on_objects_is_the_published_0648(ratings, capsys):
    root, group1, group2 = ratings
    assert main(["eval", "dreambench", "--ratings", str(root), "--category", "object"]) == 0
    out = capsys.readouterr().out
    human = next(line for line in out.splitlines() if line.startswith("Human-Human"))
    assert human.split()[-1] == "0.6484"  # the NearID paper reports 0.648
    assert db.human_alignment(group1, group2, {}, "object").mean(db.HUMAN) == pytest.approx(0.648, abs=5e-4)


def test_metric_alignment_reconciles_suffixes_and_renames_and_writes_reports(synthetic, tmp_path, capsys):
    root, group1, group2 = synthetic
    plain, noisy = tmp_path / "plain", tmp_path / "noisy"
    write_metric(plain, group1, group2, noise=5, seed=0)
    rename = ("object_00_motorcycle", "object_00_motorbike")
    dropped = "live_subject_animal_01_stork-2"
    assert dropped in group1["emu2"] and "object_00_motorcycle-0" in group1["emu2"]
    write_metric(noisy, group1, group2, noise=15, seed=1, suffix="_0", rename=rename, drop=dropped)
    out = tmp_path / "report"
    code = main(["eval", "dreambench", "--ratings", str(root), "--metric-scores", f"plain={plain}",
                 "--metric-scores", f"noisy={noisy}", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    for metric, folder, kw in (("plain", plain, {}), ("noisy", noisy, {"rename": rename, "suffix": "_0"})):
        mean, per_method = expected_r(group1, group2, folder, "object", **kw)
        line = next(row for row in (out / "dreambench_object.csv").read_text().splitlines() if row.startswith(metric))
        assert [float(v) for v in line.split(",")[1:]] == pytest.approx([*per_method, mean], abs=5e-5)
    assert "subject 'motorcycle' is called 'motorbike' there" in captured.err
    assert f"dropped {'textual_inversion_sd'}/{dropped}: no metric score" in captured.err
    # The ID-Sim protocol: the animal + object subjects, 7 methods × their images, minus the 7 null scores.
    pooled = (out / "idsim_protocol.csv").read_text().splitlines()
    row = dict(zip(pooled[0].split(","), pooled[2].split(",")))
    subjects = len(SUBJECTS["object"]) + len(SUBJECTS["live_subject_animal"])
    assert row["metric"] == "noisy" and row["subjects"] == str(subjects)
    assert row["pairs"] == str(subjects * IMAGES * 7 - 7)
    scores, human, _, _ = db.pool(group1, group2, db.read_folder(noisy, allow_missing=True), db.IDSIM_CATEGORIES)
    from scipy.stats import kendalltau, spearmanr

    assert float(row["Spearman"]) == pytest.approx(spearmanr(scores, human)[0], abs=5e-5)
    assert float(row["Kendall"]) == pytest.approx(kendalltau(scores, human)[0], abs=5e-5)
    assert {p.name for p in out.iterdir()} >= {"dreambench.md", "alignment_by_category.png", "scatter_plain.png",
                                                "scatter_noisy.png", "dreambench_all.csv", "dreambench_style.csv"}
    assert "| Human-Human |" in (out / "dreambench.md").read_text()
    assert Image.open(out / "alignment_by_category.png").size[0] > 400


def test_a_key_that_does_not_match_is_an_error_naming_it(synthetic, tmp_path, capsys):
    root, group1, group2 = synthetic
    metric = tmp_path / "bad"
    write_metric(metric, group1, group2, noise=5, seed=0)
    data = json.loads((metric / "emu2.json").read_text())
    data["object_07_basketball_shoe-9"] = data.pop("object_07_basketball_shoe-3")  # there is no image 9
    (metric / "emu2.json").write_text(json.dumps(data))
    assert main(["eval", "dreambench", "--ratings", str(root), "--metric-scores", f"bad={metric}"]) == 2
    err = capsys.readouterr().err
    assert "emu2: bad and group1 differ: first divergent key object_07_basketball_shoe-3 (only in group1)" in err


def test_align_rejects_unparseable_keys_and_missing_methods(synthetic):
    _, group1, group2 = synthetic
    with pytest.raises(ValueError, match="is not <category>_<NN>_<subject>-<i>"):
        db.align({"a": {"object_00_backpack-0": 1.0}, "b": {"backpack-0": 1.0}})
    with pytest.raises(ValueError, match=r"a: two keys for \('object', 0, 0\)"):  # in any file, the first too
        db.align({"a": {"object_00_backpack-0": 1.0, "object_00_backpack-0_1": 2.0}, "b": {"object_00_backpack-0": 1.0}})
    with pytest.raises(ValueError, match="metric m: no rating file for"):
        db.human_alignment(group1, group2, {"m": {"emu2": group1["emu2"]}}, "object")


# --- dreambench-score: resumable scoring into rating files -------------------------------------------

def make_layout(root: Path, subjects: int = 3, per_subject: int = 6):
    rng = np.random.default_rng(0)
    names = [f"object_{i:02d}_thing{i}" for i in range(subjects)]
    for name in names:
        base = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        (root / "references").mkdir(parents=True, exist_ok=True)
        Image.fromarray(base).save(root / "references" / f"{name}.png")
        for j in range(per_subject):
            noisy = np.clip(base + rng.normal(0, 20 * j, base.shape), 0, 255).astype(np.uint8)
            (root / "samples" / "mymethod" / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(noisy).save(root / "samples" / "mymethod" / name / f"{j}.png")
    return names


def score_command(root: Path, weights: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "idguide.cli", "eval", "dreambench-score", "--samples", str(root / "samples" / "mymethod"),
            "--references", str(root / "references"), "--metric", "nearid", "--weights", str(weights),
            "--device", "cpu", "--batch-size", "1", "--out", str(out)]


def test_dreambench_score_writes_the_published_convention(tmp_path, weights_root):
    names = make_layout(tmp_path, subjects=2, per_subject=3)
    out = tmp_path / "out"
    subprocess.run(score_command(tmp_path, weights_root / "nearid-siglip2", out), check=True, capture_output=True)
    data = json.loads((out / "mymethod.json").read_text())
    assert sorted(data) == sorted(f"{n}-{j}" for n in names for j in range(3))
    scorer = scorer_for("nearid", weights_root)
    from idguide import load_image

    ref = load_image(tmp_path / "references" / f"{names[1]}.png")[None]
    sample = load_image(tmp_path / "samples" / "mymethod" / names[1] / "2.png")[None]
    assert data[f"{names[1]}-2"] == pytest.approx(100 * float(scorer.score(ref, sample)), abs=1e-3)
    assert data[f"{names[0]}-0"] == pytest.approx(100.0, abs=1e-3)  # sample 0 is the reference itself
    assert not list(out.glob("*.partial-*"))
    assert (out / "mymethod.json").read_text().startswith('{\n    "')  # indent 4, as published
    record = json.loads((out / "mymethod.provenance.json").read_text())
    assert record["scorer"] == "nearid" and record["dtype"] == "float32"
    assert record["weights"] == str((weights_root / "nearid-siglip2").resolve())

    # The same folder with another metric, or the same metric in another precision, is not resumed.
    other = score_command(tmp_path, weights_root / "siglip2-so400m-patch14-384", out)
    other[other.index("nearid")] = "siglip2"
    for command, differs in ((other, "scorer: 'nearid' there, 'siglip2' now"),
                             (score_command(tmp_path, weights_root / "nearid-siglip2", out) + ["--dtype", "bf16"],
                              "dtype: 'float32' there, 'bfloat16' now")):
        result = subprocess.run(command, capture_output=True, text=True)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip().splitlines()[-1]
        assert line.startswith("idguide: error: ") and differs in line and "not resuming" in line, line
    assert json.loads((out / "mymethod.json").read_text()) == data  # untouched


def test_stopped_dead_and_rerun_it_resumes_and_matches_an_uninterrupted_run(tmp_path, weights_root, capsys):
    """Stopped before its 7th batch by a hook (no timing), with a last line cut mid-write as a kill
    can leave it: no final file; the rerun resumes from the 6 whole lines and gives the uninterrupted
    result."""
    import idguide
    from idguide.evaluation.scoring import Layout, score_layout

    make_layout(tmp_path, subjects=4, per_subject=8)
    weights = weights_root / "nearid-siglip2"
    whole, out = tmp_path / "whole", tmp_path / "killed"
    assert main(score_command(tmp_path, weights, whole)[3:]) == 0

    class Killed(BaseException):  # like SIGKILL: nothing in the scorer may catch it
        pass

    batches = iter(range(1000))

    def check() -> None:
        if next(batches) == 6:
            raise Killed

    scorer = idguide.load_scorer("nearid", weights=weights, device="cpu")
    layout = Layout(tmp_path / "samples" / "mymethod", tmp_path / "references")
    with pytest.raises(Killed):
        score_layout(scorer, layout, out, "mymethod", 1, None, None, check)
    partial = out / "mymethod.partial-0.jsonl"
    lines = partial.read_text().splitlines()
    assert sum(line.startswith("[") for line in lines) == 6
    assert not (out / "mymethod.json").exists()  # no final file before the end, never a truncated one
    with open(partial, "a") as f:
        f.write(lines[-1][: len(lines[-1]) // 2])  # half a line, no newline

    capsys.readouterr()
    assert main(score_command(tmp_path, weights, out)[3:]) == 0
    assert "resuming: 6 of 32 images already scored" in capsys.readouterr().err
    resumed, expected = json.loads((out / "mymethod.json").read_text()), json.loads((whole / "mymethod.json").read_text())
    assert resumed.keys() == expected.keys()
    assert list(resumed.values()) == pytest.approx(list(expected.values()), abs=1e-4)
    assert not list(out.glob("*.partial-*"))


# --- the score-file protocols -------------------------------------------------------------------------

def write_csv(path: Path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def value(out: str, name: str) -> float:
    return float(next(line.split()[-1] for line in out.splitlines() if line.startswith(name)))


def test_protocol_commands_match_the_statistics(tmp_path, capsys):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 100)
    scores = labels + rng.normal(0, 1, 100)
    path = write_csv(tmp_path / "v.csv", ["label", "score"], zip(labels, scores))
    assert main(["eval", "verification", path]) == 0
    out = capsys.readouterr().out
    assert value(out, "AP") == pytest.approx(stats.average_precision(labels, scores), abs=5e-5)
    assert value(out, "ROC-AUC") == pytest.approx(stats.roc_auc(labels, scores), abs=5e-5)

    q_ids, g_ids = np.arange(4).repeat(2), np.arange(4).repeat(3)
    sim = rng.normal(0, 1, (8, 12)) + (q_ids[:, None] == g_ids[None])
    rows = [(f"q{i}", q_ids[i], f"g{j}", g_ids[j], sim[i, j]) for i in range(8) for j in range(12)]
    path = write_csv(tmp_path / "r.csv", ["query", "query_id", "gallery", "gallery_id", "score"], rows)
    assert main(["eval", "retrieval", path, "--k", "5"]) == 0
    out = capsys.readouterr().out
    assert value(out, "mAP") == pytest.approx(stats.retrieval_map(sim, q_ids, g_ids), abs=5e-5)
    assert value(out, "nDCG@5") == pytest.approx(stats.ndcg(sim, q_ids, g_ids, 5), abs=5e-5)
    path = write_csv(tmp_path / "r_missing.csv", ["query", "query_id", "gallery", "gallery_id", "score"], rows[:-1])
    assert main(["eval", "retrieval", path]) == 2
    assert "no score for query 'q7' and gallery 'g11'" in capsys.readouterr().err

    path = write_csv(tmp_path / "t.csv", ["positive", "negative", "split"],
                     [(0.9, 0.1, "easy"), (0.2, 0.3, "easy"), (0.5, 0.5, "hard"), (0.7, 0.6, "hard")])
    assert main(["eval", "triplets", path]) == 0
    out = capsys.readouterr().out
    assert value(out, "accuracy (easy") == 0.5 and value(out, "accuracy (hard") == 0.75

    path = write_csv(tmp_path / "s.csv", ["sample", "positive", "negative"],
                     [("a", 0.9, 0.1), ("a", 0.8, 0.2), ("b", 0.7, 0.6), ("b", 0.3, 0.4)])
    assert main(["eval", "ssr-pa", path]) == 0
    out = capsys.readouterr().out
    assert value(out, "SSR") == 50.0 and value(out, "PA") == 75.0
    path = write_csv(tmp_path / "empty.csv", ["label", "score"], [])
    assert main(["eval", "verification", path]) == 2
    assert "no rows" in capsys.readouterr().err


def test_two_processes_share_the_work_and_merge_to_the_single_process_result(tmp_path, weights_root):
    """Data-parallel sharding through accelerate's PartialState (two CPU processes under torchrun)."""
    make_layout(tmp_path, subjects=3, per_subject=4)
    weights = weights_root / "nearid-siglip2"
    single = tmp_path / "single"
    subprocess.run(score_command(tmp_path, weights, single), check=True, capture_output=True)
    sharded = tmp_path / "sharded"
    command = score_command(tmp_path, weights, sharded)
    command[1:3] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "idguide.cli"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads((sharded / "mymethod.json").read_text()) == pytest.approx(json.loads((single / "mymethod.json").read_text()), abs=1e-4)
    assert not list(sharded.glob("*.partial-*"))
