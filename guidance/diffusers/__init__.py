"""The diffusers adapters: a pipeline's steps changed through ``PipelineCallback``s, no pipeline edit.

``callback`` (identity guidance), ``particles`` (particle steering's callback), ``step_guard``
(how either acts on the next step), ``schedulers`` (each scheduler's clean estimate),
``replay`` (the denoiser re-run for self-recurrence), ``decoder`` (the pipeline's
differentiable decoder, one factory for every method). These modules import diffusers;
this package itself does not, so ``import idguide`` stays light."""
