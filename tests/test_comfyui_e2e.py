"""End-to-end against a real ComfyUI server (skipped without $IDGUIDE_COMFYUI)."""

import json
import shutil
from pathlib import Path

import checkpoints
import numpy as np
import pytest
from comfyui_server import REPO, Server
from PIL import Image

from conftest import EXAMPLES

def write_tiny_sd15(path: Path) -> None:
    """ComfyUI's own classes write it, in ComfyUI's Python (see comfyui_checkpoint.py)."""
    import os
    import subprocess
    import sys

    from comfyui_server import comfyui_checkout

    path.parent.mkdir(parents=True, exist_ok=True)
    python = os.environ.get("IDGUIDE_COMFYUI_PYTHON", sys.executable)
    script = Path(__file__).with_name("comfyui_checkpoint.py")
    subprocess.run([python, str(script), str(comfyui_checkout()), str(path)], check=True, capture_output=True)


NODES = ["IDGuideGuidance", "IDGuideBestOfN", "IDGuideNoiseSearch", "IDGuideParticleSampler", "IDGuideLoadScorer",
         "IDGuideReference", "IDGuideScore", "IDGuideRank", "IDGuideLoadImageFolder", "IDGuideSimilarityMap", "IDGuideSimilarityMatrix", "IDGuideDreamBenchFolder",
         "IDGuideDreamBenchScore", "IDGuideHumanAlignment"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    checkpoints.write_nearid(base / "models" / "idguide" / "nearid-siglip2")
    write_tiny_sd15(base / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors")
    (base / "input").mkdir()
    shutil.copy(EXAMPLES / "reference.jpg", base / "input" / "reference.jpg")
    shutil.copytree(EXAMPLES / "candidates", base / "input" / "candidates")
    write_dreambench(base / "input")
    srv = Server(base)
    yield srv
    srv.stop()


def write_dreambench(root: Path) -> None:
    """A small DreamBench++-layout folder (2 subjects x 3 images, the example photos) and human ratings."""
    photos = sorted((EXAMPLES / "candidates").glob("*.jpg"))
    for s, subject in enumerate(["object_00_cat", "object_01_rocket"]):
        (root / "dreambench" / "references").mkdir(parents=True, exist_ok=True)
        shutil.copy(EXAMPLES / "reference.jpg" if s == 0 else photos[-1], root / "dreambench" / "references" / f"{subject}.jpg")
        for i in range(3):
            folder = root / "dreambench" / "samples" / "dreambooth_sd" / subject
            folder.mkdir(parents=True, exist_ok=True)
            Image.open(photos[(i + 3 * s) % len(photos)]).convert("RGB").save(folder / f"{i}.png")
    for g, group in enumerate(("group1", "group2")):
        (root / "dreambench_plus" / group).mkdir(parents=True)
        ratings = {f"{subject}-{i}": (i + g + s) % 5 for s, subject in enumerate(["object_00_cat", "object_01_rocket"])
                   for i in range(3)}
        (root / "dreambench_plus" / group / "dreambooth_sd-cp.json").write_text(json.dumps(ratings))


def load(name: str) -> dict:
    return json.loads((REPO / "workflows" / name).read_text())


def test_object_info_lists_every_node_with_inputs(server):
    info = server.get("/object_info")
    for node in NODES:
        assert node in info, node
        assert info[node]["input"]["required"], node
    weights = info["IDGuideLoadScorer"]["input"]["required"]["weights"]
    assert "nearid-siglip2" in json.dumps(weights)  # the models/idguide dropdown


def test_rank_folder_workflow_completes(server):
    history = server.run(load("api/rank_folder.json"))
    assert history["status"]["status_str"] == "success", history["status"]
    saved = history["outputs"]["6"]["images"]
    assert len(saved) == 3
    for image in saved:
        assert (server.base / "output" / image.get("subfolder", "") / image["filename"]).is_file()
    assert len(history["outputs"]["9"]["images"]) == 3  # one similarity map per kept image
    ranked, overlay = saved_pixels(server, history, "6"), saved_pixels(server, history, "9")
    assert ranked.shape == overlay.shape and np.abs(ranked - overlay).mean() > 5
    assert len(history["outputs"]["11"]["images"]) == 1  # the matrix plot
    table = "".join(history["outputs"]["12"]["text"])
    assert table.splitlines()[0] == "," + ",".join(f"a{i}" for i in range(6))


def test_bad_input_returns_error_and_server_stays_up(server):
    bad = load("api/rank_folder.json")
    bad["4"]["inputs"]["folder"] = "../../etc"
    history = server.run(bad)
    assert history["status"]["status_str"] == "error"
    messages = json.dumps(history["status"]["messages"])
    error = next(data for kind, data in history["status"]["messages"] if kind == "execution_error")
    # A plain exception; ComfyUI itself names the node that raised it.
    assert error["node_type"] == "IDGuideLoadImageFolder" and error["exception_type"] == "ValueError"
    assert error["exception_message"].startswith("'folder' '../../etc' is outside "), error["exception_message"]
    again = server.run(load("api/rank_folder.json"))
    assert again["status"]["status_str"] == "success"


def test_workflow_templates_are_served_once_each(server):
    templates = server.get("/workflow_templates")
    # Only the UI workflows are templates; their API-format twins live in workflows/api/.
    assert sorted(templates.get("idguide", [])) == ["best_of_n", "dreambench_eval", "identity_guidance", "noise_search",
                                                   "rank_folder"]


def test_dreambench_eval_workflow_writes_ratings_and_the_table(server):
    history = server.run(load("api/dreambench_eval.json"))
    assert history["status"]["status_str"] == "success", history["status"]
    ratings = json.loads((server.base / "output" / "idguide_ratings" / "nearid" / "dreambooth_sd.json").read_text())
    assert sorted(ratings) == [f"object_0{s}_{n}-{i}" for s, n in ((0, "cat"), (1, "rocket")) for i in range(3)]
    table = "".join(history["outputs"]["5"]["text"])
    assert table.splitlines()[0].split() == ["metric", "DB-SD", "Fisher-z", "mean"]
    assert table.splitlines()[2].startswith("Human-Human") and table.splitlines()[3].startswith("nearid")
    assert len(history["outputs"]["6"]["images"]) == 1


def saved_pixels(server, history, node):
    image = history["outputs"][node]["images"][0]
    path = server.base / "output" / image.get("subfolder", "") / image["filename"]
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def guidance_prompt(scale):
    prompt = load("api/identity_guidance.json")
    prompt["4"]["inputs"].update(width=256, height=256)
    for sampler in ("9", "10"):
        prompt[sampler]["inputs"]["steps"] = 6
    prompt["8"]["inputs"]["scale"] = scale
    return prompt


def test_guidance_changes_the_image_only_at_nonzero_scale(server):
    history = server.run(guidance_prompt(4.0), timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    unguided, guided = saved_pixels(server, history, "13"), saved_pixels(server, history, "14")
    assert np.abs(guided - unguided).mean() > 0.5  # levels of 255
    history = server.run(guidance_prompt(0.0), timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    assert np.array_equal(saved_pixels(server, history, "13"), saved_pixels(server, history, "14"))


def test_best_of_n_keeps_the_best_and_seeds_regenerate(server):
    prompt = load("api/best_of_n.json")
    prompt["4"]["inputs"].update(width=256, height=256)
    prompt["8"]["inputs"].update(n=4, batch_size=2, keep=2, steps=4)
    history = server.run(prompt, timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    text = "".join(history["outputs"]["10"]["text"])
    rows = [line.split() for line in text.splitlines()[1:3]]
    scores, seeds = [float(r[2]) for r in rows], [int(r[3]) for r in rows]
    assert scores == sorted(scores, reverse=True) and all(100 <= s < 104 for s in seeds)
    assert "(4 of 4 sampled)" in text
    best = saved_pixels(server, history, "9")
    # The best sample's seed, alone through a plain KSampler, gives the same image.
    regen = load("api/identity_guidance.json")
    regen["4"]["inputs"].update(width=256, height=256)
    regen["9"]["inputs"].update(seed=seeds[0], steps=4)
    for node in ("5", "6", "7", "8", "10", "12", "14"):
        del regen[node]
    history = server.run(regen, timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    assert np.abs(saved_pixels(server, history, "13") - best).mean() < 1.0


def test_noise_search_workflow_runs_both_methods(server):
    prompt = load("api/noise_search.json")
    prompt["4"]["inputs"].update(width=256, height=256)
    for method, count in (("zero-order", 4), ("paths", 6)):
        prompt["8"]["inputs"].update(method=method, budget=4, keep=3, steps=4, parents=1, neighbours=2)
        history = server.run(prompt, timeout=600)
        assert history["status"]["status_str"] == "success", history["status"]
        text = "".join(history["outputs"]["10"]["text"])
        scores = [float(line.split()[2]) for line in text.splitlines()[1:4]]
        assert scores == sorted(scores, reverse=True)
        assert f"({count} samples, {method}, budget 4)" in text
        assert len(history["outputs"]["9"]["images"]) == 3


def test_particle_sampler_runs_in_sampler_custom_advanced(server):
    prompt = load("api/identity_guidance.json")
    prompt["4"]["inputs"].update(width=256, height=256, batch_size=3)
    for node in ("8", "9", "10", "11", "12", "13", "14"):
        del prompt[node]
    prompt.update({
        "20": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "21": {"class_type": "IDGuideParticleSampler",
               "inputs": {"sampler": ["20", 0], "vae": ["1", 2], "reference": ["7", 0], "every": 2, "start": 0.0,
                          "end": 0.8, "temperature": 20.0, "potential": "difference", "decode_size": 256, "seed": 0}},
        "22": {"class_type": "CFGGuider", "inputs": {"model": ["1", 0], "positive": ["2", 0], "negative": ["3", 0],
                                                      "cfg": 7.0}},
        "23": {"class_type": "BasicScheduler", "inputs": {"model": ["1", 0], "scheduler": "normal", "steps": 4,
                                                           "denoise": 1.0}},
        "24": {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}},
        "25": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["24", 0], "guider": ["22", 0],
                                                                  "sampler": ["21", 0], "sigmas": ["23", 0],
                                                                  "latent_image": ["4", 0]}},
        "26": {"class_type": "VAEDecode", "inputs": {"samples": ["25", 0], "vae": ["1", 2]}},
        "27": {"class_type": "IDGuideRank", "inputs": {"reference": ["7", 0], "images": ["26", 0], "top_k": 1,
                                                        "threshold": 0.0, "if_none_pass": "keep_best"}},
        "28": {"class_type": "SaveImage", "inputs": {"images": ["27", 0], "filename_prefix": "idguide_particles"}},
    })
    history = server.run(prompt, timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    assert len(history["outputs"]["28"]["images"]) == 1
