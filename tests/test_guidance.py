"""Identity guidance in real (tiny) diffusers pipelines of every supported family."""

import gc
import warnings

import pytest
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from pipelines import CALL, PROMPT

from idguide import IdentityGuidanceCallback

SEEDS = [0, 1, 2, 3]
GUIDE = dict(scale=2.0, start=0.0, end=1.0, inner_steps=2, decode_size=64)


def generate(pipe, name, seed, callback=None):
    kwargs = dict(CALL[name])
    if callback is not None:
        kwargs.update(callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
    return pipe(PROMPT, generator=torch.Generator().manual_seed(seed), output_type="pt", **kwargs).images


def test_guidance_raises_identity_on_every_seed(family, scorer, reference, capsys):
    name, pipe = family
    ref = scorer.embed(reference)
    cb = IdentityGuidanceCallback(scorer, ref, **GUIDE)
    gains = []
    for seed in SEEDS:
        plain = scorer.score(ref, generate(pipe, name, seed)).item()
        guided = scorer.score(ref, generate(pipe, name, seed, cb)).item()
        gains.append(guided - plain)
    with capsys.disabled():
        print(f"\n[{name}] similarity gain per seed: {', '.join(f'{g:+.4f}' for g in gains)}")
    assert all(g > 0 for g in gains), gains
    assert pipe.scheduler.__dict__.get("step") is None  # the recorder is gone after the run


def test_scale_zero_is_bit_identical(family, scorer, reference):
    name, pipe = family
    cb = IdentityGuidanceCallback(scorer, reference, **{**GUIDE, "scale": 0.0})
    assert torch.equal(generate(pipe, name, 5, cb), generate(pipe, name, 5))


def test_outside_window_is_bit_identical(family, scorer, reference):
    name, pipe = family
    cb = IdentityGuidanceCallback(scorer, reference, **{**GUIDE, "start": 0.0, "end": 0.1})  # only step 0
    assert torch.equal(generate(pipe, name, 6, cb), generate(pipe, name, 6))


def test_nan_loss_skips_steps_and_keeps_run_finite(family, scorer, reference):
    name, pipe = family
    cb = IdentityGuidanceCallback(scorer, reference, **GUIDE)
    cb.loss = lambda images: images.sum(dim=(1, 2, 3)) * float("nan")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nan_run = generate(pipe, name, 7, cb)
    assert torch.isfinite(nan_run).all()
    assert torch.equal(nan_run, generate(pipe, name, 7))
    assert any("step skipped" in str(w.message) for w in caught)


def test_nan_embedding_of_the_scorer_skips_steps_like_a_nan_loss(family, scorer, reference, monkeypatch):
    """A scorer that overflows on finite pixels (NaN embedding, as in fp16) inside the loop skips the
    step with a warning, as a NaN loss does: the run is not stopped by the check on given embeddings."""
    name, pipe = family
    cb = IdentityGuidanceCallback(scorer, reference, **GUIDE)
    encode = scorer.encode
    monkeypatch.setattr(scorer, "encode", lambda pixels: (lambda e: type(e)(e.vector * float("nan"), e.patches,
                                                                             e.grid, e.scorer))(encode(pixels)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nan_run = generate(pipe, name, 7, cb)
    assert torch.equal(nan_run, generate(pipe, name, 7))
    assert any("loss is nan, step skipped" in str(w.message) for w in caught)


class TensorCount(PipelineCallback):
    """Counts live tensors after each step (run after the guidance callback)."""

    tensor_inputs = ["latents"]

    def __init__(self):
        super().__init__()
        self.counts = []

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs):
        gc.collect()
        self.counts.append(sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor)))
        return callback_kwargs


def test_composes_with_multi_callbacks_and_memory_is_flat(family, scorer, reference):
    name, pipe = family
    counter = TensorCount()
    callbacks = MultiPipelineCallbacks([IdentityGuidanceCallback(scorer, reference, **GUIDE), counter])
    images = generate(pipe, name, 8, callbacks)
    assert torch.isfinite(images).all()
    steady = counter.counts[2:]
    assert max(steady) - min(steady) <= 2, counter.counts  # nothing accumulates across steps


def test_unsupported_pipeline_and_scheduler(tmp_path, scorer, reference):
    from diffusers import HeunDiscreteScheduler

    from pipelines import sd15

    cb = IdentityGuidanceCallback(scorer, reference, **GUIDE)
    with pytest.raises(TypeError, match="decodes the latents of StableDiffusionPipeline"):
        cb(object(), 0, 0, {"latents": torch.zeros(1)})
    pipe = sd15(tmp_path, scheduler=HeunDiscreteScheduler())
    with pytest.raises(TypeError, match="supports the schedulers .*got HeunDiscreteScheduler"):
        generate(pipe, "sd15", 0, cb)


@pytest.mark.parametrize("scheduler_name", ["ddpm_v", "euler_ancestral", "dpm"])
def test_other_schedulers_and_predictions(scheduler_name, tmp_path, scorer, reference):
    """epsilon and v-prediction, ancestral and multistep schedulers on SD1.5."""
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    from pipelines import sd15

    common = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    scheduler = {
        "ddpm_v": lambda: DDPMScheduler(**common, prediction_type="v_prediction"),
        "euler_ancestral": lambda: EulerAncestralDiscreteScheduler(**common),
        "dpm": lambda: DPMSolverMultistepScheduler(**common),
    }[scheduler_name]()
    pipe = sd15(tmp_path, scheduler=scheduler)
    ref = scorer.embed(reference)
    cb = IdentityGuidanceCallback(scorer, ref, **GUIDE)
    plain = scorer.score(ref, generate(pipe, "sd15", 0)).item()
    guided = scorer.score(ref, generate(pipe, "sd15", 0, cb)).item()
    assert guided > plain


def test_config_describes_the_callback(scorer, reference):
    cb = IdentityGuidanceCallback(scorer, reference, scale=1.5, every=2)
    assert cb.config.scale == 1.5 and cb.config.every == 2 and cb.config.scorer == "nearid"


def test_callbacks_rebuilt_from_their_config_equal_the_originals(scorer, reference):
    """Every setting is in the config (ParticleSteering's renew was not), and from_config reads it back."""
    from idguide.guidance.augment import Augment
    from idguide.guidance.diffusers.particles import ParticleSteering

    built = [IdentityGuidanceCallback(scorer, reference, scale=1.5, every=2, recurrence=0, schedule="decay",
                                      augment=Augment(3, (0.6, 0.9), 0.1), decode_size=256),
             IdentityGuidanceCallback(scorer, reference, augment=None),
             ParticleSteering(scorer, reference, every=2, end=0.6, temperature=5.0, renew=0.25, seed=3)]
    for cb in built:
        again = type(cb).from_config(cb.config, scorer=scorer, reference=reference)
        assert dict(again.config) == dict(cb.config), type(cb).__name__
    assert built[2].config.renew == 0.25
    rebuilt = IdentityGuidanceCallback.from_config(built[0].config, scorer=scorer, reference=reference)
    assert rebuilt.settings == built[0].settings and rebuilt.settings.augment == Augment(3, (0.6, 0.9), 0.1)


def test_custom_decoder_and_several_references(tmp_path, scorer, reference):
    """Any differentiable callable can decode; several references of one identity are allowed."""
    from pipelines import sd15

    pipe = sd15(tmp_path)
    calls = []

    def tiny_decoder(latents):  # a fixed linear map from latents to RGB, like a tiny autoencoder
        calls.append(latents.shape)
        rgb = torch.nn.functional.conv2d(latents, torch.full((3, 4, 1, 1), 0.25))
        return torch.sigmoid(torch.nn.functional.interpolate(rgb, scale_factor=2.0))

    refs = torch.cat([reference, reference.flip(-1)])
    cb = IdentityGuidanceCallback(scorer, refs, decoder=tiny_decoder, reference_mode="best", **GUIDE)
    guided = generate(pipe, "sd15", 0, cb)
    assert calls and torch.isfinite(guided).all() and not torch.equal(guided, generate(pipe, "sd15", 0))


def test_guided_denoised_core_rule():
    """The documented update: x0 - scale * w * clamp(g / rms(g))."""
    from idguide.guidance import GuidanceSettings, guided_denoised

    x0 = torch.randn(2, 4, 8, 8)
    target = torch.randn(2, 4, 8, 8)
    loss = lambda images: ((images - target) ** 2).flatten(1).sum(1)  # noqa: E731
    settings = GuidanceSettings(scale=0.3, clip=None)
    out = guided_denoised(x0, lambda z: z, loss, 0.5, settings)
    g = 2 * (x0 - target)
    expected = x0 - 0.3 * 0.5 * g / g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()
    assert torch.allclose(out, expected, atol=1e-6)
    with torch.inference_mode():  # as ComfyUI calls it
        assert torch.allclose(guided_denoised(x0.clone(), lambda z: z, loss, 0.5, settings), expected, atol=1e-6)
    assert guided_denoised(x0, lambda z: z, loss, 0.5, GuidanceSettings(scale=0.0)) is x0
    with pytest.raises(ValueError, match="start <= end"):
        GuidanceSettings(start=0.8, end=0.2)


def test_views_are_seeded_per_update_and_keep_the_gradient():
    """Augmented views: differentiable crops/flips/jitter in [0, 1]; the seed of an update picks
    its views (a rerun repeats them; the front-ends pass the step index, so each step gets new ones)."""
    from idguide.guidance import Augment, GuidanceSettings, guided_denoised

    images = torch.rand(2, 3, 16, 16, requires_grad=True)
    augment = Augment(3)
    views = augment(images, torch.Generator().manual_seed(0))
    assert views.shape == (6, 3, 16, 16) and 0 <= views.min() and views.max() <= 1
    assert torch.equal(views, augment(images, torch.Generator().manual_seed(0)))
    assert not torch.equal(views, augment(images, torch.Generator().manual_seed(1)))
    (grad,) = torch.autograd.grad(views.sum(), images)
    assert grad.abs().sum() > 0

    x0 = torch.rand(1, 3, 16, 16)
    ramp = torch.linspace(0, 1, 16).expand(16, 16)  # a loss that depends on where the crop lands
    loss = lambda images: -(images * ramp).flatten(1).sum(1)  # noqa: E731
    one_view = GuidanceSettings(scale=0.5, augment=Augment(1))
    first, again, other = (guided_denoised(x0, lambda z: z, loss, 0.5, one_view, seed) for seed in (7, 7, 8))
    assert torch.equal(first, again) and not torch.allclose(first, other)
    plain = GuidanceSettings(scale=0.5)
    assert torch.equal(guided_denoised(x0, lambda z: z, loss, 0.5, plain, 7),
                       guided_denoised(x0, lambda z: z, loss, 0.5, plain, 8))  # no views: the seed plays no part


def test_an_exception_mid_run_leaves_nothing_behind(tmp_path, scorer, reference):
    """The step guard is gone after a run that a failing denoiser (or step) aborts; the next run is clean."""
    from pipelines import sd15

    pipe = sd15(tmp_path)
    cb = IdentityGuidanceCallback(scorer, reference, **GUIDE)
    calls = []

    def fail_third_call(module, args):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")

    handle = pipe.unet.register_forward_pre_hook(fail_third_call)
    with pytest.raises(RuntimeError, match="boom"):
        generate(pipe, "sd15", 3, cb)
    handle.remove()
    assert "step" not in pipe.scheduler.__dict__ and not pipe.unet._forward_hooks
    broken_step = cb._guided_output
    cb._guided_output = lambda *a: (_ for _ in ()).throw(KeyboardInterrupt())  # fails inside the guarded step
    with pytest.raises(KeyboardInterrupt):
        generate(pipe, "sd15", 3, cb)
    cb._guided_output = broken_step
    assert "step" not in pipe.scheduler.__dict__ and not pipe.unet._forward_hooks
    assert torch.equal(generate(pipe, "sd15", 4, cb), generate(pipe, "sd15", 4, IdentityGuidanceCallback(
        scorer, reference, **GUIDE)))


def test_non_finite_pixels_skip_the_step(tmp_path, scorer, reference):
    from pipelines import sd15

    pipe = sd15(tmp_path)
    cb = IdentityGuidanceCallback(scorer, reference, decoder=lambda z: torch.full((z.shape[0], 3, 16, 16), float("nan")),
                                  **GUIDE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        images = generate(pipe, "sd15", 9, cb)
    assert torch.equal(images, generate(pipe, "sd15", 9))
    assert any("non-finite pixels" in str(w.message) for w in caught)


def test_self_recurrence_replays_each_familys_denoiser(family, scorer, reference, monkeypatch):
    """The replayed call gives back exactly the model output the scheduler got (checked at every
    guided step), costs one more denoiser call per guided step and repeat, and still guides."""
    import idguide.guidance.diffusers.callback as side

    name, pipe = family
    checked = []

    class CheckedReplay(side.DenoiserReplay):
        def __init__(self, pipeline, calls, model_output, timestep, sample):
            super().__init__(pipeline, calls, model_output, timestep, sample)
            torch.testing.assert_close(self(sample), model_output, rtol=1e-5, atol=1e-5)
            checked.append(self.copies)

    monkeypatch.setattr(side, "DenoiserReplay", CheckedReplay)
    denoiser = getattr(pipe, "unet", None) or pipe.transformer
    forwards = []
    handle = denoiser.register_forward_pre_hook(lambda module, args: forwards.append(1))
    settings = {**GUIDE, "inner_steps": 1, "start": 0.25, "end": 0.75}
    try:
        plain = generate(pipe, name, 7)
        base = len(forwards)
        once = generate(pipe, name, 7, IdentityGuidanceCallback(scorer, reference, recurrence=0, **settings))
        guided = generate(pipe, name, 7, IdentityGuidanceCallback(scorer, reference, recurrence=2, **settings))
    finally:
        handle.remove()
    steps = CALL[name]["num_inference_steps"]
    guided_steps = sum(0.25 <= i / steps < 0.75 for i in range(1, steps))
    # 2 repeats per guided step, plus the check's own replay above
    assert len(forwards) == 3 * base + (2 + 1) * guided_steps and len(checked) == guided_steps
    assert checked[0] == (1 if name == "flux" else 2)  # the doubled CFG batch, Flux's embedded guidance
    ref = scorer.embed(reference)
    gains = [scorer.score(ref, x).item() - scorer.score(ref, plain).item() for x in (once, guided)]
    assert torch.isfinite(guided).all() and not torch.equal(guided, once) and gains[1] > 0, gains
    assert "step" not in pipe.scheduler.__dict__ and not denoiser._forward_hooks


def test_self_recurrence_refuses_what_it_cannot_replay(tmp_path, scorer, reference):
    from pipelines import sd15

    from idguide.guidance.diffusers.replay import ReplayError

    pipe = sd15(tmp_path)
    cb = IdentityGuidanceCallback(scorer, reference, recurrence=1, **GUIDE)
    with pytest.raises(ReplayError, match="cannot reproduce StableDiffusionPipeline's model output .*guidance rescale"):
        pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", guidance_rescale=0.7,
             callback_on_step_end=cb, **CALL["sd15"])
    assert "step" not in pipe.scheduler.__dict__ and not pipe.unet._forward_hooks
    with pytest.raises(ValueError, match="recurrence must be an integer >= 0"):
        IdentityGuidanceCallback(scorer, reference, recurrence=-1)


def test_self_recurrence_core_rule():
    """Re-noising keeps c of the implied noise and draws the rest fresh (seeded); the model's
    denoising keeps the part of each guided change it can make, so repeats add up there only."""
    from idguide.guidance import GuidanceSettings
    from idguide.guidance.step import recurrent_denoised

    on = torch.zeros(1, 2, 4, 4)
    on[:, 0] = 1.0  # the data live in channel 0; channel 1 is always 0
    sigma = 0.8

    def denoise(x):  # the exact denoiser of x = x0 + σ ε for x0 ~ N(0, 1) in channel 0
        return x * on / (1 + sigma**2)

    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(0)) * (1 + sigma**2) ** 0.5 * on + \
        sigma * torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1)) * (1 - on)
    same = recurrent_denoised(x, denoise(x), denoise, lambda d: d, 1.0, sigma, carry=1.0, repeats=3)
    torch.testing.assert_close(same, denoise(x))  # nothing guided, all noise kept: nothing changes
    push = 0.1 * torch.ones(1, 2, 4, 4)  # a guidance change, half of it where the model cannot follow
    results = [recurrent_denoised(x, denoise(x), denoise, lambda d: d + push, 1.0, sigma, carry=0.9, repeats=k, index=5)
               for k in (0, 1, 3)]
    change = [(r - denoise(x)) for r in results]
    off = [float(c[:, 1].mean()) for c in change]
    assert off == pytest.approx([0.1, 0.1, 0.1], abs=1e-6)  # off the data: one step's worth, whatever k
    assert torch.equal(results[2], recurrent_denoised(x, denoise(x), denoise, lambda d: d + push, 1.0, sigma, 0.9, 3, 5))
    assert not torch.equal(results[2], recurrent_denoised(x, denoise(x), denoise, lambda d: d + push, 1.0, sigma, 0.9,
                                                          3, 6))
    with pytest.raises(ValueError, match="recurrence must be an integer >= 0"):
        GuidanceSettings(recurrence=1.5)
