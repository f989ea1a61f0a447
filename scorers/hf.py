"""Building a transformers vision tower from a Hugging Face folder, without remote code.

Published folders hold whole models (CLIP and SigLIP with their text towers, NearID with its
tower under ``backbone.``); only the vision weights are kept, matched to the installed
transformers' names (which may or may not carry the ``vision_model.`` prefix).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .weights import load_state, read_json, read_safetensors

TOWER = "vision_model."
LEGACY_BUFFERS = ("position_ids",)  # written by old transformers versions, recomputed today


def vision_config(folder: Path, hint: str) -> dict:
    """The vision part of ``config.json`` (a whole-model config nests it under ``vision_config``)."""
    config = read_json(folder / "config.json", hint)
    return dict(config.get("vision_config", config)), config


def load_tower(
    model: nn.Module, folder: Path, hint: str, keep: tuple[str, ...] = (TOWER,), strip: str = ""
) -> nn.Module:
    path = folder / "model.safetensors"
    state = read_safetensors(path, hint)
    if strip:
        state = {k.removeprefix(strip): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if k.startswith(keep) and not k.endswith(LEGACY_BUFFERS)}
    expected = model.state_dict()
    if not any(k.startswith(TOWER) for k in expected):
        state = {k.removeprefix(TOWER): v for k, v in state.items()}
    load_state(model, {k: v.to(expected[k].dtype) if k in expected else v for k, v in state.items()}, path, hint)
    return model


def config_from(config_cls, values: dict):
    values = {k: v for k, v in values.items() if k not in ("model_type", "transformers_version", "architectures")}
    config = config_cls.from_dict(values)
    config._attn_implementation = "sdpa"
    return config


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)
