"""Identity Load Image Folder: the images of a folder inside ComfyUI's input directory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from comfy_api.latest import io

from ..scorers.images import list_images, load_image
from .common import inside


class LoadImageFolder(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="IDGuideLoadImageFolder",
            display_name="Identity Load Image Folder",
            category="idguide",
            description="Loads every image of a folder in ComfyUI's input directory as one batch, each "
                        "resized to size×size (the square resize ID-Sim and NearID apply anyway).",
            inputs=[
                io.String.Input("folder", default="candidates", tooltip="a folder inside ComfyUI's input directory"),
                io.Int.Input("size", default=512, min=64, max=2048, step=8),
            ],
            outputs=[io.Image.Output(display_name="images"),
                     io.String.Output(display_name="names", is_output_list=True)],
        )

    @classmethod
    def execute(cls, folder, size) -> io.NodeOutput:
        import folder_paths

        path = inside(folder_paths.get_input_directory(), folder, "folder")
        if not path.is_dir():
            raise NotADirectoryError(f"no folder '{folder}' in {folder_paths.get_input_directory()}")
        files = list_images(path)
        if not files:
            raise FileNotFoundError(f"'{folder}' holds no images")
        images = [F.interpolate(load_image(f)[None], size=(size, size), mode="bicubic", antialias=True).clamp(0, 1)
                  for f in files]
        return io.NodeOutput(torch.cat(images).movedim(1, -1), [f.name for f in files])
