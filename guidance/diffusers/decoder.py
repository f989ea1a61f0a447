"""The differentiable decoder of a diffusers pipeline, for every steering method (one factory).

``decoder`` says what decodes a pipeline's latents to [0, 1] images:

- ``"auto"`` (the default): ``"tiny"`` when its files are at hand or can be downloaded, else
  ``"vae"`` with a warning saying so;
- ``"tiny"``: the TAESD-family tiny autoencoder of the pipeline's family (taesd, taesdxl,
  taesd3, taef1 from ``madebyollin/…`` on the Hugging Face hub, or the local copy IDGuide finds
  in its search folders); its backward pass costs about 1/18 of SD's VAE and it keeps far fewer
  activations, which is what makes guidance affordable at real sizes;
- ``"vae"``: the pipeline's own VAE (exact, expensive);
- a path: a diffusers ``AutoencoderTiny`` folder (``config.json`` +
  ``diffusion_pytorch_model.safetensors``) or a TAESD decoder file as ComfyUI's previews use
  (``taesd_decoder.safetensors`` / ``.pth`` in ``models/vae_approx``); a Hugging Face repo id;
- an ``AutoencoderTiny`` (or any module with ``.decode`` returning ``.sample``), or any
  callable ``latents → images`` (used as it is).

Flux's packed latents are unpacked on the grid the transformer was called with. A decoder is
built once per pipeline, VAE and grid, and reused by every step and resampling.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Union

import torch
from diffusers import (
    AutoencoderTiny,
    FluxPipeline,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
)

from ...scorers import checks
from ...scorers.errors import WeightsError
from ...scorers.weights import HubFiles, looks_like_path, read_json, read_pth, read_safetensors, resolve_folder
from ...scorers.weights import load_state
from ..decode import TinyDecoder, VaeDecoder
from ..step import Decode

DecoderChoice = Union[str, os.PathLike, torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]
CHOICES = ("auto", "tiny", "vae")
DEFAULT_DECODER = "auto"
# The TAESD of each family, most specific class first (SDXL's pipeline is not a subclass of SD's, but be safe).
TINY = ((FluxPipeline, "taef1"), (StableDiffusion3Pipeline, "taesd3"), (StableDiffusionXLPipeline, "taesdxl"),
        (StableDiffusionPipeline, "taesd"))
TINY_FILES = ("config.json", "diffusion_pytorch_model.safetensors")


def tiny_family(pipeline) -> str:
    """The TAESD name for ``pipeline``'s family; ``TypeError`` for a pipeline without one."""
    for cls, name in TINY:
        if isinstance(pipeline, cls):
            return name
    names = ", ".join(cls.__name__ for cls, _ in TINY)
    raise TypeError(f"decoder='tiny' knows the TAESD of {names}; for {type(pipeline).__name__} pass decoder= a "
                    "path to its AutoencoderTiny, the module itself, or 'vae'")


def load_tiny(source: str | os.PathLike, what: str = "tiny decoder") -> torch.nn.Module:
    """An ``AutoencoderTiny`` from a TAESD name (``taesd``, ``taesdxl``, ``taesd3``, ``taef1``: IDGuide's
    search folders, then ``madebyollin/<name>`` on the hub), a diffusers folder, a TAESD decoder file or
    a hub repo id."""
    families = [name for _, name in TINY]
    if str(source) in families:
        hub = HubFiles(f"madebyollin/{source}", TINY_FILES, str(source))
        folder = resolve_folder(None, hub, what)
    elif looks_like_path(source) and Path(source).expanduser().is_file():
        return _from_taesd_file(Path(source).expanduser())
    else:
        name = str(source).rstrip("/").split("/")[-1]
        hub = HubFiles(str(source) if not looks_like_path(source) else f"madebyollin/{name}", TINY_FILES, name)
        folder = resolve_folder(source, hub, what)
    hint = f"{what}: expected {', '.join(TINY_FILES)} of an AutoencoderTiny (from {hub.url})"
    config = {k: v for k, v in read_json(folder / "config.json", hint).items() if not k.startswith("_")}
    try:
        tiny = AutoencoderTiny.from_config(config)
    except Exception as error:
        raise WeightsError(f"{folder / 'config.json'} is not an AutoencoderTiny config ({error}). {hint}") from None
    path = folder / "diffusion_pytorch_model.safetensors"
    load_state(tiny, read_safetensors(path, hint), path, hint)
    return tiny.eval().requires_grad_(False)


def _from_taesd_file(path: Path) -> torch.nn.Module:
    """TAESD's own decoder layout (madebyollin/taesd ``taesd_decoder.pth``; ComfyUI's ``vae_approx``):
    a ``Sequential`` whose item 0 is the clamp, so item i is diffusers' ``decoder.layers.{i-1}``."""
    hint = "expected a TAESD decoder (taesd_decoder / taesdxl_decoder / taesd3_decoder / taef1_decoder)"
    state = read_safetensors(path, hint) if path.suffix == ".safetensors" else read_pth(path, hint)
    if "1.weight" not in state:
        raise WeightsError(f"{path} is not a TAESD decoder: it has no '1.weight' (its first convolution); {hint}")
    tiny = AutoencoderTiny(latent_channels=state["1.weight"].shape[1])
    layers = {}
    for key, value in state.items():
        index, _, rest = key.partition(".")
        if not index.isdigit() or int(index) == 0:
            raise WeightsError(f"{path}: unexpected key '{key}' for a TAESD decoder; {hint}")
        layers[f"layers.{int(index) - 1}.{rest}"] = value
    load_state(tiny.decoder, layers, path, hint)
    return tiny.eval().requires_grad_(False)


class PipelineDecoder:
    """``decoder(pipeline)`` → the differentiable decoder of ``pipeline``'s latents (module docstring).

    ``observe(kwargs)`` is given the denoiser's keyword arguments (``StepGuard``'s ``on_forward``):
    Flux's packed latents are unpacked on the grid of its ``img_ids``.
    """

    def __init__(self, decoder: DecoderChoice | None = "auto", decode_size: int | None = 512):
        checks.decode_size(decode_size)
        if decoder is None:  # what 0.1 called the pipeline's VAE
            warnings.warn("decoder=None is deprecated: pass decoder='vae' (the pipeline's VAE, None's meaning), "
                          "'tiny' or 'auto'", DeprecationWarning, stacklevel=3)
            decoder = "vae"
        if not (isinstance(decoder, (str, os.PathLike, torch.nn.Module)) or callable(decoder)):
            raise TypeError(f"decoder must be 'auto', 'tiny', 'vae', a path, an AutoencoderTiny or a callable "
                            f"latents → images, got {type(decoder).__name__}")
        if isinstance(decoder, (str, os.PathLike)) and str(decoder) not in CHOICES and looks_like_path(decoder) \
                and not os.path.exists(os.path.expanduser(decoder)):
            raise ValueError(f"decoder: no file or folder {str(decoder)!r} (and not one of {', '.join(CHOICES)} "
                             "or a Hugging Face repo id owner/name)")
        self.choice, self.decode_size = decoder, decode_size
        self.grid: tuple[int, int] | None = None
        self._tiny: dict[str, torch.nn.Module] = {}  # loaded once per family or path
        self._built: tuple[tuple, Decode] | None = None

    @property
    def config_value(self) -> str | None:
        """What a callback's config records: the choice or path; ``None`` for an object (a config
        cannot hold it: pass it to ``from_config`` again)."""
        return str(self.choice) if isinstance(self.choice, (str, os.PathLike)) else None

    def observe(self, kwargs) -> None:
        if kwargs.get("img_ids") is not None:  # Flux: the packed latents' grid
            ids = kwargs["img_ids"]
            self.grid = (int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1)

    def __call__(self, pipeline) -> Decode:
        if callable(self.choice) and not isinstance(self.choice, torch.nn.Module):
            return self.choice
        vae = getattr(pipeline, "vae", None)
        key = (id(pipeline), id(vae), self.grid)
        if self._built is None or self._built[0] != key:  # one per pipeline (an fp32 or tiny copy may be made)
            self._built = (key, self._build(pipeline))
        return self._built[1]

    def _build(self, pipeline) -> Decode:
        unpack = self._unpack(pipeline)
        scale = getattr(pipeline, "vae_scale_factor", None) or 8
        tiny = None if self.choice == "vae" else self._tiny_module(pipeline)
        if tiny is None:
            if getattr(pipeline, "vae", None) is None:
                raise TypeError(f"decoder='vae': {type(pipeline).__name__} has no .vae; pass a decoder")
            return VaeDecoder(pipeline.vae, self.decode_size, unpack, scale)
        vae = getattr(pipeline, "vae", None)
        if isinstance(vae, torch.nn.Module):
            weight = next(vae.parameters())
            # A TAESD we loaded follows the VAE's device and precision (TAESD is fine in float16).
            dtype = weight.dtype if not isinstance(self.choice, torch.nn.Module) else next(tiny.parameters()).dtype
            tiny.to(weight.device, dtype)
        config = getattr(tiny, "config", None)  # TAESD upsamples ×2 between its levels: ×8 for the published ones
        blocks = getattr(config, "num_decoder_blocks", (3, 3, 3, 1))
        factor = getattr(config, "upsampling_scaling_factor", 2) ** (len(blocks) - 1)
        return TinyDecoder(tiny, self.decode_size, unpack, factor)

    def _tiny_module(self, pipeline) -> torch.nn.Module | None:
        """The tiny autoencoder to decode with; ``None`` when ``"auto"`` falls back to the VAE."""
        if isinstance(self.choice, torch.nn.Module):
            return self.choice
        family = self.choice in ("auto", "tiny")
        if self.choice == "auto" and not isinstance(pipeline, tuple(cls for cls, _ in TINY)):
            return None  # no TAESD for this pipeline: its own VAE
        source = tiny_family(pipeline) if family else self.choice
        if source not in self._tiny:
            what = (f"decoder='{self.choice}' ({source} for {type(pipeline).__name__}; decoder='vae' uses the "
                    "pipeline's own VAE)" if family else "tiny decoder")
            try:
                self._tiny[source] = load_tiny(source, what)
            except WeightsError as error:
                if self.choice != "auto":
                    raise
                warnings.warn(f"IDGuide decodes with the pipeline's VAE, which costs several times more compute "
                              f"and memory than {source}: {error}", RuntimeWarning, stacklevel=2)
                self._tiny[source] = None
        return self._tiny[source]

    def _unpack(self, pipeline) -> Callable[[torch.Tensor], torch.Tensor] | None:
        if not isinstance(pipeline, FluxPipeline):
            return None
        if self.grid is None:
            raise RuntimeError("Flux latent grid unknown: the transformer was not called with img_ids")
        rows, cols = self.grid

        def unpack(x: torch.Tensor) -> torch.Tensor:
            b, _, c = x.shape
            x = x.view(b, rows, cols, c // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
            return x.reshape(b, c // 4, rows * 2, cols * 2)

        return unpack
