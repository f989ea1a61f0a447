"""The proving ground's generators as diffusers ``DiffusionPipeline`` s.

``IdentityWorldPipeline`` (pixel world): the prompt is a category ("striped disc"); latents are
pixels in [-1, 1]; ``decode`` is the map to [0, 1] (free, differentiable). ``LatentWorldPipeline``
(latent world): the prompt names the category and the scene ("striped disc on a textured
background, on the left"); latents are an autoencoder's, decoded by its ``vae`` as Stable
Diffusion's are, with a tiny distilled ``tiny_vae`` beside it. In both, which identity of the
category comes out is left to chance — what steering must choose. Sampling is the standard loop
(classifier-free guidance, any diffusers scheduler, ``callback_on_step_end``, img2img), so
IDGuide's public paths (``IdentityGuidanceCallback``, ``best_of_n``, ``steer_particles``,
``noise_search``, ``path_search``) run on them unchanged.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DiffusionPipeline, ImagePipelineOutput, UNet2DModel
from diffusers.models.unets.unet_2d import UNet2DOutput
from diffusers.utils.torch_utils import randn_tensor

from idguide.guidance.diffusers.schedulers import is_flow_scheduler

from .world import CATEGORIES, NUM_CATEGORIES, SIZE

Category = Union[int, str]

# The schedule the generator was trained with; every sampler is built from this config. Its last
# step has ᾱ ≈ 1e-8, so samplers start at the "leading" timesteps (961 of 999 for 25 steps, as
# Stable Diffusion's do): started at 999, DPM-Solver++, UniPC and Euler divide by √ᾱ ≈ 1e-4 and fail.
TRAIN_SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}
SAMPLING_SCHEDULE = {**TRAIN_SCHEDULE, "timestep_spacing": "leading", "steps_offset": 1}


def category_index(category: Category) -> int:
    """A category by index, by name ("striped disc"), or as a prompt ("a striped disc")."""
    if isinstance(category, (int, np.integer)) and not isinstance(category, bool):
        if 0 <= category < NUM_CATEGORIES:
            return int(category)
    elif isinstance(category, str):
        text = category.strip().lower()
        for prefix in ("a ", "an "):
            text = text[len(prefix):] if text.startswith(prefix) else text
        if text in CATEGORIES:
            return CATEGORIES.index(text)
    raise ValueError(f"unknown category {category!r}; use an index in [0, {NUM_CATEGORIES}) or one of: "
                     + ", ".join(CATEGORIES))


def flow_sigmas(steps: int) -> list[float]:
    """Flow-matching levels σ = σ_t/(α_t+σ_t) of the training timesteps a DDIM sampler visits in
    ``steps`` steps: the same noise levels (the schedule's σ = 1 end is out of the model's reach)."""
    ddim = DDIMScheduler(**SAMPLING_SCHEDULE)
    ddim.set_timesteps(steps)
    a = ddim.alphas_cumprod[ddim.timesteps].double()
    return ((1 - a).sqrt() / (a.sqrt() + (1 - a).sqrt())).tolist()


@lru_cache(maxsize=1)
def _train_log_snr() -> np.ndarray:
    a = DDIMScheduler(**TRAIN_SCHEDULE).alphas_cumprod.double().numpy()
    return np.log(a / (1 - a))  # decreasing in t


class FlowView:
    """For an ε-prediction ``UNet2DModel`` subclass: ``forward(..., flow=True)`` is the same model
    seen as a flow-matching one (x = (1-σ)·x0 + σ·ε, timestep 1000·σ, predicting the velocity
    ε - x0): the sample is rescaled to the training timestep of equal signal-to-noise ratio, which
    the ε-prediction is made at. How a flow sampler (``FlowMatchEulerDiscreteScheduler``, SD3's and
    Flux's) runs on the proving ground's generators. Subclasses define ``epsilon``."""

    def epsilon(self, sample: torch.Tensor, timestep, class_labels) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, sample: torch.Tensor, timestep, class_labels=None, return_dict: bool = True, flow: bool = False):
        if flow:
            sigma = torch.as_tensor(timestep, dtype=torch.float64).flatten()[:1] / 1000
            log_snr = float(2 * torch.log((1 - sigma) / sigma))
            train = _train_log_snr()
            vp_t = float(np.interp(-log_snr, -train, np.arange(len(train))))
            sigma = float(sigma)
            scaled = sample / ((1 - sigma) ** 2 + sigma**2) ** 0.5
            eps = self.epsilon(scaled, torch.full((len(sample),), vp_t, device=sample.device), class_labels)
            out = eps - (sample - sigma * eps) / (1 - sigma)
        else:
            out = self.epsilon(sample, timestep, class_labels)
        return UNet2DOutput(sample=out) if return_dict else (out,)


class PixelUNet(FlowView, UNet2DModel):
    """The pixel generator's UNet called on pixel latents ``[B,3,32,32]``: it runs on their 2×2
    space-to-depth view (nothing learned), so the pipeline's denoiser takes and returns latents
    like any diffusers UNet (what a replay of its call for self-recurrence needs)."""

    def epsilon(self, sample, timestep, class_labels):
        # UNet2DModel.forward, not __call__: one denoiser evaluation as hooks (and counts) see it
        out = UNet2DModel.forward(self, F.pixel_unshuffle(sample, 2), timestep, class_labels=class_labels).sample
        return F.pixel_shuffle(out, 2)


class LatentUNet(FlowView, UNet2DModel):
    """The latent generator's UNet: ``class_labels`` are ``[B, 3]`` prompt attribute indices."""

    def epsilon(self, sample, timestep, class_labels):
        return UNet2DModel.forward(self, sample, timestep, class_labels=class_labels).sample


class WorldPipeline(DiffusionPipeline):
    """The sampling loop both generators share: classifier-free guidance, any diffusers scheduler
    (flow samplers through ``FlowView``), ``callback_on_step_end``, img2img (``image=``,
    ``strength=``: SDEdit from the image's latents). Subclasses say how prompts become labels and
    how images become latents and back."""

    model_cpu_offload_seq = "unet"
    _callback_tensor_inputs = ["latents"]

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    @property
    def guidance_scale(self) -> float:
        return self._guidance_scale

    def labels(self, prompts: list, per_prompt: int) -> torch.Tensor:
        """Class labels of the prompts, each repeated ``per_prompt`` times."""
        raise NotImplementedError

    def null_labels(self, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    latent_shape: tuple[int, ...]

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[B,3,H,W]`` in [0, 1] → latents."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents → images in [0, 1]."""
        raise NotImplementedError

    def denoiser(self, latents: torch.Tensor, timestep, labels: torch.Tensor) -> torch.Tensor:
        flow = {"flow": True} if is_flow_scheduler(self.scheduler) else {}
        return self.unet(latents, timestep, class_labels=labels, **flow).sample

    def _image_latents(self, image: torch.Tensor, batch: int) -> torch.Tensor:
        if not isinstance(image, torch.Tensor) or image.dim() != 4 or tuple(image.shape[1:]) != (3, SIZE, SIZE):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must be a [B,3,{SIZE},{SIZE}] tensor in [0, 1], got {shape}")
        if image.shape[0] not in (1, batch):
            raise ValueError(f"image batch {image.shape[0]} does not match the {batch} images asked for")
        return self.encode(image.to(self.device, self.unet.dtype)).expand(batch, -1, -1, -1)

    def _img2img_timesteps(self, steps: int, strength: float) -> torch.Tensor:
        if not (isinstance(strength, (int, float)) and 0 < strength <= 1):
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        start = steps - min(max(round(steps * strength), 1), steps)
        order = getattr(self.scheduler, "order", 1)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(start * order)
        return self.scheduler.timesteps[start * order:]

    @torch.no_grad()
    def __call__(
        self,
        prompt,
        num_images_per_prompt: int = 1,
        num_inference_steps: int = 25,
        guidance_scale: float = 2.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        image: torch.Tensor | None = None,
        strength: float = 1.0,
        output_type: str = "pil",
        return_dict: bool = True,
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ):
        prompts = [prompt] if isinstance(prompt, (str, int, np.integer)) or not isinstance(prompt, Sequence) \
            else list(prompt)
        labels = self.labels(prompts, num_images_per_prompt).to(self.device)
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback tensor input {name!r} is not one of {self._callback_tensor_inputs}")
        if output_type not in ("pil", "np", "pt"):
            raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        batch = len(labels)
        shape = (batch, *self.latent_shape)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=self.device, dtype=self.unet.dtype)
        elif tuple(latents.shape) != shape:
            raise ValueError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        flow = is_flow_scheduler(self.scheduler)
        if flow:
            self.scheduler.set_timesteps(sigmas=flow_sigmas(num_inference_steps), device=self.device)
        else:
            self.scheduler.set_timesteps(num_inference_steps, device=self.device)
        timesteps = self.scheduler.timesteps
        if image is None and flow:  # pure noise at the first level, as the VP sampler starts from it
            first = float(self.scheduler.sigmas[0])
            latents = latents.to(self.device) * ((1 - first) ** 2 + first**2) ** 0.5
        elif image is None:
            latents = latents.to(self.device) * self.scheduler.init_noise_sigma
        else:  # img2img (SDEdit): re-noise the image to `strength` of the schedule and denoise from there
            timesteps = self._img2img_timesteps(num_inference_steps, strength)
            noise, clean = latents.to(self.device), self._image_latents(image, batch)
            latents = (self.scheduler.scale_noise(clean, timesteps[:1], noise) if flow
                       else self.scheduler.add_noise(clean, noise, timesteps[:1]))
        self._num_timesteps = len(timesteps)
        self._guidance_scale = guidance_scale
        null = self.null_labels(labels)
        extra = {"generator": generator} if "generator" in _step_parameters(self.scheduler) else {}
        for i, t in enumerate(self.progress_bar(timesteps)):
            model_input = latents if flow else self.scheduler.scale_model_input(latents, t)
            if guidance_scale == 1.0:
                prediction = self.denoiser(model_input, t, labels)
            else:
                both = self.denoiser(torch.cat([model_input, model_input]), t, torch.cat([labels, null]))
                cond, uncond = both.chunk(2)
                prediction = uncond + guidance_scale * (cond - uncond)
            latents = self.scheduler.step(prediction, t, latents, **extra).prev_sample
            if callback_on_step_end is not None:
                kwargs = {"latents": latents} if "latents" in callback_on_step_end_tensor_inputs else {}
                outputs = callback_on_step_end(self, i, t, kwargs)
                latents = outputs.pop("latents", latents)
        images = self.decode(latents.float())
        if output_type == "np":
            images = images.permute(0, 2, 3, 1).cpu().numpy()
        elif output_type == "pil":
            images = self.numpy_to_pil(images.permute(0, 2, 3, 1).cpu().numpy())
        self.maybe_free_model_hooks()
        return ImagePipelineOutput(images=images) if return_dict else (images,)


class IdentityWorldPipeline(WorldPipeline):
    """Category-prompted pixel diffusion over the procedural identities (32×32 RGB); latents are
    pixels in [-1, 1]."""

    latent_shape = (3, SIZE, SIZE)

    def __init__(self, unet: UNet2DModel, scheduler):
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)

    @classmethod
    def from_weights(cls, weights=None, scheduler=None, device: str | torch.device = "cpu") -> "IdentityWorldPipeline":
        """The shipped (or given) generator weights with a scheduler (default DDIM)."""
        from .models import load_generator

        scheduler = scheduler if scheduler is not None else DDIMScheduler(**SAMPLING_SCHEDULE, clip_sample=True)
        pipe = cls(load_generator(weights, PixelUNet).requires_grad_(False), scheduler).to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def labels(self, prompts, per_prompt):
        return torch.tensor([category_index(p) for p in prompts for _ in range(per_prompt)])

    def null_labels(self, labels):
        return torch.full_like(labels, NUM_CATEGORIES)

    @staticmethod
    def encode(images: torch.Tensor) -> torch.Tensor:
        return images * 2 - 1

    @staticmethod
    def decode(latents: torch.Tensor) -> torch.Tensor:
        """Latents (pixels in [-1, 1]) → images in [0, 1]; the decoder for identity guidance."""
        return (latents / 2 + 0.5).clamp(0, 1)


class LatentWorldPipeline(WorldPipeline):
    """Scene-prompted latent diffusion, built like Stable Diffusion: a KL autoencoder (``vae``,
    8×8×4 latents scaled by ``vae.config.scaling_factor``), a denoiser on the scaled latents, and
    a tiny distilled autoencoder (``tiny_vae``, an ``AutoencoderTiny`` on scaled latents, as TAESD).
    Prompts: ``"striped disc on a textured background, on the left"`` (``latent.parse_prompt``)."""

    _optional_components = ["tiny_vae"]

    def __init__(self, vae, unet: UNet2DModel, scheduler, tiny_vae=None):
        super().__init__()
        self.register_modules(vae=vae, unet=unet, scheduler=scheduler, tiny_vae=tiny_vae)
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_shape = (vae.config.latent_channels, SIZE // self.vae_scale_factor, SIZE // self.vae_scale_factor)

    @classmethod
    def from_weights(cls, weights=None, scheduler=None, device: str | torch.device = "cpu") -> "LatentWorldPipeline":
        """The shipped (or given) latent models with a scheduler (default DDIM, clipping x̂0 to ±3 latent std)."""
        from .latent import load_autoencoder, load_latent_unet, load_tiny_autoencoder

        scheduler = scheduler if scheduler is not None else DDIMScheduler(**SAMPLING_SCHEDULE, clip_sample=True,
                                                                          clip_sample_range=3.0)
        pipe = cls(load_autoencoder(weights), load_latent_unet(weights, LatentUNet), scheduler,
                   load_tiny_autoencoder(weights)).to(device)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def labels(self, prompts, per_prompt):
        from .latent import parse_prompt

        parsed = [parse_prompt(p) for p in prompts for _ in range(per_prompt)]
        return self.unet.class_embedding.labels(parsed)

    def null_labels(self, labels):
        return self.unet.class_embedding.null(len(labels), labels.device)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → scaled latents (the posterior's mean)."""
        vae = self.vae
        return vae.encode((images * 2 - 1).to(vae.dtype)).latent_dist.mean * vae.config.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        return (vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample.float() / 2 + 0.5).clamp(0, 1)


def _step_parameters(scheduler) -> set[str]:
    import inspect

    return set(inspect.signature(scheduler.step).parameters)
