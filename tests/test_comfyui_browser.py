"""The shipped UI workflows in the real ComfyUI frontend, in headless Chromium.

Skipped without $IDGUIDE_COMFYUI, Playwright (Python) or /usr/bin/chromium. Screenshots go to a
temporary folder; ``IDGUIDE_REFRESH_SCREENSHOTS=1`` writes them over ``workflows/screenshots/``
(the command is in docs/development.md). With IDGUIDE_WRITE_WORKFLOWS=1 it (re)writes each UI
workflow from its API twin through the frontend's own converter (``app.loadApiJson`` +
``graph.serialize``). It waits for conditions (the graph holds the nodes, a frame was drawn),
never for a time.
"""

import json
import os
import shutil
from pathlib import Path

import checkpoints
import pytest
from comfyui_server import REPO, Server

from conftest import EXAMPLES

CHROMIUM = os.environ.get("IDGUIDE_CHROMIUM", "/usr/bin/chromium")  # Debian's package
WORKFLOWS = REPO / "workflows"
NAMES = ["rank_folder", "best_of_n", "noise_search", "identity_guidance", "dreambench_eval"]

CHECK = """() => {
  const missing = [], rejected = [];
  for (const node of window.app.graph._nodes) {
    if (!window.LiteGraph.registered_node_types[node.type]) missing.push(node.type);
    for (const w of node.widgets || []) {
      let values = w.options && w.options.values;
      if (typeof values === 'function') values = values();
      if (Array.isArray(values) && !values.includes(w.value)) rejected.push(`${node.type}.${w.name}=${w.value}`);
    }
  }
  return {missing, rejected, count: window.app.graph._nodes.length};
}"""


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (pip install playwright)")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    base = tmp_path_factory.mktemp("comfy-ui")
    checkpoints.write_nearid(base / "models" / "idguide" / "nearid-siglip2")
    (base / "models" / "checkpoints").mkdir(parents=True)
    (base / "models" / "checkpoints" / "v1-5-pruned-emaonly-fp16.safetensors").write_bytes(b"")  # listed only
    (base / "input").mkdir()
    shutil.copy(EXAMPLES / "reference.jpg", base / "input" / "reference.jpg")
    server = Server(base)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        tab = browser.new_page(viewport={"width": 2000, "height": 1100})
        tab.goto(server.url)
        tab.wait_for_function("window.app && window.app.graph && window.LiteGraph", timeout=90000)
        yield tab
        browser.close()
    server.stop()


NODES_LOADED = "n => window.app.graph._nodes.length === n"
FRAME_DRAWN = "() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"


@pytest.mark.parametrize("name", NAMES)
def test_ui_workflow_loads_without_missing_nodes_or_rejected_values(page, name, tmp_path):
    ui_path = WORKFLOWS / f"{name}.json"
    if os.environ.get("IDGUIDE_WRITE_WORKFLOWS") or not ui_path.exists():
        api = json.loads((WORKFLOWS / "api" / f"{name}.json").read_text())
        page.evaluate("async ([w, n]) => { await window.app.loadApiJson(w, n); }", [api, name])
        try:
            page.wait_for_function(NODES_LOADED, arg=len(api), timeout=30000)
        except Exception:  # say what the graph holds instead
            held = page.evaluate("() => window.app.graph._nodes.map(n => n.type)")
            raise AssertionError(f"{name}: the graph holds {len(held)} nodes, not {len(api)}: {held}") from None
        ui = page.evaluate("() => JSON.parse(JSON.stringify(window.app.graph.serialize()))")
        for node in ui["nodes"]:  # shipped seeds stay put: the same workflow gives the same images
            node["widgets_values"] = ["fixed" if v == "randomize" else v for v in node.get("widgets_values", [])]
        ui_path.write_text(json.dumps(ui, indent=1) + "\n")
    workflow = json.loads(ui_path.read_text())
    page.evaluate("async (w) => { await window.app.loadGraphData(w); }", workflow)
    page.wait_for_function(NODES_LOADED, arg=len(workflow["nodes"]), timeout=30000)
    result = page.evaluate(CHECK)
    assert result["count"] == len(workflow["nodes"]) > 0
    assert result["missing"] == [], result
    assert result["rejected"] == [], result
    assert page.locator("text=Invalid workflow").count() == 0  # the frontend's schema check
    page.keyboard.press("Escape")
    page.mouse.click(800, 900)
    page.keyboard.press(".")  # fit the view to the graph
    page.evaluate("() => { const ds = window.app.canvas.ds; ds.scale = Math.max(ds.scale, 0.75); "
                  "window.app.canvas.setDirty(true, true); }")
    page.evaluate(FRAME_DRAWN)
    folder = WORKFLOWS / "screenshots" if os.environ.get("IDGUIDE_REFRESH_SCREENSHOTS") else tmp_path
    folder.mkdir(exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))
    assert (folder / f"{name}.png").stat().st_size > 10_000  # a drawn canvas, not a blank page
