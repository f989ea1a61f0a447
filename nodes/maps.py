"""Identity Similarity Map (where identity is kept or lost) and Identity Similarity Matrix."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..drawing import colormap, figure_to_tensor, heatmap_overlay, matrix_figure
from ..scorers.maps import map_to_image, reference_patches, similarity_map
from ..scorers.ranking import readable
from .common import ReferenceSocket, ScorerSocket, embed_all, to_bchw


class IdentitySimilarityMap(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideSimilarityMap",
            display_name="Identity Similarity Map",
            category="idguide",
            description="Heat map of where each image matches the reference: every patch's best cosine "
                        "match among the reference's patches (red = kept, blue = lost).",
            inputs=[
                ReferenceSocket.Input("reference"),
                io.Image.Input("images"),
                io.Combo.Input("value_range", options=["batch", "absolute"], default="batch",
                               tooltip="batch: colours span the batch's lowest to highest value; "
                                       "absolute: cosine 0 (blue) to 1 (red)"),
                io.Float.Input("alpha", default=0.5, min=0.0, max=1.0, step=0.05, tooltip="heat-map opacity"),
            ],
            outputs=[io.Image.Output(display_name="overlay"), io.Image.Output(display_name="heatmap"),
                     io.Float.Output(display_name="mean", is_output_list=True,
                                     tooltip="mean patch match per image (0-100)")],
        )

    @classmethod
    def execute(cls, reference, images, value_range, alpha) -> io.NodeOutput:
        import comfy.model_management as mm

        pixels = to_bchw(images)
        scorer = reference.handle.load()
        patches = reference_patches(scorer, reference.pixels.to(scorer.device))  # once, for every batch
        parts = []
        for start in range(0, pixels.shape[0], 8):
            mm.throw_exception_if_processing_interrupted()
            parts.append(similarity_map(scorer, patches, pixels[start : start + 8]))
        maps = torch.cat(parts).cpu()
        full, seen = map_to_image(scorer, maps, pixels.shape[-2], pixels.shape[-1])
        low, high = (float(maps.min()), float(maps.max())) if value_range == "batch" else (0.0, 1.0)
        high = max(high, low + 1e-6)
        overlay = heatmap_overlay(pixels.cpu(), full, seen, low, high, alpha)
        heat = colormap((full - low) / (high - low)) * seen[None, ..., None]
        means = [readable(float(m.mean())) for m in maps]
        return io.NodeOutput(overlay.movedim(1, -1).to(images), heat.to(images), means)


class IdentitySimilarityMatrix(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideSimilarityMatrix",
            display_name="Identity Similarity Matrix",
            category="idguide",
            description="All-pairs identity scores (0-100) of two image sets, plotted; without images_b, "
                        "the set against itself, listing near-duplicate pairs.",
            inputs=[
                ScorerSocket.Input("scorer"),
                io.Image.Input("images_a"),
                io.Image.Input("images_b", optional=True),
                io.Float.Input("duplicate_threshold", default=95.0, min=0.0, max=100.0, step=0.5,
                               tooltip="pairs scoring at least this are listed as likely duplicates"),
            ],
            outputs=[io.Image.Output(display_name="plot"), io.String.Output(display_name="table"),
                     io.Float.Output(display_name="values", is_output_list=True, tooltip="row-major")],
        )

    @classmethod
    def execute(cls, scorer, images_a, duplicate_threshold, images_b=None) -> io.NodeOutput:
        a = embed_all(scorer, to_bchw(images_a, "images_a"))
        same = images_b is None
        b = a if same else embed_all(scorer, to_bchw(images_b, "images_b"))
        with torch.inference_mode():
            matrix = readable(scorer.scorer.similarity_matrix(a, b).float().cpu())
        rows = [f"a{i}" for i in range(matrix.shape[0])]
        cols = rows if same else [f"b{j}" for j in range(matrix.shape[1])]
        title = f"{scorer.scorer.name}: 100 × similarity"
        plot = figure_to_tensor(matrix_figure(matrix, rows, cols, title))
        return io.NodeOutput(plot.movedim(0, -1)[None], matrix_table(matrix, rows, cols, duplicate_threshold, same),
                             matrix.flatten().tolist())


def matrix_table(matrix: torch.Tensor, rows: list[str], cols: list[str], threshold: float, same: bool) -> str:
    lines = [",".join(["", *cols])]
    lines += [",".join([name, *(f"{v:.2f}" for v in row.tolist())]) for name, row in zip(rows, matrix)]
    pairs = [(float(matrix[i, j]), i, j) for i in range(matrix.shape[0]) for j in range(matrix.shape[1])
             if (not same or j > i) and matrix[i, j] >= threshold]
    lines.append(f"\nlikely duplicates (score >= {threshold:g}): {len(pairs)}")
    lines += [f"{rows[i]} ~ {cols[j]}  {v:.2f}" for v, i, j in sorted(pairs, reverse=True)]
    return "\n".join(lines)
