"""The pipeline's model output at another sample of the step being taken (self-recurrence).

A ``PipelineCallback`` cannot call the pipeline's denoiser with the pipeline's conditioning;
it can watch the call the pipeline made for this step (``StepGuard`` records it) and make it
again with only the sample changed. That is sound only if the step's model output is that call's
output combined the way this module knows — one call, or one call on the doubled batch combined
by classifier-free guidance, either half first — so the replay first checks that it reproduces
the model output the scheduler received, and refuses (``ReplayError``) what it cannot reproduce:
guidance rescale, true CFG in two calls, skip-layer guidance, an input it cannot rebuild.
"""

from __future__ import annotations

import torch

SAMPLE_KEYWORDS = ("sample", "hidden_states")


class ReplayError(TypeError):
    """This pipeline's step cannot be replayed at another sample."""


def _first(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return output[0]
    return output[0] if hasattr(output, "__getitem__") else output.sample


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    a, b = a.float(), b.float()
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-3, atol=1e-5 * max(1.0, float(b.abs().max()))))


class DenoiserReplay:
    """``replay(x)`` → the model output the pipeline would have handed its scheduler at sample ``x``.

    Built from the denoiser ``calls`` (``(module, args, kwargs, output)``) of one step and the
    ``model_output`` / ``sample`` the scheduler got; raises ``ReplayError`` when they do not fit.
    """

    def __init__(self, pipeline, calls: list, model_output: torch.Tensor, timestep, sample: torch.Tensor):
        name = type(pipeline).__name__
        if len(calls) != 1:
            raise ReplayError(f"self-recurrence replays the denoiser call of a step, but {name} made {len(calls)} "
                              "calls in this step (true CFG or skip-layer guidance?); use recurrence=0")
        self.module, self.args, self.kwargs, output = calls[0]
        self.keyword = None if self.args else next((k for k in SAMPLE_KEYWORDS if k in self.kwargs), None)
        recorded = self.args[0] if self.args else self.kwargs.get(self.keyword)
        if not isinstance(recorded, torch.Tensor) or recorded.shape[0] % sample.shape[0]:
            raise ReplayError(f"self-recurrence cannot find the sample among {name}'s denoiser inputs; use recurrence=0")
        self.copies = recorded.shape[0] // sample.shape[0]
        self.dtype = recorded.dtype
        self.scheduler, self.timestep = pipeline.scheduler, timestep
        if self.copies > 2 or not _close(self._input(sample), recorded):
            raise ReplayError(f"self-recurrence cannot rebuild {name}'s denoiser input from the sample "
                              "(scale_model_input of the sample, once or twice for CFG); use recurrence=0")
        self.scale = float(getattr(pipeline, "guidance_scale", 1.0))
        out = _first(output)
        rules = [rule for rule in ([0] if self.copies == 1 else [0, 1])  # which half is the unconditional one
                 if _close(self._combine(out, rule), model_output)]
        if not rules:
            raise ReplayError(f"self-recurrence cannot reproduce {name}'s model output from its denoiser call "
                              "(guidance rescale or another combination than classifier-free guidance?); "
                              "use recurrence=0")
        self.rule, self.out_dtype = rules[0], model_output.dtype

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x] * self.copies) if self.copies > 1 else x
        scale = getattr(self.scheduler, "scale_model_input", None)
        return (scale(x, self.timestep) if scale is not None else x).to(self.dtype)

    def _combine(self, out: torch.Tensor, rule: int) -> torch.Tensor:
        if self.copies == 1:
            return out
        first, second = out.chunk(2)
        uncond, cond = (first, second) if rule == 0 else (second, first)
        return uncond + self.scale * (cond - uncond)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        model_input = self._input(x)
        if self.keyword is None:
            output = self.module(model_input, *self.args[1:], **self.kwargs)
        else:
            output = self.module(*self.args, **{**self.kwargs, self.keyword: model_input})
        return self._combine(_first(output), self.rule).to(self.out_dtype)
