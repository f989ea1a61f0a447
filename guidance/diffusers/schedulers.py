"""Each diffusers scheduler's own clean estimate of a step, and how to hand it a guided one.

Identity guidance changes the clean estimate x̂0 *before* the scheduler uses it: the model
output is replaced by the one for which the scheduler's own computation gives the guided x̂0'.
Every sampler — single-step, multistep (DPM-Solver++, UniPC with its corrector), ancestral —
then carries the change forward as it would carry a better prediction, and the ComfyUI patch
(which changes "denoised" before the sampler sees it) means exactly the same thing.

x̂0 comes from the scheduler's own arithmetic: ``convert_model_output`` for DPM-Solver and
UniPC (any prediction type they accept, flow included; Karras/exponential/flow sigmas from
``scheduler.sigmas``), the formulas their ``step`` uses for the others (tested against the
``pred_original_sample`` they return). x̂0 is affine in the model output, so the replacement
is ``out + (x̂0' - x̂0) / c`` with ``c = ∂x̂0/∂out`` measured by the same computation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..step import noise_carry, noise_fraction

SUPPORTED = {
    # name: prediction types it accepts here
    "DDIMScheduler": ("epsilon", "v_prediction", "sample"),
    "DDPMScheduler": ("epsilon", "v_prediction", "sample"),
    "EulerDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "EulerAncestralDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "DPMSolverMultistepScheduler": ("epsilon", "v_prediction", "sample", "flow_prediction"),
    "UniPCMultistepScheduler": ("epsilon", "v_prediction", "sample", "flow_prediction"),
    "FlowMatchEulerDiscreteScheduler": ("flow",),
}


# Private diffusers methods the estimators call (their public equivalents do not exist), by scheduler;
# checked up front so a diffusers that renamed one says so instead of failing mid-sampling.
PRIVATE = {"DPMSolverMultistepScheduler": ("_sigma_to_alpha_sigma_t", "convert_model_output"),
           "UniPCMultistepScheduler": ("_sigma_to_alpha_sigma_t", "convert_model_output")}
TESTED_DIFFUSERS = "0.32 to 0.42"


def is_flow_scheduler(scheduler) -> bool:
    """A rectified-flow scheduler (x_t = (1-σ)·x0 + σ·ε), as SD3 and Flux sample with."""
    return type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


def check_scheduler(scheduler) -> None:
    """Refuse, with a clear error, a scheduler whose clean estimate IDGuide cannot hand back."""
    name = type(scheduler).__name__
    if name not in SUPPORTED:
        raise TypeError(f"identity guidance supports the schedulers {', '.join(SUPPORTED)}; got {name}")
    prediction = getattr(scheduler.config, "prediction_type", "flow")
    if prediction not in SUPPORTED[name] and name != "FlowMatchEulerDiscreteScheduler":
        raise TypeError(f"identity guidance: {name} with prediction_type={prediction!r} is not supported "
                        f"(supported: {', '.join(SUPPORTED[name])})")
    if getattr(scheduler.config, "thresholding", False):
        raise TypeError(f"identity guidance: {name} with thresholding=True is not supported "
                        "(dynamic thresholding makes the clean estimate non-linear in the model output)")
    if name == "DPMSolverMultistepScheduler" and scheduler.config.algorithm_type not in ("dpmsolver++", "sde-dpmsolver++"):
        raise TypeError("identity guidance: DPMSolverMultistepScheduler needs algorithm_type 'dpmsolver++' or "
                        f"'sde-dpmsolver++' (it predicts x0); got {scheduler.config.algorithm_type!r}")
    if name == "UniPCMultistepScheduler" and not scheduler.config.predict_x0:
        raise TypeError("identity guidance: UniPCMultistepScheduler needs predict_x0=True")
    private = PRIVATE.get(name, ()) + ("_init_step_index",) * hasattr(type(scheduler), "_init_step_index")
    missing = [m for m in private if not callable(getattr(scheduler, m, None))]
    if missing:
        import diffusers

        raise RuntimeError(f"identity guidance uses {name}.{', '.join(missing)}, which diffusers {diffusers.__version__} "
                           f"does not have (private methods, present in diffusers {TESTED_DIFFUSERS}); install a "
                           "diffusers in that range")


@dataclass(frozen=True)
class StepView:
    denoised: torch.Tensor  # x̂0 as the scheduler computes it
    gain: float  # ∂x̂0/∂(model output), a scalar
    limit: float | None = None  # the range the scheduler clips x̂0 to (DDIM, DDPM clip_sample)
    signal: float = 1.0  # s_t, for x_t = s·x0 + σ·ε
    noise: float = 0.0  # σ_t
    carry: float = 0.0  # σ̃_next/σ̃ (noise_carry)
    x0_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None  # (model output, sample) → x̂0

    @property
    def weight(self) -> float:
        """w_t = σ²/(s²+σ²)."""
        return noise_fraction(self.signal, self.noise)

    def model_output_for(self, model_output: torch.Tensor, guided: torch.Tensor) -> torch.Tensor:
        """The model output for which the scheduler computes ``guided`` as x̂0.

        A clipping scheduler clips x̂0 but keeps the noise the model output implies, so a
        guided x̂0 outside its range would push the sample the wrong way: it is clipped here.
        """
        if self.limit is not None:
            guided = guided.clamp(-self.limit, self.limit)
        return model_output + ((guided - self.denoised) / self.gain).to(model_output.dtype)


def _index(scheduler, timestep) -> int:
    if getattr(scheduler, "step_index", None) is None:
        scheduler._init_step_index(timestep)
    return scheduler.step_index


def _vp(out: torch.Tensor, x: torch.Tensor, alpha: float, sigma: float, prediction: str) -> torch.Tensor:
    """x = alpha·x0 + sigma·ε."""
    if prediction == "epsilon":
        return (x - sigma * out) / alpha
    if prediction == "v_prediction":
        return alpha * x - sigma * out
    return out


def estimator(scheduler, timestep) -> tuple[Callable[[torch.Tensor, torch.Tensor], torch.Tensor], float, float]:
    """``(x̂0 of (model output, sample), signal s_t, noise σ_t)`` for the step the scheduler is about to take."""
    name = type(scheduler).__name__
    if name in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler"):
        alpha, sigma = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[_index(scheduler, timestep)])
        return (lambda out, x: scheduler.convert_model_output(out, sample=x).float()), float(alpha), float(sigma)
    if is_flow_scheduler(scheduler):
        sigma = float(scheduler.sigmas[_index(scheduler, timestep)])
        return (lambda out, x: x.float() - sigma * out.float()), 1.0 - sigma, sigma
    prediction = scheduler.config.prediction_type
    if name in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"):  # x = x0 + σ ε (scaled input)
        sigma = float(scheduler.sigmas[_index(scheduler, timestep)])
        if prediction == "epsilon":
            return (lambda out, x: x.float() - sigma * out.float()), 1.0, sigma
        if prediction == "v_prediction":
            return (lambda out, x: out.float() * (-sigma / math.sqrt(sigma**2 + 1)) + x.float() / (sigma**2 + 1)), 1.0, sigma
        return (lambda out, x: out.float()), 1.0, sigma
    alpha, sigma = _vp_levels(scheduler, timestep)  # DDIM, DDPM: the timestep indexes the training schedule
    return (lambda out, x: _vp(out.float(), x.float(), alpha, sigma, prediction)), alpha, sigma


def _vp_levels(scheduler, timestep) -> tuple[float, float]:
    a = float(scheduler.alphas_cumprod[int(timestep)])
    return math.sqrt(a), math.sqrt(1 - a)


def next_levels(scheduler, timestep) -> tuple[float, float]:
    """``(signal, noise)`` of the level the step goes to (noise 0 after the last step)."""
    name = type(scheduler).__name__
    if name in ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler"):
        alpha, sigma = scheduler._sigma_to_alpha_sigma_t(scheduler.sigmas[_index(scheduler, timestep) + 1])
        return float(alpha), float(sigma)
    if is_flow_scheduler(scheduler):
        sigma = float(scheduler.sigmas[_index(scheduler, timestep) + 1])
        return 1.0 - sigma, sigma
    if name in ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler"):
        return 1.0, float(scheduler.sigmas[_index(scheduler, timestep) + 1])
    timesteps = [int(t) for t in scheduler.timesteps]
    position = timesteps.index(int(timestep))
    return _vp_levels(scheduler, timesteps[position + 1]) if position + 1 < len(timesteps) else (1.0, 0.0)


def step_view(scheduler, model_output: torch.Tensor, timestep, sample: torch.Tensor) -> StepView:
    x0_of, signal, noise = estimator(scheduler, timestep)
    denoised = x0_of(model_output, sample)
    probe = x0_of(model_output + 1.0, sample) - denoised
    gain = float(probe.mean())
    if not math.isfinite(gain) or abs(gain) < 1e-12:
        gain = float("nan")
    limit = float(scheduler.config.clip_sample_range) if getattr(scheduler.config, "clip_sample", False) else None
    carry = noise_carry(signal, noise, *next_levels(scheduler, timestep))
    return StepView(denoised, gain, limit, signal, noise, carry, x0_of)
