"""Identity Score and Identity Rank / Filter."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..scorers.ranking import rank, readable
from .common import ReferenceSocket, to_bchw


def readable_scores(reference, pixels: torch.Tensor) -> list[float]:
    """Readable scores (100 × similarity) of ``[B,3,H,W]`` images against an ``ID_REFERENCE``."""
    with torch.inference_mode():
        similarity = reference.similarity(reference.scorer.embed(pixels.to(reference.scorer.device)))
    return [readable(v) for v in similarity.float().cpu().tolist()]


def scores_for(node: str, reference, images: torch.Tensor, batch_size: int = 8) -> list[float]:
    """Scores of an IMAGE batch, in batches, cancellable, with progress."""
    import comfy.model_management as mm
    import comfy.utils

    pixels = to_bchw(images, node)
    bar = comfy.utils.ProgressBar(pixels.shape[0])
    scores = []
    for start in range(0, pixels.shape[0], batch_size):
        mm.throw_exception_if_processing_interrupted()
        scores += readable_scores(reference, pixels[start : start + batch_size])
        bar.update(min(batch_size, pixels.shape[0] - start))
    return scores


def table(scores: list[float], order: list[int]) -> str:
    lines = ["rank  index  score"]
    lines += [f"{r:>4}  {i:>5}  {scores[i]:6.2f}" for r, i in enumerate(order, 1)]
    return "\n".join(lines)


class IdentityScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideScore",
            display_name="Identity Score",
            category="idguide",
            description="Scores each image against the reference on a 0-100 scale (100 × similarity).",
            inputs=[ReferenceSocket.Input("reference"), io.Image.Input("images")],
            outputs=[io.Float.Output(display_name="scores", is_output_list=True),
                     io.String.Output(display_name="table")],
        )

    @classmethod
    def execute(cls, reference, images) -> io.NodeOutput:
        scores = scores_for("Identity Score", reference, images)
        return io.NodeOutput(scores, table(scores, list(range(len(scores)))))


class IdentityRank(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideRank",
            display_name="Identity Rank / Filter",
            category="idguide",
            description="Sorts a batch by identity score; keeps the top k and/or those above a threshold.",
            inputs=[
                ReferenceSocket.Input("reference"),
                io.Image.Input("images"),
                io.Int.Input("top_k", default=0, min=0, max=4096, tooltip="0 = keep all that pass"),
                io.Float.Input("threshold", default=0.0, min=-100.0, max=100.0, step=0.1,
                               tooltip="minimum score (0-100 scale); 0 = no threshold"),
                io.Combo.Input("if_none_pass", options=["keep_best", "error"], default="keep_best"),
            ],
            outputs=[
                io.Image.Output(display_name="images"),
                io.Float.Output(display_name="scores", is_output_list=True),
                io.Int.Output(display_name="indices", is_output_list=True),
                io.Image.Output(display_name="rejected"),
                io.String.Output(display_name="table"),
            ],
        )

    @classmethod
    def execute(cls, reference, images, top_k, threshold, if_none_pass) -> io.NodeOutput:
        scores = scores_for("Identity Rank / Filter", reference, images)
        try:
            result = rank(scores, top_k or None, threshold or None, on_empty=if_none_pass)
        except ValueError as error:
            raise ValueError(f"Identity Rank / Filter: {error}") from None
        rejected = images[result.rejected] if result.rejected else torch.zeros_like(images[:1])
        return io.NodeOutput(images[result.kept], [scores[i] for i in result.kept], result.kept, rejected,
                             table(scores, result.kept))
