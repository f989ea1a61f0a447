"""DreamBench++ evaluation in ComfyUI: load a layout folder, score it into rating files, and
compare rating files with the human ratings. Thin nodes over ``evaluation/``."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from comfy_api.latest import io

from ..drawing import figure_to_tensor
from ..evaluation import dreambench as db
from ..evaluation import report
from ..evaluation.plots import category_bars
from ..evaluation.scoring import Layout, rating_name, score_layout
from ..scorers import checks
from ..scorers.registry import default_batch_size
from .common import ScorerSocket, inside

DatasetSocket = io.Custom("ID_DREAMBENCH")
RATINGS = "idguide_ratings"  # under ComfyUI's output directory


@dataclass(frozen=True)
class Dataset:
    layout: Layout
    method: str


class LoadDreamBenchFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideDreamBenchFolder",
            display_name="Identity DreamBench Folder",
            category="idguide/evaluation",
            description="A DreamBench++-layout folder in the input directory: references/<subject key>.jpg and "
                        "samples/<method>/<subject key>/<i>.png.",
            inputs=[io.String.Input("folder", default="dreambench"),
                    io.String.Input("method", default="dreambooth_sd", tooltip="the samples/<method> folder")],
            outputs=[DatasetSocket.Output(display_name="dataset"), io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, folder, method) -> io.NodeOutput:
        import folder_paths

        root = inside(folder_paths.get_input_directory(), folder, "folder")
        rating_name(method)  # it names the rating file the score node writes
        samples = inside(str(root / "samples"), method, "method")
        layout = Layout(samples, root / "references")
        subjects = len(set(layout.subject.values()))
        return io.NodeOutput(Dataset(layout, method), f"{method}: {len(layout.samples)} samples of {subjects} subjects")


class DreamBenchScore(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideDreamBenchScore",
            display_name="Identity DreamBench Score",
            category="idguide/evaluation",
            description="Scores every sample against its subject's reference (100 × similarity) into "
                        f"output/{RATINGS}/<name>/<method>.json. Resumes after a cancel; cancellable.",
            inputs=[ScorerSocket.Input("scorer"), DatasetSocket.Input("dataset"),
                    io.String.Input("name", default="nearid",
                                    tooltip=f"the metric's ratings folder: output/{RATINGS}/<name>, a plain name")],
            outputs=[io.String.Output(display_name="ratings", tooltip="the folder, relative to output/"),
                     io.String.Output(display_name="summary")],
        )

    @classmethod
    def execute(cls, scorer, dataset, name) -> io.NodeOutput:
        import comfy.model_management as mm
        import comfy.utils
        import folder_paths

        checks.file_name("name", name)
        relative = os.path.join(RATINGS, name)
        out = inside(os.path.join(folder_paths.get_output_directory(), RATINGS), name, "name")
        bar = comfy.utils.ProgressBar(len(dataset.layout.samples))
        model = scorer.load()
        final = score_layout(model, dataset.layout, out, dataset.method,
                        batch_size=default_batch_size(model.device),
                        progress=lambda done, total: bar.update_absolute(done, total),
                        check=mm.throw_exception_if_processing_interrupted)
        values = list(db.read_ratings(final).values())
        summary = f"{dataset.method}: {len(values)} images, mean score {sum(values) / len(values):.2f} -> {final}"
        return io.NodeOutput(relative, summary)


class HumanAlignment(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideHumanAlignment",
            display_name="Identity Human Alignment",
            category="idguide/evaluation",
            description="DreamBench++ protocol: Pearson r of the metric with each annotator group per method, "
                        "averaged; Fisher-z mean over the methods; Human-Human ceiling.",
            inputs=[
                io.String.Input("human_ratings", default="dreambench_plus",
                                tooltip="a folder in the input directory holding group1/ and group2/"),
                io.String.Input("ratings", default=f"{RATINGS}/nearid",
                                tooltip="the metric's rating files, a folder in the output directory"),
                io.Combo.Input("category", options=[*db.CATEGORIES, "all"], default="object"),
            ],
            outputs=[io.String.Output(display_name="table"), io.Image.Output(display_name="plot")],
        )

    @classmethod
    def execute(cls, human_ratings, ratings, category) -> io.NodeOutput:
        import folder_paths

        human = inside(folder_paths.get_input_directory(), human_ratings, "human_ratings")
        metric_dir = inside(folder_paths.get_output_directory(), ratings, "ratings")
        group1, group2 = (db.read_folder(g, "-cp") for g in db.find_groups(human))
        metric = db.read_folder(metric_dir, allow_missing=True)
        name = metric_dir.name
        methods = [m for m in group1 if m in metric]
        if not methods:
            raise ValueError(f"no rating file in {metric_dir} is named after a rated method "
                             f"({', '.join(sorted(group1))})")
        result = db.human_alignment(group1, group2, {name: metric}, category, methods)
        text = report.text_table(*report.alignment_rows(result))
        if len(methods) < len(group1):
            text += f"\n({len(methods)} of {len(group1)} rated methods have rating files: {', '.join(methods)})"
        text += "".join(f"\nnote: {line}" for line in report.renames(result))
        plot = figure_to_tensor(category_bars({category: result}))
        return io.NodeOutput(text, plot.movedim(0, -1)[None].to(torch.float32))
