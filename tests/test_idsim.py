"""ID-Sim loaded from tiny official-layout files equals a step-by-step computation."""

import pytest
import torch
import torch.nn.functional as F
from checkpoints import DINO_FILES
from geomloss import SamplesLoss
from reference_impl import cos_dist, idsim_embed

import idguide

NAMES = {
    "idsim-dinov3-vitl16": "dinov3_vitl16_cls_patch",
    "idsim-dinov3-vitb16": "dinov3_vitb16_cls_patch",
    "idsim-dinov2-vitl14": "dinov2_vitl14_cls_patch",
    "idsim-dinov2-vitb14": "dinov2_vitb14_cls_patch",
}


def official_pixels(images):
    """The official input: 448x448 bicubic, ImageNet normalisation."""
    x = F.interpolate(images, size=(448, 448), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.parametrize("name", NAMES)
def test_embeddings_and_all_modes_match_reference(name, weights_root, batch):
    cache = weights_root / "id_sim_checkpoint"
    id_sim_type = NAMES[name]
    ref_cls, ref_patch = idsim_embed(cache, id_sim_type, DINO_FILES[id_sim_type], official_pixels(batch))
    a, b = slice(0, 1), slice(1, None)  # the first photo is the reference
    expected = {
        "cls": cos_dist(ref_cls[a], ref_cls[b]),
        "patch": cos_dist(ref_patch[a].mean(1), ref_patch[b].mean(1)),
    }
    expected["joint"] = expected["cls"] + expected["patch"]
    for mode in ("cls", "patch", "joint"):
        scorer = idguide.load_scorer(name, weights=cache, mode=mode)
        emb = scorer.embed(batch)
        assert torch.allclose(emb.vector, ref_cls, atol=1e-5), (mode, (emb.vector - ref_cls).abs().max())
        if mode != "cls":
            assert torch.allclose(emb.patches, ref_patch, atol=1e-5)
        distance = scorer.distance(emb[0], emb[1:])
        assert torch.allclose(distance, expected[mode], atol=1e-5), (mode, distance, expected[mode])
        assert torch.allclose(scorer.similarity(emb[0], emb[1:]), 1 - expected[mode], atol=1e-5)
        assert distance.std() > 1e-4  # the photos are told apart: the check is not vacuous


def test_sinkhorn_patch_distance_matches_geomloss(weights_root, batch):
    cache = weights_root / "id_sim_checkpoint"
    _, ref_patch = idsim_embed(cache, NAMES["idsim-dinov2-vitb14"], DINO_FILES[NAMES["idsim-dinov2-vitb14"]],
                               official_pixels(batch))
    loss = SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.05, reach=None, debias=False)
    pa = F.normalize(ref_patch[:1], dim=-1).expand(3, -1, -1).contiguous()
    pb = F.normalize(ref_patch[1:], dim=-1)
    expected = loss(pa, pb)
    scorer = idguide.load_scorer("idsim-dinov2-vitb14", weights=cache, mode="patch", patch_distance="sinkhorn")
    emb = scorer.embed(batch)
    got = scorer.distance(emb[0], emb[1:])
    assert torch.allclose(got, expected, atol=1e-5), (got, expected)
    matrix = scorer.similarity_matrix(emb, emb[1:])
    assert matrix.shape == (4, 3)
    assert torch.allclose(matrix[0], 1 - expected, atol=1e-5)


def test_alias_and_default_mode(weights_root, batch):
    cache = weights_root / "id_sim_checkpoint"
    scorer = idguide.load_scorer("idsim", weights=cache)
    assert scorer.mode == "cls" and scorer.name == "idsim-dinov3-vitl16"
    assert scorer.embed(batch).patches is None  # cls mode keeps no patch tokens


def test_variant_folder_and_explicit_backbone(weights_root, batch):
    """weights= may be the variant folder; backbone= a .pth anywhere."""
    cache = weights_root / "id_sim_checkpoint"
    from_root = idguide.load_scorer("idsim-dinov2-vitb14", weights=cache).embed(batch).vector
    from_variant = idguide.load_scorer("idsim-dinov2-vitb14", weights=cache / "dinov2_vitb14_cls_patch").embed(batch)
    explicit = idguide.load_scorer(
        "idsim-dinov2-vitb14",
        weights=cache / "dinov2_vitb14_cls_patch",
        backbone=cache / "checkpoints" / "dinov2_vitb14_pretrain.pth",
    ).embed(batch)
    assert torch.equal(from_root, from_variant.vector) and torch.equal(from_root, explicit.vector)


def test_hf_format_dinov2_backbone_equals_meta_pth(weights_root, tmp_path, batch):
    """The same DINOv2 weights in Hugging Face format give the same ID-Sim embedding."""
    from checkpoints import meta_dino_state
    from transformers import Dinov2Config, Dinov2Model

    state = meta_dino_state("dinov2", 64, 2, seed=0)
    dim = 64
    config = Dinov2Config(hidden_size=dim, num_hidden_layers=2, num_attention_heads=1, intermediate_size=4 * dim,
                          image_size=518, patch_size=14)
    hf = Dinov2Model(config)
    renamed = {
        "embeddings.cls_token": state["cls_token"],
        "embeddings.mask_token": state["mask_token"],
        "embeddings.position_embeddings": state["pos_embed"],
        "embeddings.patch_embeddings.projection.weight": state["patch_embed.proj.weight"],
        "embeddings.patch_embeddings.projection.bias": state["patch_embed.proj.bias"],
        "layernorm.weight": state["norm.weight"],
        "layernorm.bias": state["norm.bias"],
    }
    hf_keys = hf.state_dict().keys()
    for i in range(2):
        q, k, v = state[f"blocks.{i}.attn.qkv.weight"].chunk(3)
        qb, kb, vb = state[f"blocks.{i}.attn.qkv.bias"].chunk(3)
        for key in hf_keys:
            if not key.startswith(f"encoder.layer.{i}."):
                continue
            tail = key[len(f"encoder.layer.{i}."):]
            meta = {
                "norm1.weight": "norm1.weight", "norm1.bias": "norm1.bias",
                "norm2.weight": "norm2.weight", "norm2.bias": "norm2.bias",
                "attention.o_proj.weight": "attn.proj.weight", "attention.o_proj.bias": "attn.proj.bias",
                "layer_scale1.lambda1": "ls1.gamma", "layer_scale2.lambda1": "ls2.gamma",
                "mlp.fc1.weight": "mlp.fc1.weight", "mlp.fc1.bias": "mlp.fc1.bias",
                "mlp.fc2.weight": "mlp.fc2.weight", "mlp.fc2.bias": "mlp.fc2.bias",
            }.get(tail)
            if meta:
                renamed[key] = state[f"blocks.{i}.{meta}"]
        renamed.update({
            f"encoder.layer.{i}.attention.q_proj.weight": q, f"encoder.layer.{i}.attention.q_proj.bias": qb,
            f"encoder.layer.{i}.attention.k_proj.weight": k, f"encoder.layer.{i}.attention.k_proj.bias": kb,
            f"encoder.layer.{i}.attention.v_proj.weight": v, f"encoder.layer.{i}.attention.v_proj.bias": vb,
        })
    hf.load_state_dict(renamed, strict=True)
    hf.save_pretrained(tmp_path / "dinov2-hf")  # written with the Hub's (legacy) key names
    cache = weights_root / "id_sim_checkpoint"
    variant = cache / "dinov2_vitb14_cls_patch"
    meta = idguide.load_scorer("idsim-dinov2-vitb14", weights=variant).embed(batch).vector
    hf_emb = idguide.load_scorer("idsim-dinov2-vitb14", weights=variant, backbone=tmp_path / "dinov2-hf").embed(batch)
    assert torch.allclose(meta, hf_emb.vector, atol=1e-5)


def test_lora_is_merged_and_matters(weights_root, batch, tmp_path):
    """Removing the adapter changes the embedding: the LoRA is really applied."""
    import shutil

    from safetensors.torch import load_file, save_file

    cache = weights_root / "id_sim_checkpoint"
    copy = tmp_path / "cache"
    shutil.copytree(cache / "dinov2_vitb14_cls_patch", copy / "dinov2_vitb14_cls_patch")
    shutil.copytree(cache / "checkpoints", copy / "checkpoints")
    lora = load_file(str(copy / "dinov2_vitb14_cls_patch" / "adapter_model.safetensors"))
    save_file({k: torch.zeros_like(v) if "lora_B" in k else v for k, v in lora.items()},
              str(copy / "dinov2_vitb14_cls_patch" / "adapter_model.safetensors"))
    with_lora = idguide.load_scorer("idsim-dinov2-vitb14", weights=cache).embed(batch).vector
    without = idguide.load_scorer("idsim-dinov2-vitb14", weights=copy).embed(batch).vector
    assert (with_lora - without).abs().max() > 1e-3
    # No per-call LoRA modules: the backbone holds plain Linear weights only.
    scorer = idguide.load_scorer("idsim-dinov2-vitb14", weights=cache)
    assert not any("lora" in name for name, _ in scorer.named_parameters())


@pytest.mark.parametrize("name", ["idsim-dinov3-vitl16", "idsim-dinov2-vitb14", "dino-i"])
def test_gradient_checkpointing_keeps_embeddings_and_gradients(name, weights_root, batch):
    """Guidance's memory lever: the DINO blocks recomputed in the backward pass give the same
    embedding and the same gradient with respect to the pixels; scorers without it say so."""
    from conftest import scorer_for

    scorer = scorer_for(name, weights_root)

    def pass_through():
        images = batch[:2].clone().requires_grad_(True)
        vector = scorer.embed(images).vector
        (grad,) = torch.autograd.grad(vector.square().sum() + vector.sum(), images)
        return vector.detach(), grad

    block = next(m for m in scorer.modules() if hasattr(m, "checkpointing")).blocks[0]
    calls, forward = [], block.forward

    def counted(*args, **kwargs):
        calls.append(1)
        return forward(*args, **kwargs)

    block.forward = counted
    try:
        plain = pass_through()
        once = len(calls)
        assert scorer.set_gradient_checkpointing(True) is True
        checkpointed = pass_through()
    finally:
        scorer.set_gradient_checkpointing(False)
        del block.forward
    assert once == 1 and len(calls) == 1 + 2  # recomputed in the backward pass
    torch.testing.assert_close(checkpointed[0], plain[0])
    torch.testing.assert_close(checkpointed[1], plain[1])
    assert plain[1].abs().sum() > 0
    assert scorer_for("nearid", weights_root).set_gradient_checkpointing(True) is False
