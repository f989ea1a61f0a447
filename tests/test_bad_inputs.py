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
    return {"root": root, "weights": weights_root}


def path(files, name: str) -> str:
    """``W:x``: x in the tiny weights; ``F:x``: x among the bad files."""
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
    (["eval", "dreambench", "--ratings", "F:nowhere"], "no group1/ and group2/ folders of human ratings"),
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
