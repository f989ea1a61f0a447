"""Start a real ComfyUI server (a checkout named by $IDGUIDE_COMFYUI) on 127.0.0.1 for tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def comfyui_checkout() -> Path:
    location = os.environ.get("IDGUIDE_COMFYUI")
    if not location:
        pytest.skip("IDGUIDE_COMFYUI is not set: these tests need a checkout of github.com/Comfy-Org/ComfyUI "
                    "(and IDGUIDE_COMFYUI_PYTHON, a Python with its requirements); see README.md")
    path = Path(location)
    if not (path / "main.py").is_file():
        pytest.skip(f"IDGUIDE_COMFYUI={location} is not a ComfyUI checkout (no main.py)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path):
        self.checkout = comfyui_checkout()
        self.base = base
        self.port = free_port()
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        link = base / "custom_nodes" / "idguide"
        if not link.exists():
            link.symlink_to(REPO, target_is_directory=True)
        python = os.environ.get("IDGUIDE_COMFYUI_PYTHON", sys.executable)
        self.log = open(base / "server.log", "w")
        self.process = subprocess.Popen(
            [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(self.port),
             "--base-directory", str(base), "--disable-auto-launch"],
            cwd=self.checkout, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        deadline = time.time() + 180
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited early:\n{(base / 'server.log').read_text()[-3000:]}")
            try:
                self.get("/system_stats")
                return
            except OSError:
                time.sleep(1)
        raise RuntimeError("ComfyUI did not start within 180 s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str):
        with urllib.request.urlopen(self.url + path, timeout=30) as response:
            return json.loads(response.read())

    def post(self, path: str, payload: dict):
        request = urllib.request.Request(self.url + path, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    def run(self, prompt: dict, timeout: float = 300) -> dict:
        """Queue a prompt and wait for its history entry."""
        status, body = self.post("/prompt", {"prompt": prompt})
        if status != 200:
            raise AssertionError(f"/prompt refused the workflow: {body}")
        prompt_id = body["prompt_id"]
        deadline = time.time() + timeout
        while time.time() < deadline:
            history = self.get(f"/history/{prompt_id}")
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                return history[prompt_id]
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()
