"""Real diffusers pipelines of each supported family from tiny random components.

As diffusers' own tests do (``get_dummy_components``), but with tokenizers built here (no
hub): a byte-level CLIP BPE vocabulary written to files, and a Unigram T5 vocabulary.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import torch

PROMPT = "a photo of a small cat on a red sofa"


def _bytes_to_unicode() -> list[str]:
    """GPT-2 / CLIP byte-level alphabet: one printable character per byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


@lru_cache(maxsize=None)
def tokenizer_dir(root: str) -> Path:
    folder = Path(root)
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = {c: i for i, c in enumerate(chars)}
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = ["#version: 0.2", "c a", "ca t</w>", "o n</w>"]
    for merge in merges[1:]:
        vocab["".join(merge.split())] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")
    return folder


def clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77)


def t5_tokenizer(folder: Path):
    """A Unigram T5 tokenizer over the words of a few prompts (pad=0, eos=1, unk=2)."""
    from transformers import T5Tokenizer

    words = sorted({w for text in (PROMPT, "a dog in the park", "an old teapot on a wooden table") for w in text.split()})
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -1.0) for w in words] + [(c, -5.0) for c in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=77)


def clip_text(hidden=32, projection=None, seed=0):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    config = CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=hidden, intermediate_size=37, layer_norm_eps=1e-5,
        num_attention_heads=4, num_hidden_layers=2, pad_token_id=1, vocab_size=1000, hidden_act="gelu",
        projection_dim=projection or hidden,
    )
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def t5_text(seed=0):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    return T5EncoderModel(T5Config(vocab_size=100, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4))


def vae(latent_channels=4, flow=False, seed=0):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    extra = dict(shift_factor=0.0609, scaling_factor=1.5035, use_quant_conv=False, use_post_quant_conv=False) if flow else {}
    return AutoencoderKL(
        block_out_channels=(8, 16), in_channels=3, out_channels=3, latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1, norm_num_groups=4, sample_size=32, **extra,
    )


def ready(pipe):
    """Eval mode (freshly built modules train, and T5 has dropout) and no progress bars."""
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def sd15(tmp: Path, scheduler=None):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=4, attention_head_dim=4,
    )
    scheduler = scheduler or DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                           clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    folder = tokenizer_dir(str(tmp / "tokenizers"))
    pipe = StableDiffusionPipeline(
        vae=vae(), text_encoder=clip_text(), tokenizer=clip_tokenizer(folder), unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return ready(pipe)


def sdxl(tmp: Path):
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64, norm_num_groups=4,
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading")
    folder = tokenizer_dir(str(tmp / "tokenizers"))
    pipe = StableDiffusionXLPipeline(
        vae=vae(), text_encoder=clip_text(), text_encoder_2=clip_text(projection=32, seed=1),
        tokenizer=clip_tokenizer(folder), tokenizer_2=clip_tokenizer(folder), unet=unet, scheduler=scheduler,
    )
    return ready(pipe)


def sd3(tmp: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(
        sample_size=16, patch_size=1, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=4,
        caption_projection_dim=32, joint_attention_dim=32, pooled_projection_dim=64, out_channels=4,
    )
    folder = tokenizer_dir(str(tmp / "tokenizers"))
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(flow=True),
        text_encoder=clip_text(projection=32), text_encoder_2=clip_text(projection=32, seed=1),
        text_encoder_3=t5_text(), tokenizer=clip_tokenizer(folder), tokenizer_2=clip_tokenizer(folder),
        tokenizer_3=t5_tokenizer(folder),
    )
    return ready(pipe)


def flux(tmp: Path):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
    )
    folder = tokenizer_dir(str(tmp / "tokenizers"))
    pipe = FluxPipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae(latent_channels=4, flow=True),
        text_encoder=clip_text(), text_encoder_2=t5_text(), tokenizer=clip_tokenizer(folder),
        tokenizer_2=t5_tokenizer(folder),
    )
    return ready(pipe)


FAMILIES = {"sd15": sd15, "sdxl": sdxl, "sd3": sd3, "flux": flux}
# Per family: call arguments for a 64x64 image in a few steps.
CALL = {
    "sd15": dict(num_inference_steps=8, guidance_scale=5.0, height=64, width=64),
    "sdxl": dict(num_inference_steps=8, guidance_scale=5.0, height=64, width=64),
    "sd3": dict(num_inference_steps=8, guidance_scale=5.0, height=64, width=64, max_sequence_length=16),
    "flux": dict(num_inference_steps=8, guidance_scale=3.5, height=64, width=64, max_sequence_length=16),
}
