"""NearID and the baselines against transformers' own models loaded the official way."""

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import idguide


def pixels(images, resize, crop, mean, std):
    """Resize (square tuple or shortest edge) → centre crop → normalise, written out here."""
    h, w = images.shape[-2:]
    if isinstance(resize, tuple):
        size = resize
    else:
        size = (resize, int(resize * w / h)) if h <= w else (int(resize * h / w), resize)
    x = F.interpolate(images, size=size, mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    if crop:
        top, left = (x.shape[-2] - crop) // 2, (x.shape[-1] - crop) // 2
        x = x[..., top : top + crop, left : left + crop]
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def check(scorer, images, expected):
    emb = scorer.embed(images)
    assert torch.allclose(emb.vector, expected, atol=1e-5), (emb.vector - expected).abs().max()
    sims = scorer.similarity(emb[0], emb[1:])
    assert torch.allclose(sims, expected[1:] @ expected[0], atol=1e-5)
    assert sims.std() > 1e-4


def test_nearid_matches_official_class(weights_root, batch):
    """NearIDModel: SiglipVisionModel(vision_config) under `backbone`, pooler_output, L2-normalised."""
    from transformers import SiglipVisionConfig, SiglipVisionModel

    folder = weights_root / "nearid-siglip2"
    config = json.loads((folder / "config.json").read_text())
    tower = SiglipVisionModel(SiglipVisionConfig(**{k: v for k, v in config["vision_config"].items()
                                                    if k != "model_type"}))
    state = load_file(str(folder / "model.safetensors"))
    assert all(k.startswith("backbone.vision_model.") for k in state) and state[next(iter(state))].dtype == torch.float16
    own = tower.state_dict()
    tower.load_state_dict({k: state["backbone.vision_model." + k].float() for k in own}, strict=True)
    x = pixels(batch, (384, 384), None, (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        expected = unit(tower(pixel_values=x).pooler_output)
    scorer = idguide.load_scorer("nearid", weights=folder)
    assert scorer.embed(batch).vector.shape == (4, 64)
    check(scorer, batch, expected)


@pytest.mark.parametrize("name,readout", [("siglip2", "mean"), ("siglip2-map", "map")])
def test_siglip2_readouts(name, readout, weights_root, batch):
    from transformers import SiglipVisionModel

    folder = weights_root / "siglip2-so400m-patch14-384"
    tower = SiglipVisionModel.from_pretrained(folder).eval()
    x = pixels(batch, (384, 384), None, (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        out = tower(pixel_values=x)
    expected = unit(out.last_hidden_state.mean(1) if readout == "mean" else out.pooler_output)
    check(idguide.load_scorer(name, weights=folder), batch, expected)


def test_clip_i_matches_get_image_features(weights_root, batch):
    from transformers import CLIPModel

    folder = weights_root / "clip-vit-large-patch14"
    model = CLIPModel.from_pretrained(folder).eval()
    x = pixels(batch, 224, 224, (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
    with torch.no_grad():
        features = model.get_image_features(pixel_values=x)
    features = getattr(features, "pooler_output", features)  # transformers 5 returns an output object
    check(idguide.load_scorer("clip-i", weights=folder), batch, unit(features))


def test_dino_i_matches_transformers_dinov2_cls(weights_root, batch):
    from transformers import Dinov2Model

    folder = weights_root / "dinov2-large"
    model = Dinov2Model.from_pretrained(folder).eval()
    x = pixels(batch, 256, 224, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        expected = unit(model(pixel_values=x).last_hidden_state[:, 0])
    check(idguide.load_scorer("dino-i", weights=folder), batch, expected)
