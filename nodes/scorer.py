"""Load Identity Scorer and Identity Reference."""

from __future__ import annotations

from comfy_api.latest import io

from ..scorers import WeightsError, available_scorers
from .common import ComfyReference, ReferenceSocket, ScorerSocket, comfy_scorer, resolve_weights, to_bchw, weight_choices


class LoadIdentityScorer(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideLoadScorer",
            display_name="Load Identity Scorer",
            category="idguide",
            description="Loads an identity metric (NearID, ID-Sim, CLIP-I, DINO-I, SigLIP2); ComfyUI caches and unloads it like its own models.",
            inputs=[
                io.Combo.Input("scorer", options=list(available_scorers()), default="nearid",
                               tooltip="the metric; see the README for what each one measures"),
                io.Combo.Input("weights", options=weight_choices(), default=weight_choices()[0],
                               tooltip="a folder in models/idguide, or the official source"),
                io.Combo.Input("mode", options=["cls", "patch", "joint"], default="cls",
                               tooltip="ID-Sim only: cls (the paper's metric), patch or joint"),
                io.Combo.Input("precision", options=["fp32", "bf16", "fp16"], default="fp32"),
            ],
            outputs=[ScorerSocket.Output(display_name="scorer")],
        )

    @classmethod
    def execute(cls, scorer, weights, mode, precision) -> io.NodeOutput:
        idsim = scorer.startswith("idsim")
        if mode != "cls" and not idsim:
            raise ValueError(f"mode '{mode}' is an ID-Sim option and has no effect on {scorer}: set mode to cls")
        options = {"mode": mode} if idsim else {}
        try:
            handle = comfy_scorer(scorer, resolve_weights(weights), options, precision)
        except WeightsError as error:
            raise WeightsError(f"weights '{weights}' do not load as {scorer}: {error}") from None
        return io.NodeOutput(handle)


class IdentityReferenceNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideReference",
            display_name="Identity Reference",
            category="idguide",
            description="Embeds one or more reference images of one identity once, for every downstream node.",
            inputs=[
                ScorerSocket.Input("scorer"),
                io.Image.Input("images", tooltip="one or more views of the identity"),
                io.Combo.Input("reference_mode", options=["mean", "best"], default="mean",
                               tooltip="several references: average over them, or match the closest one"),
                io.Mask.Input("mask", optional=True, tooltip="keep only the subject: outside is set to grey"),
            ],
            outputs=[ReferenceSocket.Output(display_name="reference")],
        )

    @classmethod
    def execute(cls, scorer, images, reference_mode, mask=None) -> io.NodeOutput:
        pixels = to_bchw(images)
        if mask is not None:
            m = mask if mask.dim() == 3 else mask[None]
            if m.shape[0] not in (1, pixels.shape[0]):
                raise ValueError(f"{m.shape[0]} masks for {pixels.shape[0]} images")
            if m.shape[-2:] != pixels.shape[-2:]:
                raise ValueError(f"mask {tuple(m.shape[-2:])} and images "
                                 f"{tuple(pixels.shape[-2:])} differ in size")
            m = m[:, None].to(pixels)
            pixels = pixels * m + 0.5 * (1 - m)
        return io.NodeOutput(ComfyReference(scorer, pixels, reference_mode))
