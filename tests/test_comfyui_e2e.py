"""End-to-end against a real ComfyUI server (skipped without $IDGUIDE_COMFYUI)."""

import json
import shutil
from pathlib import Path

import checkpoints
import pytest
from comfyui_server import REPO, Server

from conftest import EXAMPLES

NODES = ["IDGuideLoadScorer", "IDGuideReference", "IDGuideScore", "IDGuideRank", "IDGuideLoadImageFolder"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("comfy")
    checkpoints.write_nearid(base / "models" / "idguide" / "nearid-siglip2")
    (base / "input").mkdir()
    shutil.copy(EXAMPLES / "reference.jpg", base / "input" / "reference.jpg")
    shutil.copytree(EXAMPLES / "candidates", base / "input" / "candidates")
    srv = Server(base)
    yield srv
    srv.stop()


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
    history = server.run(load("rank_folder_api.json"))
    assert history["status"]["status_str"] == "success", history["status"]
    saved = history["outputs"]["6"]["images"]
    assert len(saved) == 3
    for image in saved:
        assert (server.base / "output" / image.get("subfolder", "") / image["filename"]).is_file()


def test_bad_input_returns_error_and_server_stays_up(server):
    bad = load("rank_folder_api.json")
    bad["4"]["inputs"]["folder"] = "../../etc"
    history = server.run(bad)
    assert history["status"]["status_str"] == "error"
    messages = json.dumps(history["status"]["messages"])
    assert "outside the input directory" in messages
    again = server.run(load("rank_folder_api.json"))
    assert again["status"]["status_str"] == "success"


def test_workflow_templates_are_served(server):
    templates = server.get("/workflow_templates")
    assert "rank_folder_api" in templates.get("idguide", [])
