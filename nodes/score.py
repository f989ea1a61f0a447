"""Identity Score and Identity Rank / Filter."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..drawing import draw_labels
from ..scorers.ranking import rank, readable
from .common import ReferenceSocket, embed_all, to_bchw


def scores_for(reference, images: torch.Tensor, progress: bool = True) -> list[float]:
    """Readable scores (100 × similarity) of an IMAGE batch against an ``ID_REFERENCE``."""
    embedding = embed_all(reference.handle, to_bchw(images), progress=progress)
    with torch.inference_mode():
        similarity = reference.similarity(embedding)
    return [readable(v) for v in similarity.float().cpu().tolist()]


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
            description="Scores each image against the reference on a 0-100 scale (100 × similarity; "
                        "100 = identical) and writes each score onto its image.",
            inputs=[ReferenceSocket.Input("reference"), io.Image.Input("images")],
            outputs=[io.Float.Output(display_name="scores", is_output_list=True),
                     io.String.Output(display_name="table"),
                     io.Image.Output(display_name="labelled", tooltip="the images with their score drawn on")],
        )

    @classmethod
    def execute(cls, reference, images) -> io.NodeOutput:
        scores = scores_for(reference, images)
        labelled = draw_labels(images.movedim(-1, 1).float(), [f"{s:.1f}" for s in scores]).movedim(1, -1)
        return io.NodeOutput(scores, table(scores, list(range(len(scores)))), labelled.to(images))


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
        scores = scores_for(reference, images)
        result = rank(scores, top_k or None, threshold or None, on_empty=if_none_pass)
        rejected = images[result.rejected] if result.rejected else torch.zeros_like(images[:1])
        return io.NodeOutput(images[result.kept], [scores[i] for i in result.kept], result.kept, rejected,
                             table(scores, result.kept))
