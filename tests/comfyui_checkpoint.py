"""Write a tiny SD1.5 checkpoint that ComfyUI's CheckpointLoaderSimple recognises.

Run with a Python that has ComfyUI's requirements: ``python comfyui_checkpoint.py COMFYUI OUT``.
Built from ComfyUI's own classes (so the key layout is exactly what its loaders expect): the
SD1.5 UNet at reduced depth (320 channels, context 768 — what SD1.5 detection requires — but
two levels of one block), and the real-size SD VAE and CLIP-L text encoder, random weights.
"""

import sys

import torch
from safetensors.torch import save_file


def main(comfyui: str, out: str) -> None:
    sys.path.insert(0, comfyui)
    sys.argv = sys.argv[:1] + ["--cpu"]  # comfy.cli_args reads the command line on import
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.ldm.models.autoencoder as autoencoder
    import comfy.ops
    import comfy.sd1_clip
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel

    torch.manual_seed(0)
    ops = comfy.ops.manual_cast
    unet = UNetModel(
        image_size=32, in_channels=4, out_channels=4, model_channels=320, num_res_blocks=[1, 1],
        channel_mult=[1, 2], transformer_depth=[1, 1], transformer_depth_middle=1,
        transformer_depth_output=[1, 1, 1, 1], context_dim=768, num_heads=8, use_spatial_transformer=True,
        use_linear_in_transformer=False, legacy=False, adm_in_channels=None, operations=ops,
    )
    ddconfig = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    vae = autoencoder.AutoencoderKL(ddconfig=ddconfig, embed_dim=4)
    clip = comfy.sd1_clip.SDClipModel(device="cpu", dtype=torch.float32)
    state = {}
    with torch.no_grad():
        for prefix, module in (("model.diffusion_model.", unet), ("first_stage_model.", vae),
                               ("cond_stage_model.", clip)):
            for key, value in module.state_dict().items():
                if value.is_floating_point() and value.numel() > 1 and not key.endswith("position_ids"):
                    value = torch.randn(value.shape) * (0.02 if value.dim() > 1 else 0.01)
                    if key.endswith(("norm.weight", "norm1.weight", "norm2.weight", "norm3.weight", "norm_out.weight",
                                     "layer_norm1.weight", "layer_norm2.weight", "final_layer_norm.weight")):
                        value = value + 1.0
                state[prefix + key] = value.to(torch.float16).contiguous()
    save_file(state, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
