"""A one-step stand-in for ``scheduler.step``: how the diffusers adapters change a step without editing the pipeline.

A ``PipelineCallback`` runs after step i; to act on step i+1's model output it puts a guard on
``scheduler.step`` that removes itself when that step runs, when the step or the denoiser's
forward raises, and does nothing if its run was abandoned (a new ``set_timesteps``)."""

from __future__ import annotations

import torch


class StepGuard:
    """Stands in for ``scheduler.step`` for one step: ``on_step(model_output, timestep, sample)``
    returns the model output the scheduler then steps with. ``on_forward(kwargs)`` sees the
    denoiser's keyword arguments of that step. Shared by guidance and particle steering."""

    def __init__(self, pipeline, on_step, on_forward=None):
        self.on_step, self.on_forward = on_step, on_forward
        self.calls: list = []  # (module, args, kwargs, output) of the step's denoiser calls, for a replay
        self.scheduler = pipeline.scheduler
        self.timesteps = self.scheduler.timesteps  # set_timesteps (a new run) replaces it: the guard is stale
        self.original = self.scheduler.step
        self.scheduler.step = self
        denoiser = getattr(pipeline, "unet", None) or getattr(pipeline, "transformer", None)
        self.hook = None
        if isinstance(denoiser, torch.nn.Module):
            self.hook = denoiser.register_forward_hook(self._after_forward, with_kwargs=True, always_call=True)

    def _after_forward(self, module, args, kwargs, output):
        if output is None:  # the forward raised: leave nothing behind
            self.remove()
            return
        self.calls.append((module, args, kwargs, output))
        if self.on_forward is not None:
            self.on_forward(kwargs)

    def __call__(self, model_output, timestep, sample, *args, **kwargs):
        stale = self.scheduler.timesteps is not self.timesteps
        self.remove()
        if not stale:
            model_output = self.on_step(model_output, timestep, sample)
        return self.original(model_output, timestep, sample, *args, **kwargs)

    def remove(self) -> None:
        if self.scheduler.__dict__.get("step") is self:
            del self.scheduler.step
        if self.hook is not None:
            self.hook.remove()
            self.hook = None
