"""Finding and reading checkpoint files, with errors that say what to do.

Resolution order for a scorer's files: an explicit local path → each registered search
root (ComfyUI's ``models/idguide`` when running inside ComfyUI, then ``$IDGUIDE_HOME``,
default ``~/.cache/idguide``) → the huggingface_hub cache → a download through
huggingface_hub (progress bar, ``HF_HUB_OFFLINE`` respected).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import torch
from torch import nn

from .errors import WeightsError

PathLike = Union[str, os.PathLike]
_extra_roots: list[Path] = []
# How the user gives weights, so an error phrases the fix for the interface in use.
WEIGHTS_OPTION = {"python": "weights=...", "cli": "--weights DIR", "comfyui": "the weights dropdown"}
_interface = "python"
PROBE_SECONDS = 30.0  # how long a probe's answer is trusted: a blip at start-up must not block downloads until restart
_probe: tuple[float, str] | None = None  # (when, why the hub was unreachable; "" = reachable)


def set_interface(name: str) -> None:
    """``python`` (default), ``cli`` or ``comfyui``: how error messages tell users to pass weights."""
    global _interface
    if name not in WEIGHTS_OPTION:
        raise ValueError(f"interface must be one of {', '.join(WEIGHTS_OPTION)}, got {name!r}")
    _interface = name


def add_search_path(path: PathLike) -> None:
    """Look for weights under ``path`` too (before the default cache). Used by the ComfyUI nodes."""
    path = Path(path)
    if path not in _extra_roots:
        _extra_roots.append(path)


def search_roots() -> list[Path]:
    home = Path(os.environ.get("IDGUIDE_HOME", Path.home() / ".cache" / "idguide"))
    return [*_extra_roots, home]


@dataclass(frozen=True)
class HubFiles:
    """Files a scorer needs from one Hugging Face repo, and the folder name they use locally."""

    repo_id: str
    files: tuple[str, ...]
    local_name: str

    @property
    def url(self) -> str:
        return f"https://huggingface.co/{self.repo_id}"

    def placement_hint(self) -> str:
        roots = ", ".join(str(r / self.local_name) for r in search_roots())
        where = (f"put them in ComfyUI/models/idguide/{self.local_name}/ and choose it in {WEIGHTS_OPTION['comfyui']}"
                 if _interface == "comfyui" else f"pass the folder as {WEIGHTS_OPTION[_interface]}")
        return (f"download {', '.join(self.files)} from {self.url}, then {where}, or put them in one of: {roots} "
                "(IDGUIDE_HOME sets the last)")


def looks_like_path(weights: PathLike) -> bool:
    """Anything but a bare ``owner/name`` Hugging Face repo id is a local path."""
    text = str(weights)
    if isinstance(weights, os.PathLike) or os.path.exists(text):
        return True
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1


def resolve_folder(weights: PathLike | None, hub: HubFiles, what: str) -> Path:
    """A local folder holding every file of ``hub.files``.

    ``weights`` may be a folder, a Hugging Face repo id (``owner/name``), or ``None`` for the
    official repo.
    """
    if weights is not None and looks_like_path(weights):
        folder = Path(weights).expanduser()
        if not folder.exists():
            raise WeightsError(f"{what}: weights path does not exist: {folder}")
        if folder.is_file():
            folder = folder.parent
        inside = folder / hub.local_name  # the parent of the scorer's folder works too
        if not all((folder / f).is_file() for f in hub.files) and all((inside / f).is_file() for f in hub.files):
            return inside
        missing = [f for f in hub.files if not (folder / f).is_file()]
        if missing:
            raise WeightsError(f"{what}: {folder} is missing {', '.join(missing)} (looked there and in "
                               f"{inside}); {hub.placement_hint()}")
        return folder
    if weights is None:
        for root in search_roots():
            folder = root / hub.local_name
            if all((folder / f).is_file() for f in hub.files):
                return folder
    repo_id = str(weights) if weights is not None else hub.repo_id
    return hub_download(HubFiles(repo_id, hub.files, hub.local_name), what)


def hub_reachable() -> str | None:
    """``None`` when the Hugging Face hub (or the HTTPS proxy in use) answers, else why not — in a
    few seconds, so an offline first run says so at once instead of after a minute of retries. The
    answer is remembered for ``PROBE_SECONDS``, then asked again."""
    global _probe
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    now = time.monotonic()
    if _probe is None or now - _probe[0] > PROBE_SECONDS:
        _probe = (now, _probe_hub(constants.ENDPOINT))
    return _probe[1] or None


def _probe_hub(endpoint: str) -> str:
    """'' if a TCP connection to the hub — or to the proxy that ``HTTPS_PROXY`` names for it — opens."""
    import socket
    import urllib.request
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    host, port = url.hostname, url.port or 443
    proxy = urllib.request.getproxies().get(url.scheme or "https")
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname, proxied.port or (443 if proxied.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=3).close()
        return ""
    except OSError as error:
        return f"{host} is unreachable: {error.strerror or error}"


def hub_download(hub: HubFiles, what: str) -> Path:
    """Fetch ``hub.files`` through huggingface_hub (cache first) and return their folder."""
    from huggingface_hub import hf_hub_download

    paths = []
    for filename in hub.files:
        try:
            paths.append(Path(hf_hub_download(hub.repo_id, filename, local_files_only=True)))
            continue
        except Exception:  # not in the cache: download below
            pass
        offline = hub_reachable()
        try:
            if offline:
                raise ConnectionError(offline)
            paths.append(Path(hf_hub_download(hub.repo_id, filename)))
        except Exception as error:  # offline, gated, missing repo or file: all mean "not here"
            reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            raise WeightsError(
                f"{what}: could not get '{filename}' from {hub.url} ({reason}). "
                f"Expected files: {', '.join(hub.files)}. Without network access, "
                f"{hub.placement_hint()}"
            ) from None
    return paths[0].parent


def read_json(path: Path, hint: str = "") -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise WeightsError(f"missing file {path}. {hint}") from None
    except (OSError, ValueError) as error:
        raise WeightsError(f"cannot read {path} as JSON ({error}); the file may be truncated. {hint}") from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: expected a JSON object, got {type(data).__name__}. {hint}")
    return data


def read_safetensors(path: Path, hint: str = "") -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if not path.is_file():
        raise WeightsError(f"missing file {path}. {hint}")
    try:
        return load_file(str(path))
    except Exception as error:
        raise WeightsError(
            f"cannot read {path} as safetensors ({error}); the file is truncated or corrupt, "
            f"download it again. {hint}"
        ) from None


def read_pth(path: Path, hint: str = "") -> dict[str, torch.Tensor]:
    """A plain state dict from a ``.pth`` file, unpickled with ``weights_only=True``."""
    if not path.is_file():
        raise WeightsError(f"missing file {path}. {hint}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(
            f"cannot read {path} as a PyTorch state dict ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}); the file is truncated, corrupt or "
            f"not a weights file. {hint}"
        ) from None
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise WeightsError(f"{path}: expected a state dict (name → tensor), got {type(data).__name__}. {hint}")
    return data


def load_state(module: nn.Module, state: dict[str, torch.Tensor], path: Path, hint: str = "") -> None:
    """``load_state_dict`` that names the file, the key and the expected shape on any mismatch."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"'{k}' has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {missing[:5]}" + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(
            f"unexpected keys {unexpected[:5]}" + (f" (+{len(unexpected) - 5} more)" if len(unexpected) > 5 else "")
        )
    if wrong:
        problems.append("; ".join(wrong[:5]))
    if problems:
        raise WeightsError(f"{path} does not match the expected layout: {'; '.join(problems)}. {hint}")
    module.load_state_dict(state, strict=True)
