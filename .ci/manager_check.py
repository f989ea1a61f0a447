"""Install check, ComfyUI-Manager style: the pack's tracked files copied into a fresh ComfyUI's
custom_nodes/ (as a git clone would put them), in a Python that got only requirements.txt.
ComfyUI must start, import the pack without failure and list every IDGuide node in /object_info.

    python .ci/manager_check.py COMFYUI        (run with that ComfyUI Python)
"""

import importlib.metadata
import json
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]


def declared_nodes() -> set[str]:
    return {m for f in (PACK / "nodes").glob("*.py") for m in re.findall(r'node_id="(\w+)"', f.read_text())}


def copy_tracked(target: Path) -> None:
    """What a clone holds: tracked files (and new ones not ignored), nothing built or ignored."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=PACK, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, (f.decode() for f in files)):
        if (PACK / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PACK / name, target / name)


def main(comfyui: Path) -> int:
    try:
        importlib.metadata.distribution("idguide")
        print("manager check: idguide is pip-installed in this Python; use one that got only requirements.txt")
        return 1
    except importlib.metadata.PackageNotFoundError:
        pass
    base = Path(tempfile.mkdtemp(prefix="idguide-manager-"))
    copy_tracked(base / "custom_nodes" / "idguide")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = base / "server.log"
    started = time.time()
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                                   "--base-directory", str(base), "--disable-auto-launch"],
                                  cwd=comfyui, stdout=out, stderr=subprocess.STDOUT)
    try:
        info = None
        while time.time() - started < 300 and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=30) as response:
                    info = json.loads(response.read())
                break
            except OSError:
                time.sleep(1)
    finally:
        server.terminate()
        server.wait(30)
    text = log.read_text()
    if info is None:
        print(f"manager check: ComfyUI did not serve /object_info:\n{text[-3000:]}")
        return 1
    ours = {name for name, node in info.items() if node.get("python_module") == "custom_nodes.idguide"}
    expected = declared_nodes()
    pack = str(base / "custom_nodes" / "idguide")
    failed = [line for line in text.splitlines() if pack in line and ("IMPORT FAILED" in line or "Error" in line)]
    if failed or ours != expected:
        print(f"manager check failed: missing {sorted(expected - ours)}, unexpected {sorted(ours - expected)}, "
              f"import failures {failed}\n{text[-3000:]}")
        return 1
    print(f"manager check: ComfyUI started in {time.time() - started:.0f} s and lists all {len(ours)} IDGuide nodes "
          f"({', '.join(sorted(ours))}); no import failure")
    shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).resolve()))
