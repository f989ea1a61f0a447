"""Tiny random checkpoints written in the exact official on-disk layouts.

Real architectures, reduced width and depth; file names, key names, dtypes and folder
structure are those of the published files (see shared/reference/scorers.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

DINO_FILES = {
    "dinov3_vitl16_cls_patch": "dinov3_vitl16_pretrain_lvd1689m-8aa4cbdd.pth",
    "dinov3_vitb16_cls_patch": "dinov3_vitb16_pretrain_lvd1689m-73cec8be.pth",
    "dinov2_vitl14_cls_patch": "dinov2_vitl14_pretrain.pth",
    "dinov2_vitb14_cls_patch": "dinov2_vitb14_pretrain.pth",
}
# Tiny sizes per variant: (width, depth). Heads are 64-d as in every official DINO ViT.
TINY = {
    "dinov3_vitl16_cls_patch": (128, 3),
    "dinov3_vitb16_cls_patch": (64, 2),
    "dinov2_vitl14_cls_patch": (128, 3),
    "dinov2_vitb14_cls_patch": (64, 2),
}


def _ln(g, dim):
    return {"weight": 1 + 0.2 * torch.randn(dim, generator=g), "bias": 0.1 * torch.randn(dim, generator=g)}


def meta_dino_state(family: str, dim: int, depth: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DINOv2 (patch 14, 37x37 learned positions) or DINOv3 (patch 16, RoPE, 4 storage
    tokens, masked k-bias) state dict with Meta's key names."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape, s=0.02: s * torch.randn(*shape, generator=g)  # noqa: E731
    patch = 16 if family == "dinov3" else 14
    state = {"cls_token": rnd(1, 1, dim, s=1.0), "mask_token": torch.zeros(1, dim)}
    if family == "dinov3":
        head_dim = 64
        ideal = 100.0 ** (2 * torch.arange(head_dim // 4) / (head_dim // 2))
        state["storage_tokens"] = rnd(1, 4, dim, s=1.0)
        state["rope_embed.periods"] = ideal.to(torch.bfloat16).float()  # stored after bf16 rounding
    else:
        state["pos_embed"] = rnd(1, 1 + 37 * 37, dim, s=0.5)
    state["patch_embed.proj.weight"] = rnd(dim, 3, patch, patch, s=0.05)
    state["patch_embed.proj.bias"] = rnd(dim, s=0.1)
    for i in range(depth):
        p = f"blocks.{i}."
        for name in ("norm1", "norm2"):
            for k, v in _ln(g, dim).items():
                state[p + f"{name}.{k}"] = v
        state[p + "attn.qkv.weight"] = rnd(3 * dim, dim, s=0.1)
        state[p + "attn.qkv.bias"] = rnd(3 * dim, s=0.1)
        if family == "dinov3":
            mask = torch.ones(3 * dim)
            mask[dim : 2 * dim] = 0
            state[p + "attn.qkv.bias_mask"] = mask
        state[p + "attn.proj.weight"] = rnd(dim, dim, s=0.1)
        state[p + "attn.proj.bias"] = rnd(dim, s=0.1)
        state[p + "ls1.gamma"] = 0.5 + 0.1 * torch.randn(dim, generator=g)
        state[p + "mlp.fc1.weight"] = rnd(4 * dim, dim, s=0.1)
        state[p + "mlp.fc1.bias"] = rnd(4 * dim, s=0.1)
        state[p + "mlp.fc2.weight"] = rnd(dim, 4 * dim, s=0.05)
        state[p + "mlp.fc2.bias"] = rnd(dim, s=0.1)
        state[p + "ls2.gamma"] = 0.5 + 0.1 * torch.randn(dim, generator=g)
    for k, v in _ln(g, dim).items():
        state[f"norm.{k}"] = v
    return state


def head_state(dim: int, hidden: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """An ID-Sim MLP head (mlp_cls.pth / mlp_patch.pth keys); fc2 non-zero so it matters."""
    g = torch.Generator().manual_seed(seed)
    return {
        "ln.weight": 1 + 0.1 * torch.randn(dim, generator=g),
        "ln.bias": 0.1 * torch.randn(dim, generator=g),
        "fc1.weight": 0.2 * torch.randn(hidden, dim, generator=g),
        "fc1.bias": 0.1 * torch.randn(hidden, generator=g),
        "fc2.weight": 0.2 * torch.randn(dim, hidden, generator=g),
        "fc2.bias": 0.1 * torch.randn(dim, generator=g),
        "beta_logit": torch.tensor(-1.0),
    }


def lora_state(dim: int, depth: int, rank: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """PEFT LoRA on every block's fused qkv, keys prefixed by the wrapped model's path."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for i in range(depth):
        p = f"base_model.model.extractor.model.blocks.{i}.attn.qkv."
        state[p + "lora_A.weight"] = 0.1 * torch.randn(rank, dim, generator=g)
        state[p + "lora_B.weight"] = 0.1 * torch.randn(3 * dim, rank, generator=g)
    return state


ADAPTER_CONFIG = {
    "peft_type": "LORA",
    "r": 4,
    "lora_alpha": 8,
    "target_modules": ["qkv"],
    "lora_dropout": 0.0,
    "bias": "none",
    "fan_in_fan_out": False,
    "use_rslora": False,
    "use_dora": False,
    "inference_mode": True,
    "base_model_name_or_path": None,
    "task_type": None,
}


def write_idsim(root: Path, id_sim_type: str, seed: int = 0) -> Path:
    """The official cache layout: ``root/checkpoints/<backbone>.pth`` + ``root/<type>/`` (4 files)."""
    dim, depth = TINY[id_sim_type]
    family = id_sim_type.split("_")[0]
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    torch.save(meta_dino_state(family, dim, depth, seed), root / "checkpoints" / DINO_FILES[id_sim_type])
    heads = root / id_sim_type
    heads.mkdir(parents=True, exist_ok=True)
    (heads / "adapter_config.json").write_text(json.dumps(ADAPTER_CONFIG, indent=2))
    save_file(lora_state(dim, depth, ADAPTER_CONFIG["r"], seed + 1), str(heads / "adapter_model.safetensors"))
    torch.save(head_state(dim, seed=seed + 2), heads / "mlp_cls.pth")
    torch.save(head_state(dim, seed=seed + 3), heads / "mlp_patch.pth")
    return root


def tiny_siglip_vision_config(image_size: int = 384) -> dict:
    return dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )


def _randomize(model, seed: int):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def write_nearid(folder: Path, seed: int = 0) -> Path:
    """NearID's HF folder: config.json (model_type nearid) + fp16 model.safetensors with the
    SigLIP tower under ``backbone.vision_model.``, as NearIDModel.save_pretrained writes it."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    vision = tiny_siglip_vision_config()
    torch.manual_seed(seed)
    model = _randomize(SiglipVisionModel(SiglipVisionConfig(**vision)), seed)
    state = {}
    for key, value in model.state_dict().items():
        key = key if key.startswith("vision_model.") else "vision_model." + key
        state["backbone." + key] = value.detach().to(torch.float16).contiguous()
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    config = {
        "architectures": ["NearIDModel"],
        "auto_map": {"AutoConfig": "configuration_nearid.NearIDConfig", "AutoModel": "modeling_nearid.NearIDModel"},
        "model_type": "nearid",
        "embed_dim": vision["hidden_size"],
        "normalize_embeddings": True,
        "torch_dtype": "float16",
        "vision_config": {**vision, "model_type": "siglip_vision_model"},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def write_siglip2(folder: Path, seed: int = 0) -> Path:
    """A whole SigLIP model folder (text + vision towers), as google/siglip2-* publish it."""
    from transformers import SiglipConfig, SiglipModel

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    torch.manual_seed(seed)
    model = SiglipModel(SiglipConfig(text_config=text, vision_config=tiny_siglip_vision_config()))
    _randomize(model, seed).save_pretrained(folder)
    return folder


def write_clip(folder: Path, seed: int = 0) -> Path:
    """A whole CLIP model folder, as openai/clip-vit-large-patch14 publishes it."""
    from transformers import CLIPConfig, CLIPModel

    text = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2, vocab_size=64)
    vision = dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        image_size=224, patch_size=14, hidden_act="quick_gelu",
    )
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32))
    _randomize(model, seed).save_pretrained(folder)
    return folder


def write_dinov2_hf(folder: Path, seed: int = 0) -> Path:
    """A Dinov2Model folder, as facebook/dinov2-large publishes it (518 px, patch 14)."""
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    config = Dinov2Config(
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
        image_size=518, patch_size=14, layerscale_value=0.5,
    )
    _randomize(Dinov2Model(config), seed).save_pretrained(folder)
    return folder
