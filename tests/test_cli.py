"""The command line on the shipped example photographs."""

import json
import os
import subprocess
import sys


import idguide
from idguide.cli import main

from conftest import EXAMPLES

REFERENCE = EXAMPLES / "reference.jpg"
CANDIDATES = EXAMPLES / "candidates"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_rank_json_is_sorted_by_independently_computed_scores(capsys, weights_root):
    weights = weights_root / "nearid-siglip2"
    code, out, _ = run(capsys, "rank", "--metric", "nearid", "--weights", weights, "--json", REFERENCE, CANDIDATES)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    files = sorted(CANDIDATES.glob("*.jpg"))
    assert len(rows) == len(files) and [r["rank"] for r in rows] == list(range(1, len(files) + 1))
    scorer = idguide.load_scorer("nearid", weights=weights)
    ref = scorer.embed(idguide.load_image(REFERENCE)[None])
    expected = {str(p): scorer.score(ref, idguide.load_image(p)[None]).item() for p in files}
    assert [r["path"] for r in rows] == sorted(expected, key=expected.get, reverse=True)
    for row in rows:
        assert abs(row["similarity"] - expected[row["path"]]) < 1e-5


def test_rank_top_k_and_threshold(capsys, weights_root):
    args = ["rank", "--metric", "idsim-dinov2-vitb14", "--weights", weights_root / "id_sim_checkpoint", "--json"]
    _, out, _ = run(capsys, *args, REFERENCE, CANDIDATES)
    everything = [json.loads(line) for line in out.splitlines()]
    assert all(abs(r["similarity"] + r["distance"] - 1) < 1e-5 for r in everything)
    _, out, _ = run(capsys, *args, "--top-k", 2, REFERENCE, CANDIDATES)
    assert [json.loads(line) for line in out.splitlines()] == everything[:2]
    cut = everything[2]["similarity"]
    _, out, _ = run(capsys, *args, "--threshold", cut, REFERENCE, CANDIDATES)
    assert [json.loads(line)["path"] for line in out.splitlines()] == [r["path"] for r in everything[:3]]
    code, out, err = run(capsys, *args, "--threshold", 0.99999, REFERENCE, CANDIDATES)
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("idguide: error: no image reached the threshold 0.99999 (best score")


def test_score_table_keeps_argument_order(capsys, weights_root):
    images = [CANDIDATES / "rocket.jpg", CANDIDATES / "chelsea_crop.jpg"]
    code, out, _ = run(capsys, "score", "--metric", "clip-i", "--weights", weights_root / "clip-vit-large-patch14",
                       REFERENCE, *images)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["similarity", "image"]
    assert [line.split()[-1] for line in lines[1:]] == [str(p) for p in images]


def test_errors_are_one_clear_line(capsys, tmp_path, weights_root):
    code, _, err = run(capsys, "score", "--metric", "nearid", "--weights", weights_root / "nearid-siglip2",
                       tmp_path / "missing.jpg", REFERENCE)
    assert code == 2 and "image file not found" in err
    code, _, err = run(capsys, "rank", "--metric", "nearid", REFERENCE, tmp_path)
    assert code == 2 and "no images in" in err
    code, _, err = run(capsys, "score", "--metric", "nearid", REFERENCE, REFERENCE)  # offline, no weights
    assert code == 2 and "huggingface.co/Aleksandar/nearid-siglip2" in err
    code, _, err = run(capsys, "score", "--metric", "nope", REFERENCE, REFERENCE)
    assert code == 2 and "unknown scorer" in err


def test_console_script_runs(weights_root):
    """The installed `idguide` entry point (what the README's first command runs)."""
    exe = os.path.join(os.path.dirname(sys.executable), "idguide")
    out = subprocess.run([exe, "list"], capture_output=True, text=True, check=True).stdout
    assert "nearid" in out and "idsim-dinov3-vitl16" in out
    out = subprocess.run(
        [exe, "rank", "--metric", "nearid", "--weights", str(weights_root / "nearid-siglip2"), str(REFERENCE),
         str(CANDIDATES), "--top-k", "3"],
        capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    ).stdout
    assert len(out.splitlines()) == 4  # header + top 3
