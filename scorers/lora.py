"""Merging a PEFT LoRA adapter into a plain state dict at load time.

Merged once, the LoRA costs nothing per call. The adapter's module names are read from the
file: PEFT prefixes them with the path of the wrapped object (for ID-Sim most plausibly
``base_model.model.extractor.model.blocks.N.attn.qkv`` — unconfirmed), so each module is
matched to the backbone weight whose name is the longest suffix of that path.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from .errors import WeightsError
from .weights import read_json, read_safetensors

_LORA_KEY = re.compile(r"(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.[A-Za-z_]\w*)?\.weight")


def merge_lora(
    state: dict[str, torch.Tensor], config_path: Path, weights_path: Path, hint: str = ""
) -> dict[str, torch.Tensor]:
    """Return ``state`` with ``W += scale * B @ A`` applied for every adapted module."""
    config = read_json(config_path, hint)
    if config.get("peft_type", "LORA") != "LORA":
        raise WeightsError(f"{config_path}: peft_type is {config.get('peft_type')!r}, only LORA is supported")
    for unsupported in ("use_dora", "fan_in_fan_out"):
        if config.get(unsupported):
            raise WeightsError(f"{config_path}: '{unsupported}: true' adapters are not supported")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise WeightsError(f"{config_path}: per-module rank_pattern/alpha_pattern is not supported")
    try:
        alpha = float(config["lora_alpha"])
    except (KeyError, TypeError, ValueError):
        raise WeightsError(f"{config_path}: needs a numeric 'lora_alpha'. {hint}") from None

    pairs: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in read_safetensors(weights_path, hint).items():
        m = _LORA_KEY.fullmatch(key)
        if m is None:
            raise WeightsError(f"{weights_path}: unexpected key '{key}' (expected '<module>.lora_A/B.weight'). {hint}")
        pairs.setdefault(m.group("module"), {})[m.group("ab")] = value
    if not pairs:
        raise WeightsError(f"{weights_path}: holds no LoRA weights. {hint}")

    merged = dict(state)
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise WeightsError(f"{weights_path}: module '{module}' has lora_{''.join(ab)} but not both A and B")
        target = backbone_key(module, state)
        if target is None:
            raise WeightsError(
                f"{weights_path}: LoRA module '{module}' matches no backbone weight "
                f"(looked for a key ending in '<suffix>.weight'). {hint}"
            )
        a, b = ab["A"].float(), ab["B"].float()
        weight = state[target]
        rank = a.shape[0]
        if b.shape[1] != rank or (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise WeightsError(
                f"{weights_path}: '{module}' lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not fit "
                f"'{target}' of shape {tuple(weight.shape)}. {hint}"
            )
        scale = alpha / (math.sqrt(rank) if config.get("use_rslora") else rank)
        merged[target] = (weight.float() + scale * (b @ a)).to(weight.dtype)
    return merged


def backbone_key(module: str, state: dict[str, torch.Tensor]) -> str | None:
    parts = module.split(".")
    for start in range(len(parts)):
        key = ".".join(parts[start:]) + ".weight"
        if key in state:
            return key
    return None
