"""One decoder factory for every steering method, on every pipeline family of the test pipelines:
the TAESD-family tiny decoder from each of its on-disk layouts, particles, noise search and path
search on SD1.5, SDXL, SD3 and Flux."""

import json

import pytest
import torch
from diffusers import AutoencoderTiny
from pipelines import CALL, PROMPT
from safetensors.torch import save_file

import idguide
from idguide.guidance import decode as decode_module
from idguide.guidance.diffusers.decoder import PipelineDecoder, load_tiny, tiny_family
from idguide.scorers.errors import WeightsError


def random_tiny(latent_channels: int = 4, seed: int = 0) -> AutoencoderTiny:
    """TAESD's published architecture (64 channels, blocks 1/3/3/3 and 3/3/3/1) with random weights."""
    torch.manual_seed(seed)
    return AutoencoderTiny(latent_channels=latent_channels).eval()


def write_diffusers_layout(tiny: AutoencoderTiny, folder):
    """madebyollin/taesd as diffusers loads it: config.json + diffusion_pytorch_model.safetensors."""
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderTiny", **tiny.config}))
    save_file({k: v.contiguous() for k, v in tiny.state_dict().items()}, folder / "diffusion_pytorch_model.safetensors")
    return folder


def taesd_decoder_state(tiny: AutoencoderTiny) -> dict:
    """TAESD's own decoder file (taesd_decoder.pth; ComfyUI's models/vae_approx): a Sequential whose
    item 0 is the clamp, so diffusers' decoder.layers.i is item i + 1."""
    state = {}
    for key, value in tiny.decoder.state_dict().items():
        index, rest = key.removeprefix("layers.").split(".", 1)
        state[f"{int(index) + 1}.{rest}"] = value.clone()
    return state


def test_tiny_decoder_reads_every_layout_alike(tmp_path):
    tiny = random_tiny(latent_channels=16, seed=3)
    folder = write_diffusers_layout(tiny, tmp_path / "taesd3")
    save_file(taesd_decoder_state(tiny), tmp_path / "taesd3_decoder.safetensors")
    torch.save(taesd_decoder_state(tiny), tmp_path / "taesd3_decoder.pth")
    latents = torch.randn(1, 16, 8, 8)
    expected = decode_module.TinyDecoder(tiny)(latents)
    assert expected.shape == (1, 3, 64, 64) and 0 <= expected.min() and expected.max() <= 1
    for source in (folder, tmp_path / "taesd3_decoder.safetensors", tmp_path / "taesd3_decoder.pth"):
        assert torch.allclose(decode_module.TinyDecoder(load_tiny(source))(latents), expected, atol=1e-6), source


def test_tiny_decoder_is_found_by_family_and_refused_clearly(tmp_path, monkeypatch):
    """'tiny' is the pipeline family's TAESD: IDGuide's folders first, else a one-line error naming
    the files and the repo (offline here); a file that is not a TAESD decoder is named."""
    monkeypatch.setenv("IDGUIDE_HOME", str(tmp_path / "home"))
    with pytest.raises(WeightsError, match=r"taesdxl.*config\.json, diffusion_pytorch_model\.safetensors.*"
                                           r"huggingface\.co/madebyollin/taesdxl"):
        load_tiny("taesdxl")
    write_diffusers_layout(random_tiny(seed=1), tmp_path / "home" / "taesdxl")
    assert isinstance(load_tiny("taesdxl"), AutoencoderTiny)
    save_file({"weight": torch.zeros(3)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="other.safetensors is not a TAESD decoder"):
        load_tiny(tmp_path / "other.safetensors")
    with pytest.raises(TypeError, match="decoder must be"):
        PipelineDecoder(decoder=3)
    with pytest.warns(DeprecationWarning, match="decoder=None is deprecated"):
        assert PipelineDecoder(decoder=None).choice == "vae"  # 0.1's spelling of the VAE, one release more
    assert PipelineDecoder("tiny").config_value == "tiny" and PipelineDecoder(random_tiny()).config_value is None


def test_each_family_gets_its_own_taesd(family):
    name, pipe = family
    assert tiny_family(pipe) == {"sd15": "taesd", "sdxl": "taesdxl", "sd3": "taesd3", "flux": "taef1"}[name]


def test_particles_and_searches_run_on_every_family(family, scorer, reference, monkeypatch):
    """steer_particles (VAE and tiny decoder), noise search and path search on each family; the
    particle decoder is built once per run, not at every resampling (Flux's packed latents included)."""
    name, pipe = family
    built = []
    original = decode_module.VaeDecoder.__init__

    def counting_init(self, *args, **kwargs):
        built.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(decode_module.VaeDecoder, "__init__", counting_init)
    kwargs = dict(CALL[name], prompt=PROMPT)
    steered = idguide.steer_particles(pipe, scorer, reference, particles=3, every=2, decoder="vae", decode_size=64,
                                      **kwargs)
    assert len(built) == 1 and len(steered.all_scores) == 3 and steered.images.shape[-2:] == (64, 64)
    tiny = random_tiny(latent_channels=pipe.vae.config.latent_channels)
    with_tiny = idguide.steer_particles(pipe, scorer, reference, particles=2, every=2, decoder=tiny, **kwargs)
    assert len(built) == 1 and len(with_tiny.all_scores) == 2 and torch.isfinite(with_tiny.images).all()

    searched = idguide.noise_search(pipe, scorer, reference, latent_shape(pipe, name, kwargs), budget=3, neighbours=2, **kwargs)
    assert len(searched.samples) == 3 and searched.scores[0] == max(searched.scores)
    paths = idguide.path_search(pipe, scorer, reference, budget=3, starts=2, parents=1, strength=0.5, **kwargs)
    assert len(paths.samples) == 2 + 2  # two starts, then two half-cost branches of the best
    assert all(torch.isfinite(s.image).all() for s in paths.samples)


def latent_shape(pipe, name: str, kwargs: dict) -> tuple:
    """One sample's initial latents as the pipeline draws them (Flux's are packed)."""
    denoiser = pipe.transformer if name in ("sd3", "flux") else pipe.unet
    channels = denoiser.config.in_channels // (4 if name == "flux" else 1)
    out = pipe.prepare_latents(1, channels, kwargs["height"], kwargs["width"], torch.float32, "cpu",
                               torch.Generator().manual_seed(0))
    return tuple((out[0] if name == "flux" else out).shape[1:])


def test_guidance_with_the_tiny_decoder_on_every_family(family, scorer, reference):
    """The callback decodes through TAESD (Flux unpacked first); the sample changes and stays finite."""
    name, pipe = family
    tiny = random_tiny(latent_channels=pipe.vae.config.latent_channels, seed=2)
    calls = []
    decode = tiny.decode

    def counted(x, *a, **k):
        calls.append(x.shape)
        return decode(x, *a, **k)

    tiny.decode = counted
    cb = idguide.IdentityGuidanceCallback(scorer, reference, decoder=tiny, recurrence=0, augment=None)
    kwargs = dict(CALL[name])
    plain = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **kwargs).images
    guided = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", callback_on_step_end=cb,
                  callback_on_step_end_tensor_inputs=cb.tensor_inputs, **kwargs).images
    assert len(calls) == kwargs["num_inference_steps"] - 1  # every step but the first
    assert all(len(s) == 4 and s[1] == pipe.vae.config.latent_channels for s in calls)  # unpacked for Flux
    assert torch.isfinite(guided).all() and not torch.equal(guided, plain)
