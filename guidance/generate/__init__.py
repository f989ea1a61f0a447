"""Generation drivers: run a diffusers pipeline (any that takes ``generator``, ``latents`` or
``image``/``strength`` and returns ``output_type="pt"`` images) and return ``Ranked`` samples.
The loops they run live in the pure core (``guidance.ranked``, ``guidance.search``); the
ComfyUI nodes run the same loops over ComfyUI's samplers."""
