"""Each scheduler's clean estimate, taken from its own computation, and handed back guided."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)

from idguide.guidance.diffusers.schedulers import check_scheduler, step_view

VP = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
SCHEDULERS = {
    "ddim-eps": lambda: DDIMScheduler(**VP),
    "ddim-v": lambda: DDIMScheduler(**VP, prediction_type="v_prediction"),
    "ddim-sample": lambda: DDIMScheduler(**VP, prediction_type="sample"),
    "ddpm-eps": lambda: DDPMScheduler(**VP),
    "euler-eps": lambda: EulerDiscreteScheduler(**VP),
    "euler-v": lambda: EulerDiscreteScheduler(**VP, prediction_type="v_prediction"),
    "euler-karras": lambda: EulerDiscreteScheduler(**VP, use_karras_sigmas=True),
    "euler-ancestral": lambda: EulerAncestralDiscreteScheduler(**VP),
    "dpm++-eps": lambda: DPMSolverMultistepScheduler(**VP),
    "dpm++-v-karras": lambda: DPMSolverMultistepScheduler(**VP, prediction_type="v_prediction", use_karras_sigmas=True),
    "dpm++-flow": lambda: DPMSolverMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                      flow_shift=3.0),
    "dpm++-sde": lambda: DPMSolverMultistepScheduler(**VP, algorithm_type="sde-dpmsolver++"),
    "unipc-eps": lambda: UniPCMultistepScheduler(**VP),
    "unipc-exponential": lambda: UniPCMultistepScheduler(**VP, use_exponential_sigmas=True),
    "unipc-flow": lambda: UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                  flow_shift=3.0),
    "flow-euler": lambda: FlowMatchEulerDiscreteScheduler(shift=3.0),
}
RETURNS_X0 = ("ddim", "ddpm", "euler")  # their step output carries pred_original_sample


def run(scheduler, steps=8, guide_at=None, delta=0.0, seed=0):
    """Sample with a denoiser that predicts x0 = 0.5·x (as the scheduler's prediction type wants);
    optionally move step ``guide_at``'s clean estimate by ``delta``. Returns the samples after each step."""
    g = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    x = torch.randn(2, 4, 8, 8, generator=g) * getattr(scheduler, "init_noise_sigma", 1.0)
    samples, views = [], []
    for i, t in enumerate(scheduler.timesteps):
        out = torch.randn(x.shape, generator=g)  # any model output; x̂0 is affine in it
        view = step_view(scheduler, out, t, x)
        target = 0.5 * view.denoised.clamp(-3, 3)
        out = view.model_output_for(out, target)  # a denoiser whose x̂0 is `target`
        if i == guide_at:
            out = view.model_output_for(out, target + delta)
        views.append(step_view(scheduler, out, t, x).denoised)
        result = scheduler.step(out, t, x, generator=torch.Generator().manual_seed(i)) \
            if "generator" in scheduler.step.__code__.co_varnames else scheduler.step(out, t, x)
        if hasattr(result, "pred_original_sample") and result.pred_original_sample is not None:
            views[-1] = (views[-1], result.pred_original_sample)
        x = result.prev_sample
        samples.append(x)
    return samples, views


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_clean_estimate_is_the_schedulers_own(name):
    scheduler = SCHEDULERS[name]()
    check_scheduler(scheduler)
    _, views = run(scheduler)
    for ours in views:
        if isinstance(ours, tuple):  # the scheduler's own pred_original_sample
            mine, theirs = ours
            if getattr(scheduler.config, "clip_sample", False):  # DDIM, DDPM clip what they return
                limit = scheduler.config.clip_sample_range
                mine = mine.clamp(-limit, limit)
            torch.testing.assert_close(mine, theirs.float(), rtol=1e-4, atol=1e-4)
    assert any(isinstance(v, tuple) for v in views) == (name.split("-")[0] in RETURNS_X0)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_model_output_for_gives_the_guided_estimate(name):
    scheduler = SCHEDULERS[name]()
    scheduler.set_timesteps(6)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 4, 8, 8, generator=g) * getattr(scheduler, "init_noise_sigma", 1.0)
    t = scheduler.timesteps[2]
    if hasattr(scheduler, "_step_index"):
        scheduler._step_index = 2
    out = torch.randn(x.shape, generator=g)
    view = step_view(scheduler, out, t, x)
    guided = view.denoised + torch.randn(x.shape, generator=g)
    if view.limit is not None:  # a clipping scheduler gets a guided estimate inside its range
        guided = guided.clamp(-view.limit, view.limit)
    torch.testing.assert_close(step_view(scheduler, view.model_output_for(out, guided), t, x).denoised, guided,
                               rtol=1e-4, atol=1e-3)
    assert 0.0 <= view.weight <= 1.0


def kept_change(name: str) -> list[float]:
    """Mean change of the samples after steps 3..7 when step 3's clean estimate moves by +0.5."""
    plain, _ = run(SCHEDULERS[name]())
    guided, _ = run(SCHEDULERS[name](), guide_at=3, delta=0.5)
    return [float((guided[k] - plain[k]).mean()) for k in range(3, 8)]


@pytest.mark.parametrize("unipc, dpm", [("unipc-eps", "dpm++-eps"), ("unipc-flow", "dpm++-flow")])
def test_unipc_keeps_a_guided_estimate_like_dpm_solver(unipc, dpm):
    """UniPC's corrector rebuilds the sample from its history; the guided estimate is in that
    history, so the change survives as it does with DPM-Solver++ (moving the sample after the
    step instead kept ~0.16 of it)."""
    ours, theirs = kept_change(unipc), kept_change(dpm)
    assert all(v > 0.005 for v in ours), ours
    assert 0.5 < ours[-1] / theirs[-1] < 2.0, (ours, theirs)


@pytest.mark.parametrize("name", ["ddim-eps", "euler-eps", "euler-ancestral", "dpm++-sde", "flow-euler"])
def test_a_guided_estimate_is_kept_by_every_scheduler(name):
    assert all(v > 0.005 for v in kept_change(name))


def test_unsupported_schedulers_are_refused_by_name():
    with pytest.raises(TypeError, match="HeunDiscreteScheduler"):
        check_scheduler(HeunDiscreteScheduler(**VP))
    with pytest.raises(TypeError, match="thresholding"):
        check_scheduler(DDIMScheduler(**VP, thresholding=True))
    with pytest.raises(TypeError, match="flow_prediction"):
        check_scheduler(DDIMScheduler(**VP, prediction_type="flow_prediction"))
    with pytest.raises(TypeError, match="algorithm_type"):
        check_scheduler(DPMSolverMultistepScheduler(**VP, algorithm_type="dpmsolver", final_sigmas_type="sigma_min"))


def test_a_diffusers_without_the_private_methods_used_is_named_up_front():
    """The estimators call private scheduler methods; a diffusers that renamed one is refused before
    sampling, naming the method and the installed version (issue 22's version guard)."""
    import diffusers

    for make in (lambda: DPMSolverMultistepScheduler(**VP), lambda: UniPCMultistepScheduler(**VP),
                 lambda: EulerDiscreteScheduler(**VP)):
        check_scheduler(make())  # today's diffusers has them
    renamed = DPMSolverMultistepScheduler(**VP)
    renamed._sigma_to_alpha_sigma_t = None  # as if a release had renamed it
    with pytest.raises(RuntimeError, match=rf"DPMSolverMultistepScheduler\._sigma_to_alpha_sigma_t, which diffusers "
                                           rf"{diffusers.__version__} does not have.*0\.32 to 0\.42"):
        check_scheduler(renamed)
    euler = EulerDiscreteScheduler(**VP)
    euler._init_step_index = None
    with pytest.raises(RuntimeError, match="EulerDiscreteScheduler._init_step_index"):
        check_scheduler(euler)
