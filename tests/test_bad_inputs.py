"""Bad and unusual inputs, all in one place: every CLI failure is one line on stderr starting with
``idguide: error:`` and exit code 2 (Ctrl-C: 130), every library failure a specific exception with
a message naming the problem, and nothing is silently wrong."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import idguide
from idguide.cli import main
from idguide.guidance.resampling import check_steering
from idguide.guidance.search import path_plan
from idguide.scorers.registry import resolve_device

from conftest import EXAMPLES

REFERENCE = EXAMPLES / "reference.jpg"
CANDIDATES = EXAMPLES / "candidates"
NAN = float("nan")


# --- the command line -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory, weights_root):
    """Bad files and folders the cases below refer to by name."""
    root = tmp_path_factory.mktemp("bad")
    (root / "empty").mkdir()
    (root / "not_an_image.png").write_text("hello")
    (root / "file").write_text("x")
    Image.fromarray(np.full((8, 8), 2.0, np.float32), mode="F").save(root / "float_out_of_range.tif")
    mixed = root / "mixed"
    mixed.mkdir()
    Image.open(REFERENCE).save(mixed / "a.png")
    (mixed / "b.png").write_bytes(b"\x89PNG broken")
    missing = root / "missing_files"
    missing.mkdir()
    (missing / "config.json").write_text("{}")

    def csv(name: str, text: str, encoding: str = "utf-8") -> None:
        (root / name).write_bytes(text.encode(encoding))

    csv("short_row.csv", "label,score\n1,0.9\n0\n")
    csv("long_row.csv", "label,score\n1,0.9,7\n")
    csv("not_a_number.csv", "label,score\n1,0.9\n0,abc\n")
    csv("nan_score.csv", "label,score\n1,nan\n0,0.1\n")
    csv("bad_label.csv", "label,score\n2,0.9\n0,0.1\n")
    csv("no_score_column.csv", "label,value\n1,0.9\n")
    csv("header_only.csv", "label,score\n")
    csv("repeated_column.csv", "label,score,score\n1,0.9,0.8\n")
    csv("latin1.csv", "label,score\n1,0.9 \xe9\n", "latin-1")
    header = "query,query_id,gallery,gallery_id,score\n"
    csv("pair_twice.csv", header + "q1,a,g1,a,0.9\nq1,a,g1,a,0.8\n")
    csv("query_two_ids.csv", header + "q1,a,g1,a,0.9\nq1,b,g2,b,0.8\n")
    csv("gallery_two_ids.csv", header + "q1,a,g1,a,0.9\nq2,b,g1,b,0.8\n")
    csv("no_positive.csv", header + "q1,a,g1,a,0.9\nq2,z,g1,a,0.1\n")
    csv("missing_pair.csv", header + "q1,a,g1,a,0.9\nq1,a,g2,b,0.1\nq2,b,g1,a,0.2\n")
    csv("triplet_text.csv", "positive,negative\n0.9,x\n")
    csv("uneven_trials.csv", "sample,positive,negative\ns1,0.9,0.1\ns1,0.8,0.2\ns2,0.7,0.3\n")
    layout = root / "layout"
    (layout / "samples" / "m" / "object_00_cube").mkdir(parents=True)
    (layout / "references").mkdir()
    Image.open(REFERENCE).save(layout / "samples" / "m" / "object_00_cube" / "0.png")
    Image.open(REFERENCE).save(layout / "references" / "object_00_cube.png")
    twice = root / "two_references"  # one subject, two reference images
    (twice / "more").mkdir(parents=True)
    Image.open(REFERENCE).save(twice / "object_00_cube.png")
    Image.open(REFERENCE).save(twice / "more" / "object_00_cube.jpg")
    (root / "only_reference").mkdir()
    Image.open(REFERENCE).save(root / "only_reference" / "reference.png")
    write_ratings(root)
    return {"root": root, "weights": weights_root}


def write_ratings(root: Path) -> None:
    """Human ratings of one method (group1/, group2/), and metric folders good and bad."""
    import json

    keys = [f"object_00_cube-{i}" for i in range(4)]
    for group, values in (("group1", [0, 1, 3, 4]), ("group2", [1, 1, 2, 4])):
        (root / "ratings" / group).mkdir(parents=True)
        (root / "ratings" / group / "m-cp.json").write_text(json.dumps(dict(zip(keys, values))))
    for name, values in (("metric_ok", [50, 60, 70, 90]), ("metric_missing", [None] * 4),
                         ("metric_one_left", [None, None, 70, None]), ("metric_equal", [50] * 4)):
        (root / name).mkdir()
        (root / name / "m.json").write_text(json.dumps(dict(zip(keys, values))))
    (root / "metric_key_twice").mkdir()
    (root / "metric_key_twice" / "m.json").write_text(
        '{"object_00_cube-0": 50, "object_00_cube-1": 60, "object_00_cube-0": 70, "object_00_cube-2": 80, '
        '"object_00_cube-3": 90}')
    for name in ("a", "b"):
        for group in ("group1", "group2"):
            (root / "two_sets" / name / group).mkdir(parents=True)


def path(files, name: str) -> str:
    """``W:x``: x in the tiny weights; ``F:x``: x among the bad files (also after ``NAME=``)."""
    head, equals, tail = name.partition("=")
    if equals and tail.startswith(("W:", "F:")):
        return f"{head}={path(files, tail)}"
    if name.startswith(("W:", "F:")):
        return str(files["weights" if name[0] == "W" else "root"] / name[2:])
    return name


NEARID = ["--metric", "nearid", "--weights", "W:nearid-siglip2"]
RANK = ["rank", *NEARID, str(REFERENCE), str(CANDIDATES)]
SCORE = ["score", *NEARID, str(REFERENCE)]
DB_SCORE = ["eval", "dreambench-score", *NEARID, "--samples", "F:layout/samples/m", "--references",
            "F:layout/references"]

CLI_CASES = [
    ([], "the following arguments are required: command"),
    (["rank"], "the following arguments are required"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    ([*RANK, "--top-k", "0"], "--top-k: expected an integer >= 1, got 0"),
    ([*RANK, "--top-k", "abc"], "--top-k: expected an integer >= 1, got 'abc'"),
    ([*RANK, "--top-k", "2.5"], "--top-k: expected an integer >= 1, got '2.5'"),
    ([*RANK, "--threshold", "nan"], "--threshold: expected a finite number, got 'nan'"),
    ([*RANK, "--threshold", "inf"], "--threshold: expected a finite number"),
    ([*RANK, "--threshold", "2"], "--threshold 2 can never be met"),
    ([*RANK, "--batch-size", "0"], "--batch-size: expected an integer >= 1"),
    ([*RANK, "--dtype", "fp8"], "argument --dtype: invalid choice: 'fp8'"),
    (["rank", "--metric", "nosuch", str(REFERENCE), str(CANDIDATES)], "unknown scorer 'nosuch'"),
    (["rank", "--metric", "neard", str(REFERENCE), str(CANDIDATES)], "Did you mean nearid"),
    ([*RANK, "--device", "cuda"], "CUDA is not available on this machine"),
    ([*RANK, "--device", "cuda:3"], "CUDA is not available"),
    ([*RANK, "--device", "gpu"], "unknown device 'gpu'"),
    ([*RANK, "--device", "meta"], "IDGuide runs on cpu, cuda or mps"),
    (["rank", *NEARID, "F:missing.jpg", str(CANDIDATES)], "image file not found"),
    (["rank", *NEARID, "F:empty", str(CANDIDATES)], "cannot read image"),
    (["rank", *NEARID, "F:not_an_image.png", str(CANDIDATES)], "cannot read image"),
    (["rank", *NEARID, str(REFERENCE), "F:nowhere"], "not a folder"),
    (["rank", *NEARID, str(REFERENCE), "F:empty"], "no images in"),
    (["rank", *NEARID, str(REFERENCE), "F:file"], "not a folder"),
    (["rank", *NEARID, str(REFERENCE), "F:mixed"], "b.png"),
    ([*SCORE, "F:float_out_of_range.tif"], "a floating-point image must hold values in [0, 1], found [2, 2]"),
    ([*SCORE, str(CANDIDATES)], "cannot read image"),
    (["score", "--metric", "nearid", "--weights", "F:nowhere/x", str(REFERENCE), str(REFERENCE)],
     "weights path does not exist"),
    (["score", "--metric", "nearid", "--weights", "F:missing_files", str(REFERENCE), str(REFERENCE)],
     "is missing model.safetensors"),
    (["score", "--metric", "siglip2", "--weights", "W:nearid-siglip2", str(REFERENCE), str(REFERENCE)],
     "holds NearID weights (config.json), not google/siglip2-so400m-patch14-384's; load them as 'nearid'"),
    (["score", "--metric", "siglip2-map", "--weights", "W:nearid-siglip2", str(REFERENCE), str(REFERENCE)],
     "load them as 'nearid'"),
    (["score", "--metric", "nearid", "--weights", "W:siglip2-so400m-patch14-384", str(REFERENCE), str(REFERENCE)],
     "holds 'siglip' weights (config.json), not Aleksandar/nearid-siglip2's; load them as 'siglip2'"),
    (["score", "--metric", "clip-i", "--weights", "W:nearid-siglip2", str(REFERENCE), str(REFERENCE)],
     "model.safetensors does not match the expected layout"),
    ([*SCORE, str(REFERENCE), "--mode", "patch"], "scorer 'nearid' has no option 'mode'"),
    (["score", "--metric", "nearid", "--weights", "W:", str(REFERENCE), str(REFERENCE)], None),  # the parent works
    (["eval", "verification", "F:nowhere.csv"], "score file not found"),
    (["eval", "verification", "F:empty"], "is a folder; expected a CSV file"),
    (["eval", "verification", "F:short_row.csv"], "short_row.csv, row 3: 1 values for 2 columns"),
    (["eval", "verification", "F:long_row.csv"], "long_row.csv, row 2: 3 values for 2 columns"),
    (["eval", "verification", "F:not_a_number.csv"], "row 3, column 'score': 'abc' is not a number"),
    (["eval", "verification", "F:nan_score.csv"], "row 2, column 'score': 'nan' is not a finite number"),
    (["eval", "verification", "F:bad_label.csv"], "row 2, column 'label': '2' is not 0 (different) or 1 (same)"),
    (["eval", "verification", "F:no_score_column.csv"], "missing column(s) score (has label, value)"),
    (["eval", "verification", "F:header_only.csv"], "header_only.csv: no rows"),
    (["eval", "verification", "F:repeated_column.csv"], "the header repeats a column"),
    (["eval", "verification", "F:latin1.csv"], "is not UTF-8 text"),
    (["eval", "retrieval", "F:pair_twice.csv"], "query 'q1' and gallery 'g1' are scored twice (rows 2 and 3)"),
    (["eval", "retrieval", "F:query_two_ids.csv"], "query 'q1' has query_id 'a' in row 2 and 'b' in row 3"),
    (["eval", "retrieval", "F:gallery_two_ids.csv"], "gallery 'g1' has gallery_id 'a' in row 2 and 'b' in row 3"),
    (["eval", "retrieval", "F:no_positive.csv"], "no gallery item of their instance, first 'q2' (query_id 'z')"),
    (["eval", "retrieval", "F:missing_pair.csv"], "no score for query 'q2' and gallery 'g2'"),
    (["eval", "retrieval", "F:pair_twice.csv", "--k", "0"], "--k: expected an integer >= 1"),
    (["eval", "triplets", "F:triplet_text.csv"], "row 2, column 'negative': 'x' is not a number"),
    (["eval", "ssr-pa", "F:uneven_trials.csv"], "samples have different numbers of trials"),
    (["eval", "dreambench", "--ratings", "F:nowhere"], "the human ratings folder F:nowhere does not exist"),
    (["eval", "dreambench", "--ratings", "F:file"], "is a file; give the folder that holds group1/ and group2/"),
    (["eval", "dreambench", "--ratings", "F:empty"], "no group1/ and group2/ folders of human ratings"),
    (["eval", "dreambench", "--ratings", "F:two_sets"], "holds 2 sets of group1/ and group2/ ratings"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_ok", "--metric-scores",
      "x=F:metric_equal"], "--metric-scores gives the metric 'x' twice"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_missing"],
     "metric x (F:metric_missing/m.json): 4 of the 4 scores of m's images of category object are missing (null or NaN)"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_one_left"],
     "metric x (F:metric_one_left/m.json): 3 of the 4 scores of m's images of category object are missing"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_equal"],
     "metric x (F:metric_equal/m.json): all 4 scores of m's images of category object are equal (50); the correlation is undefined"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_ok", "--category", "style"],
     "m: no images of category style"),
    (["eval", "dreambench", "--ratings", "F:ratings", "--metric-scores", "x=F:metric_key_twice"],
     "metric_key_twice/m.json: the key 'object_00_cube-0' appears twice (scores 50 and 70)"),
    (["rank", *NEARID, "F:only_reference/reference.png", "F:only_reference"],
     "the only image in F:only_reference is the reference F:only_reference/reference.png: nothing to rank"),
    (["score", "--metric", "idsim-dinov2-vitb14", "--weights", "W:id_sim_checkpoint", "--patch-distance", "sinkhorn",
      str(REFERENCE), str(REFERENCE)], "--patch-distance: 'sinkhorn' has no effect in idsim-dinov2-vitb14's mode 'cls'"),
    (["score", "--metric", "idsim-dinov2-vitb14", "--weights", "W:id_sim_checkpoint", "--mode", "cls",
      "--patch-distance", "pooled", str(REFERENCE), str(REFERENCE)], "--patch-distance: 'pooled' has no effect"),
    (["score", "--metric", "idsim-dinov2-vitb14", "--weights", "W:id_sim_checkpoint", "--mode", "joint",
      "--patch-distance", "pooled", str(REFERENCE), str(REFERENCE)], None),
    ([*DB_SCORE[:-1], "F:two_references", "--out", "F:o"],
     "--references: 1 subject(s) have several reference images, first 'object_00_cube': more/object_00_cube.jpg and "
     "object_00_cube.png; keep one per subject"),
    (["eval", "dreambench", "--ratings", "F:empty", "--out", "F:file"], "--out "),
    ([*DB_SCORE, "--out", "F:file"], "is a file; give a folder"),
    ([*DB_SCORE, "--out", "F:file/sub"], "cannot be created"),
    ([*DB_SCORE[:-4], "--samples", "F:nowhere", "--references", "F:layout/references", "--out", "F:o"], "--samples"),
    ([*DB_SCORE[:-1], "F:empty", "--out", "F:o"], "no reference image for 1 subject(s), first 'object_00_cube'"),
    ([*DB_SCORE, "--out", "F:o2", "--device", "cuda"], "CUDA is not available"),
]


@pytest.mark.parametrize("argv,message", CLI_CASES, ids=[" ".join(a)[-60:] or "nothing" for a, _ in CLI_CASES])
def test_cli_failure_is_one_line_with_exit_code_2(files, capsys, argv, message):
    argv = [path(files, a) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse exits itself
        code = exit_.code
    out, err = capsys.readouterr()
    if message is None:
        assert code == 0, err
        return
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("\r")]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("idguide: error: "), err
    message = message.replace("F:", f"{files['root']}/")  # a message may name the bad files too
    assert message in lines[0], lines[0]
    assert "Traceback" not in err and out == ""


def test_debug_shows_the_traceback(files, capsys, monkeypatch):
    assert main(["--debug", *[path(files, a) for a in RANK], "--device", "gpu"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("idguide: error: unknown device")
    monkeypatch.setenv("IDGUIDE_DEBUG", "1")
    assert main([path(files, a) for a in RANK] + ["--device", "gpu"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_an_unexpected_exception_is_one_line_naming_its_type(files, capsys, monkeypatch):
    import idguide.cli.images

    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")

    monkeypatch.setattr(idguide.cli.images, "results", broken)
    assert main([path(files, a) for a in RANK]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("idguide: error: RuntimeError: CUDA out of memory. Tried to allocate 2 GiB "
                    "(run with --debug for the traceback)")


def test_ctrl_c_is_one_line_with_exit_code_130(files, capsys, monkeypatch):
    import idguide.cli.images

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(idguide.cli.images, "results", interrupted)
    assert main([path(files, a) for a in RANK]) == 130
    assert capsys.readouterr().err.strip() == "idguide: interrupted"


def test_ctrl_c_during_dreambench_score_says_what_was_kept(tmp_path, weights_root, capsys, monkeypatch):
    """Ctrl-C arrives while the 4th image loads (a hook, not a timed signal): exit code 130 and one
    line saying how many scores were kept and where."""
    import idguide.evaluation.scoring as scoring

    samples = tmp_path / "samples" / "m"
    for i in range(8):
        folder = samples / f"object_{i:02d}_thing"
        folder.mkdir(parents=True)
        Image.open(REFERENCE).resize((64, 48)).save(folder / "0.png")
        Image.open(REFERENCE).resize((64, 48)).save(tmp_path / f"object_{i:02d}_thing.png")
    out = tmp_path / "out"
    loads, real = [], scoring.load_image

    def load_image(path):
        loads.append(path)
        if len(loads) == 8:  # a reference and a sample per batch: the 4th batch's sample
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(scoring, "load_image", load_image)
    code = main(["eval", "dreambench-score", "--metric", "nearid", "--weights", str(weights_root / "nearid-siglip2"),
                 "--samples", str(samples), "--references", str(tmp_path), "--device", "cpu", "--out", str(out)])
    partial = out / "m.partial-0.jsonl"
    kept = sum(line.startswith("[") for line in partial.read_text().splitlines())
    assert code == 130 and kept == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == f"idguide: interrupted: {kept} scores kept in {partial}; run the same command again to resume"


def test_first_run_without_network_says_so_once(tmp_path):
    """No HF_HUB_OFFLINE, the hub unreachable (a closed local port): one line, no retries."""
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), IDGUIDE_HOME=str(tmp_path / "home"))
    result = subprocess.run([sys.executable, "-m", "idguide.cli", "score", "--metric", "nearid", str(REFERENCE),
                             str(REFERENCE)], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2
    (line,) = [x for x in result.stderr.splitlines() if x.strip()]
    assert line.startswith("idguide: error: nearid: could not get 'config.json'") and "127.0.0.1 is unreachable" in line
    assert "pass the folder as --weights DIR" in line and "IDGUIDE_HOME" in line


# --- the Python API -------------------------------------------------------------------------------

def settings(**kwargs):
    return idguide.GuidanceSettings(**kwargs)


API_CASES = [
    (lambda: settings(clip=NAN), "clip must be a finite number > 0"),
    (lambda: settings(clip=0.0), "clip must be a finite number > 0"),
    (lambda: settings(scale=NAN), "scale must be a finite number"),
    (lambda: settings(scale=math.inf), "scale must be a finite number"),
    (lambda: settings(start=NAN), "start must be a finite number >= 0 and <= 1"),
    (lambda: settings(start=0.6, end=0.5), "need start <= end"),
    (lambda: settings(every=2.5), "every must be an integer >= 1, got 2.5"),
    (lambda: settings(every=0), "every must be an integer >= 1, got 0"),
    (lambda: settings(inner_steps=True), "inner_steps must be an integer"),
    (lambda: settings(augment=4), "augment must be an Augment or None, got int"),
    (lambda: idguide.Augment(draws=2.5), "augment draws must be an integer >= 0"),
    (lambda: idguide.Augment(jitter=NAN), "augment jitter must be a finite number"),
    (lambda: idguide.Augment(crop=(0.9, 0.5)), "augment crop max must be a finite number >= 0.9"),
    (lambda: idguide.guidance.VaeDecoder(torch.nn.Identity(), decode_size=0), "decode_size must be an integer >= 16"),
    (lambda: idguide.guidance.VaeDecoder(torch.nn.Identity(), decode_size=-64), "decode_size must be an integer"),
    (lambda: idguide.scorers.ranking.rank([1.0, 2.0], threshold=NAN), "threshold must be a finite number"),
    (lambda: idguide.scorers.ranking.rank([1.0, 2.0], top_k=2.5), "top_k must be an integer >= 1"),
    (lambda: path_plan(4, strength=NAN), "strength must be a finite number > 0 and <= 1"),
    (lambda: path_plan(2.5), "budget must be an integer >= 1"),
    (lambda: check_steering(4, 0, 1, NAN, "value", 1.0), "temperature must be a finite"),
    (lambda: check_steering(4, 0, 1, 1.0, "max", 1.0), "potential must be one of"),
    (lambda: check_steering(4, 0, 1, 1.0, "value", -0.1), "renew must be a finite number"),
    (lambda: resolve_device("cuda"), "CUDA is not available"),
    (lambda: resolve_device("tpu:0"), "unknown device 'tpu:0'"),
    (lambda: idguide.load_scorer("nearid", device="gpu"), "unknown device 'gpu'"),
]


@pytest.mark.parametrize("call,message", API_CASES, ids=[m[:40] for _, m in API_CASES])
def test_library_refuses_bad_settings(call, message):
    with pytest.raises((ValueError, TypeError)) as error:
        call()
    assert message in str(error.value)


@pytest.mark.parametrize("kwargs,message", [
    (dict(n=2.5), "n must be an integer >= 1, got 2.5"), (dict(keep=0), "keep must be an integer >= 1"),
    (dict(threshold=NAN), "threshold must be a finite number"), (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_best_of_n_refuses_bad_settings_before_sampling(kwargs, message):
    def pipe(**_):
        raise AssertionError("sampled before checking")

    with pytest.raises(ValueError, match=message):
        idguide.best_of_n(pipe, None, None, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(decode_size=0), "decode_size must be an integer >= 16"), (dict(clip=NAN), "clip must be"),
    (dict(every=2.5), "every must be an integer"),
])
def test_guidance_callback_refuses_bad_settings(weights_root, kwargs, message):
    from conftest import scorer_for

    with pytest.raises(ValueError, match=message):
        idguide.IdentityGuidanceCallback(scorer_for("nearid", weights_root), torch.rand(1, 3, 32, 32), **kwargs)


def test_embeddings_of_another_scorer_are_refused(weights_root, batch):
    from conftest import scorer_for

    nearid, siglip = scorer_for("nearid", weights_root), scorer_for("siglip2-map", weights_root)
    a, b = nearid.embed(batch), siglip.embed(batch)
    assert a.vector.shape == b.vector.shape  # the same width: only the tag tells them apart
    for call in (lambda: siglip.similarity(a, b), lambda: siglip.score(a, batch),
                 lambda: siglip.similarity_matrix(b, a), lambda: nearid.score(b, batch)):
        with pytest.raises(idguide.ImageInputError, match="cannot compare an embedding made by"):
            call()
    with pytest.raises(ValueError, match="parts come from different scorers"):
        idguide.Embedding.cat([a, b])
    assert a[1:3].scorer == a.to("cpu").scorer == idguide.Embedding.cat([a, a]).scorer == "nearid"
    idsim = scorer_for("idsim-dinov2-vitb14", weights_root)
    assert idsim.embed(batch).scorer == "idsim-dinov2-vitb14 (mode=cls)"


def test_nearid_weights_are_not_siglip2(weights_root):
    with pytest.raises(idguide.WeightsError, match="holds NearID weights"):
        idguide.load_scorer("siglip2", weights=weights_root / "nearid-siglip2", device="cpu")


# --- every image mode PIL opens ------------------------------------------------------------------

def modes():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8))
    sixteen = rng.integers(0, 65536, (12, 10)).astype(np.uint16)
    cases = {mode: (rgb.convert(mode), rgb.convert(mode).convert("RGB"))
             for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV")}
    cases["PA"] = (rgb.convert("P").convert("PA"), rgb.convert("P").convert("RGB"))
    grey16 = np.repeat((sixteen / 65535.0)[..., None], 3, -1)
    for mode in ("I;16", "I;16B"):
        cases[mode] = (Image.fromarray(sixteen).convert(mode) if mode == "I;16" else
                       Image.frombytes("I;16B", (10, 12), sixteen.astype(">u2").tobytes()), grey16)
    cases["I"] = (Image.fromarray(sixteen.astype(np.int32)), grey16)
    floats = rng.random((12, 10)).astype(np.float32)
    cases["F"] = (Image.fromarray(floats, mode="F"), np.repeat(floats[..., None], 3, -1))
    return cases


FILE_FORMAT = {"1": "png", "L": "png", "LA": "png", "P": "png", "RGB": "png", "RGBA": "png",
               "CMYK": "tiff", "YCbCr": "jpeg", "LAB": "tiff", "I;16": "png", "I;16B": "tiff", "I": "tiff",
               "F": "tiff"}


@pytest.mark.parametrize("mode", list(modes()))
def test_every_image_mode_decodes_to_the_right_rgb(tmp_path, mode, monkeypatch):
    image, expected = modes()[mode]
    expected = np.asarray(expected, dtype=np.float64)
    expected = expected / 255.0 if expected.max() > 1.0 or expected.dtype == np.uint8 else expected
    if mode in FILE_FORMAT:
        target = tmp_path / f"image.{FILE_FORMAT[mode]}"
        image.save(target)
        reopened = Image.open(target)
        if FILE_FORMAT[mode] == "jpeg":  # lossy: compare with what PIL itself decodes
            expected = np.asarray(reopened.convert("RGB"), dtype=np.float64) / 255.0
    else:  # no file format writes HSV or PA: decode the in-memory image
        target = tmp_path / "in-memory"
        monkeypatch.setattr(Image, "open", lambda _path: image)
    decoded = idguide.load_image(target).permute(1, 2, 0).numpy()
    assert decoded.shape == expected.shape
    np.testing.assert_allclose(decoded, expected, atol=1 / 255 + 1e-6)


def test_sixteen_bit_grey_png_is_not_white(tmp_path):
    values = np.linspace(0, 30000, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    decoded = idguide.load_image(tmp_path / "grey16.png")
    assert decoded.max().item() == pytest.approx(30000 / 65535, abs=1e-6) and decoded.min().item() == 0.0


def test_images_above_the_decompression_bomb_limit_are_refused(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((100, 100), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(idguide.ImageInputError, match="decompression bomb.*raise PIL.Image.MAX_IMAGE_PIXELS"):
        idguide.load_image(tmp_path / "big.png")


def test_a_bom_in_a_csv_header_is_read_as_text(tmp_path, capsys):
    (tmp_path / "bom.csv").write_bytes("label,score\n1,0.9\n0,0.1\n1,0.8\n".encode("utf-8-sig"))
    assert main(["eval", "verification", str(tmp_path / "bom.csv")]) == 0
    assert "ROC-AUC" in capsys.readouterr().out


def test_every_out_problem_is_found_before_any_weights_load(tmp_path, capsys, monkeypatch):
    import idguide.cli.evaluate as eval_cli

    monkeypatch.setattr(eval_cli, "scorer_from_args", lambda *a, **k: pytest.fail("weights loaded first"))
    (tmp_path / "file").write_text("x")
    samples = tmp_path / "samples" / "m" / "object_00_cube"
    samples.mkdir(parents=True)
    Image.open(REFERENCE).save(samples / "0.png")
    Image.open(REFERENCE).save(tmp_path / "object_00_cube.png")
    base = ["eval", "dreambench-score", "--metric", "nearid", "--samples", str(samples.parent), "--references",
            str(tmp_path)]
    for out, message in ((tmp_path / "file", "is a file"), (tmp_path / "file" / "x", "cannot be created")):
        assert main([*base, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err


def test_parent_of_the_scorer_folder_is_accepted(weights_root, batch):
    via_parent = idguide.load_scorer("clip-i", weights=weights_root, device="cpu")
    direct = idguide.load_scorer("clip-i", weights=weights_root / "clip-vit-large-patch14", device="cpu")
    torch.testing.assert_close(via_parent.embed(batch).vector, direct.embed(batch).vector)
    with pytest.raises(idguide.WeightsError, match="looked there and in .*clip-vit-large-patch14"):
        idguide.load_scorer("clip-i", weights=Path(weights_root) / "id_sim_checkpoint", device="cpu")


def test_library_errors_name_library_parameters_and_the_cli_its_flags(tmp_path, capsys):
    from idguide.evaluation.scoring import Layout
    from idguide.scorers.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^samples: not a folder: ") as error:
        Layout(tmp_path / "absent", tmp_path)
    assert error.value.parameter == "samples"
    (tmp_path / "s" / "object_00_cube").mkdir(parents=True)
    Image.open(REFERENCE).save(tmp_path / "s" / "object_00_cube" / "0.png")
    with pytest.raises(ParameterError, match=r"^references: no reference image for 1 subject\(s\)"):
        Layout(tmp_path / "s", tmp_path / "s")
    code = main(["eval", "dreambench-score", "--metric", "nearid", "--samples", str(tmp_path / "absent"),
                 "--references", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert capsys.readouterr().err.strip() == f"idguide: error: --samples: not a folder: {tmp_path / 'absent'}"


# --- names that become file names stay inside their folder ---------------------------------------

# Each would leave the output folder, name a folder, or be refused by another system.
BAD_NAMES = ["../evil", "../../evil", "sub/evil", "{tmp}/abs/evil", "..", ".", "a\\evil", "x:y", "a*", "", " x",
             "new\nline"]


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.mark.parametrize("name", BAD_NAMES)
def test_dreambench_score_method_cannot_leave_the_output_folder(tmp_path, weights_root, capsys, monkeypatch, name):
    """``--method`` names the rating file: every name that is not one plain file name is refused
    before anything is written, naming the flag."""
    import idguide.cli.evaluate as eval_cli

    monkeypatch.setattr(eval_cli, "scorer_from_args", lambda *a, **k: pytest.fail("weights loaded before the name"))
    samples = tmp_path / "work" / "samples" / "m" / "object_00_cube"
    samples.mkdir(parents=True)
    Image.open(REFERENCE).resize((32, 32)).save(samples / "0.png")
    Image.open(REFERENCE).resize((32, 32)).save(tmp_path / "work" / "object_00_cube.png")
    before = files_under(tmp_path)
    code = main(["eval", "dreambench-score", "--metric", "nearid", "--weights", str(weights_root / "nearid-siglip2"),
                 "--samples", str(samples.parent), "--references", str(tmp_path / "work"),
                 "--out", str(tmp_path / "work" / "out" / "inner"), "--method", name.format(tmp=tmp_path)])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and line.startswith("idguide: error: --method: "), line
    assert "cannot be a file name" in line or "expected a non-empty name" in line, line
    assert files_under(tmp_path) == before  # not even --out was created


def test_a_plain_method_name_writes_inside_the_output_folder_and_glob_characters_stay_literal(tmp_path, weights_root):
    """The control for the refusals above, and a name with glob characters: ``a[1]``'s resume must
    not read (and then delete) the partial file of the method ``a1``."""
    samples = tmp_path / "samples" / "object_00_cube"
    samples.mkdir(parents=True)
    Image.open(REFERENCE).resize((32, 32)).save(samples / "0.png")
    Image.open(REFERENCE).resize((32, 32)).save(tmp_path / "object_00_cube.png")
    out = tmp_path / "out"
    out.mkdir()
    other = out / "a1.partial-0.jsonl"
    other.write_text('["object_00_cube-0", 12.5]\n')
    assert main(["eval", "dreambench-score", "--metric", "nearid", "--weights", str(weights_root / "nearid-siglip2"),
                 "--samples", str(tmp_path / "samples"), "--references", str(tmp_path), "--out", str(out),
                 "--method", "a[1]"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a1.partial-0.jsonl", "a[1].json", "a[1].provenance.json"]
    import json

    assert json.loads((out / "a[1].json").read_text())["object_00_cube-0"] != 12.5  # scored, not read from a1's file
    assert other.read_text() == '["object_00_cube-0", 12.5]\n'


@pytest.mark.parametrize("name", ["x.provenance", "x.partial-0"])
def test_a_method_named_like_a_companion_file_is_refused(tmp_path, name):
    from idguide.evaluation.scoring import rating_name
    from idguide.scorers.errors import ParameterError

    with pytest.raises(ParameterError, match=r"^method: .* companion file"):
        rating_name(name)
    assert rating_name("dreambooth_sd") == "dreambooth_sd"


@pytest.mark.parametrize("name", BAD_NAMES)
def test_metric_names_cannot_leave_the_output_folder(files, tmp_path, capsys, name):
    """``--metric-scores NAME=DIR``: NAME names the metric's scatter plot in ``--out``."""
    out = tmp_path / "out" / "inner"
    before = files_under(tmp_path)
    code = main(["eval", "dreambench", "--ratings", path(files, "F:ratings"), "--out", str(out), "--metric-scores",
                 f"{name.format(tmp=tmp_path)}={path(files, 'F:metric_ok')}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("idguide: error: --metric-scores "), lines
    assert ("the metric's NAME: " in lines[0] or "takes NAME=DIR" in lines[0]) and files_under(tmp_path) == before


def test_a_plain_metric_name_writes_its_plot_inside_the_output_folder(files, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["eval", "dreambench", "--ratings", path(files, "F:ratings"), "--out", str(out), "--category",
                 "object", "--metric-scores", f"ok-name_1.0={path(files, 'F:metric_ok')}"]) == 0
    assert (out / "scatter_ok-name_1.0.png").stat().st_size > 0
    assert {p.parent for p in files_under(tmp_path)} <= {tmp_path, out}


# --- one input must not silently replace another ---------------------------------------------------

def test_a_rating_file_with_a_key_twice_is_refused(tmp_path):
    from idguide.evaluation import dreambench as db

    (tmp_path / "m.json").write_text('{"object_00_cube-0": 1, "object_00_cube-0": 2}')
    with pytest.raises(ValueError, match=r"m.json: the key 'object_00_cube-0' appears twice \(scores 1 and 2\)"):
        db.read_ratings(tmp_path / "m.json")


def test_library_reference_files_refuse_two_images_of_one_subject_but_not_of_an_unused_one(tmp_path):
    from idguide.evaluation.scoring import reference_files
    from idguide.scorers.errors import ParameterError

    for name in ("object_00_cube.png", "object_00_cube.jpg", "object_01_ball.png", "unused.png", "unused.jpg"):
        Image.open(REFERENCE).resize((16, 16)).save(tmp_path / name)
    with pytest.raises(ParameterError, match="object_00_cube.jpg and object_00_cube.png; keep one"):
        reference_files(tmp_path, {"object_00_cube"})
    assert reference_files(tmp_path, {"object_01_ball"}) == {"object_01_ball": tmp_path / "object_01_ball.png"}


# --- options with no effect -------------------------------------------------------------------------

def test_patch_distance_is_refused_in_cls_mode_and_taken_in_the_patch_modes(weights_root):
    from idguide.scorers.errors import ParameterError

    folder = weights_root / "id_sim_checkpoint"
    for given in ("pooled", "sinkhorn"):
        with pytest.raises(ParameterError, match=f"^patch_distance: '{given}' has no effect in .*mode 'cls'"):
            idguide.load_scorer("idsim-dinov2-vitb14", weights=folder, patch_distance=given)
    assert idguide.load_scorer("idsim-dinov2-vitb14", weights=folder).patch_distance == "pooled"
    joint = idguide.load_scorer("idsim-dinov2-vitb14", weights=folder, mode="joint", patch_distance="sinkhorn")
    assert (joint.mode, joint.patch_distance) == ("joint", "sinkhorn")


def test_settings_with_no_effect_are_named_in_a_warning():
    import warnings

    from idguide.guidance.ranked import best_of_batches
    from idguide.scorers.checks import NoEffectWarning

    with pytest.warns(NoEffectWarning, match=r"crop \(0.5, 1.0\) and jitter 0.05 have no effect"):
        idguide.Augment(draws=0, crop=(0.5, 1.0))

    def generate(seeds):
        return [torch.zeros(3, 4, 4) for _ in seeds], [0.1 * s for s in seeds]

    with pytest.warns(NoEffectWarning, match="threshold 0.3 has no effect: .*batch_size 4 makes all 4 samples one batch"):
        best_of_batches(generate, 4, 4, threshold=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the defaults, and a threshold that can stop early, warn of nothing
        idguide.Augment(draws=0)
        idguide.Augment()
        assert best_of_batches(generate, 4, 2, threshold=0.05).generated == 2


# --- Python API arguments are checked where they enter -------------------------------------------

class NeverCalled:
    """A pipeline that fails the test if anything samples before the arguments are checked."""

    device = torch.device("cpu")

    def __call__(self, *args, **kwargs):
        raise AssertionError("sampled before checking the arguments")


@pytest.fixture(scope="module")
def api(weights_root):
    from conftest import scorer_for

    scorer = scorer_for("nearid", weights_root)
    images = torch.rand(2, 3, 32, 32)
    embedding = scorer.embed(images)
    nan = idguide.Embedding(embedding.vector * NAN, scorer=embedding.scorer)
    return scorer, images, embedding, nan, weights_root


def api_cases():
    from idguide.scorers.ranking import rank

    pipe = NeverCalled()
    return [
        ("load_scorer name None", lambda s, x, e, n, w: idguide.load_scorer(None), TypeError,
         "name must be a scorer name (a str; see available_scorers()), got None"),
        ("load_scorer weights int", lambda s, x, e, n, w: idguide.load_scorer("nearid", weights=3), TypeError,
         "weights must be a path, a Hugging Face repo id or None (the official weights), got int"),
        ("load_scorer weights empty", lambda s, x, e, n, w: idguide.load_scorer("nearid", weights=" "), ValueError,
         "weights: an empty path"),
        ("embed batch_size 0", lambda s, x, e, n, w: s.embed(x, batch_size=0), ValueError,
         "batch_size must be an integer >= 1, got 0"),
        ("embed batch_size -1", lambda s, x, e, n, w: s.embed(x, batch_size=-1), ValueError,
         "batch_size must be an integer >= 1, got -1"),
        ("embed batch_size 1.5", lambda s, x, e, n, w: s.embed(x, batch_size=1.5), ValueError,
         "batch_size must be an integer >= 1, got 1.5"),
        ("embed None", lambda s, x, e, n, w: s.embed(None), ValueError, "nearid: images: expected a tensor"),
        ("embed_batches 0", lambda s, x, e, n, w: s.embed_batches(list(x), 0), ValueError, "batch_size must be"),
        ("similarity tensors", lambda s, x, e, n, w: s.similarity(e.vector, e), TypeError,
         "a must be an Embedding (from nearid.embed), got a Tensor of shape (2, 64) (a tensor does not say"),
        ("similarity None", lambda s, x, e, n, w: s.similarity(e, None), TypeError, "b must be an Embedding"),
        ("similarity NaN", lambda s, x, e, n, w: s.similarity(e, n), ValueError,
         "b: 128 embedding value(s) are NaN or infinite"),
        ("similarity_matrix tensors", lambda s, x, e, n, w: s.similarity_matrix(e, e.vector), TypeError,
         "b must be an Embedding"),
        ("similarity_matrix NaN", lambda s, x, e, n, w: s.similarity_matrix(n, e), ValueError,
         "a: 128 embedding value(s) are NaN or infinite"),
        ("score reference None", lambda s, x, e, n, w: s.score(None, x), ValueError,
         "nearid: reference: expected a tensor or a list of tensors, got NoneType"),
        ("score reference vectors", lambda s, x, e, n, w: s.score(e.vector, x), TypeError,
         "reference: a (2, 64) tensor is neither images [B,3,H,W] nor an Embedding"),
        ("score NaN embedding", lambda s, x, e, n, w: s.score(n, e), ValueError, "reference: 128 embedding value"),
        ("rank None", lambda s, x, e, n, w: rank(None), TypeError, "scores must be a sequence of numbers, got None"),
        ("rank NaN", lambda s, x, e, n, w: rank([0.5, NAN]), ValueError,
         "scores[1] is nan: a score must be a finite number"),
        ("rank text", lambda s, x, e, n, w: rank([0.5, "high"]), TypeError, "scores[1] is 'high', not a number"),
        ("best_of_n pipe None", lambda s, x, e, n, w: idguide.best_of_n(None, s, x), TypeError,
         "pipe must be a diffusers pipeline (an instance, called to generate), got None"),
        ("best_of_n pipe class", lambda s, x, e, n, w: idguide.best_of_n(NeverCalled, s, x), TypeError,
         "got the class NeverCalled"),
        ("best_of_n scorer None", lambda s, x, e, n, w: idguide.best_of_n(pipe, None, x), TypeError,
         "scorer must be an idguide Scorer (from idguide.load_scorer), got None"),
        ("best_of_n reference vectors", lambda s, x, e, n, w: idguide.best_of_n(pipe, s, e.vector), TypeError,
         "reference: a (2, 64) tensor"),
        ("best_of_n batch_size 0", lambda s, x, e, n, w: idguide.best_of_n(pipe, s, x, batch_size=0), ValueError,
         "batch_size must be an integer >= 1, got 0"),
        ("noise_search pipe None", lambda s, x, e, n, w: idguide.noise_search(None, s, x, (4, 8, 8)), TypeError,
         "pipe must be a diffusers pipeline"),
        ("noise_search pipe without device", lambda s, x, e, n, w: idguide.noise_search(lambda **k: k, s, x, (4, 8, 8)),
         TypeError, "pipe: function has no .device, which a diffusers pipeline has"),
        ("noise_search scorer str", lambda s, x, e, n, w: idguide.noise_search(pipe, "nearid", x, (4, 8, 8)),
         TypeError, "scorer must be an idguide Scorer (from idguide.load_scorer), got str"),
        ("noise_search shape text", lambda s, x, e, n, w: idguide.noise_search(pipe, s, x, "4x8x8"), TypeError,
         "latent_shape must be a shape such as (4, 64, 64), got '4x8x8'"),
        ("noise_search shape zero", lambda s, x, e, n, w: idguide.noise_search(pipe, s, x, (4, 0, 8)), ValueError,
         "latent_shape[1] must be an integer >= 1, got 0"),
        ("noise_search seed -1", lambda s, x, e, n, w: idguide.noise_search(pipe, s, x, (4, 8, 8), seed=-1),
         ValueError, "seed must be an integer >= 0, got -1"),
        ("noise_search reference NaN", lambda s, x, e, n, w: idguide.noise_search(pipe, s, n, (4, 8, 8)), ValueError,
         "reference: 128 embedding value(s) are NaN"),
        ("path_search pipe None", lambda s, x, e, n, w: idguide.path_search(None, s, x), TypeError,
         "pipe must be a diffusers pipeline"),
        ("path_search scorer None", lambda s, x, e, n, w: idguide.path_search(pipe, None, x), TypeError,
         "scorer must be an idguide Scorer"),
        ("path_search img2img int", lambda s, x, e, n, w: idguide.path_search(pipe, s, x, img2img=3), TypeError,
         "img2img must be a diffusers pipeline (an instance, called to generate), got int"),
        ("path_search seed 1.5", lambda s, x, e, n, w: idguide.path_search(pipe, s, x, seed=1.5), ValueError,
         "seed must be an integer >= 0, got 1.5"),
        ("steer_particles pipe None", lambda s, x, e, n, w: idguide.steer_particles(None, s, x), TypeError,
         "pipe must be a diffusers pipeline"),
        ("steer_particles scorer None", lambda s, x, e, n, w: idguide.steer_particles(pipe, None, x), TypeError,
         "scorer must be an idguide Scorer"),
        ("steer_particles particles 0", lambda s, x, e, n, w: idguide.steer_particles(pipe, s, x, particles=0),
         ValueError, "particles must be an integer >= 1, got 0"),
        ("steer_particles keep 0", lambda s, x, e, n, w: idguide.steer_particles(pipe, s, x, keep=0), ValueError,
         "keep must be an integer >= 1, got 0"),
        ("callback scorer None", lambda s, x, e, n, w: idguide.IdentityGuidanceCallback(None, x), TypeError,
         "scorer must be an idguide Scorer"),
        ("callback reference None", lambda s, x, e, n, w: idguide.IdentityGuidanceCallback(s, None), ValueError,
         "nearid: reference: expected a tensor"),
        ("callback reference vectors", lambda s, x, e, n, w: idguide.IdentityGuidanceCallback(s, e.vector),
         TypeError, "reference: a (2, 64) tensor"),
        ("callback decoder int", lambda s, x, e, n, w: idguide.IdentityGuidanceCallback(s, x, decoder=3), TypeError,
         "decoder must be 'auto', 'tiny', 'vae', a path, an AutoencoderTiny or a callable"),
        ("callback decoder missing path", lambda s, x, e, n, w: idguide.IdentityGuidanceCallback(
            s, x, decoder="./no/such/taesd"), ValueError, "decoder: no file or folder './no/such/taesd'"),
        ("particles scorer None", lambda s, x, e, n, w: idguide.ParticleSteering(None, x), TypeError,
         "scorer must be an idguide Scorer"),
        ("particles decoder int", lambda s, x, e, n, w: idguide.ParticleSteering(s, x, decoder=3), TypeError,
         "decoder must be"),
        ("particles reference list", lambda s, x, e, n, w: idguide.ParticleSteering(s, [1, 2]), ValueError,
         "nearid: reference[0]: expected a torch.Tensor"),
        ("identity loss scorer None", lambda s, x, e, n, w: idguide.IdentityLoss(None, x), TypeError,
         "scorer must be an idguide Scorer"),
    ]


CASES = api_cases()


@pytest.mark.parametrize("call,kind,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_public_entry_points_check_their_arguments(api, call, kind, message):
    """TypeError for a wrong kind of thing, ValueError for a wrong value, naming the parameter;
    never an AttributeError from inside, never a NaN result."""
    with pytest.raises(Exception) as error:
        call(*api)
    assert isinstance(error.value, kind) and not isinstance(error.value, AttributeError), repr(error.value)
    assert message in str(error.value), str(error.value)
