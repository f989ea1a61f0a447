"""Patch similarity maps, heat-map overlays, score labels and matrix figures."""

import pytest
import torch
import torch.nn.functional as F

from idguide.drawing import colormap, draw_labels, figure_to_tensor, heatmap_overlay, matrix_figure
from idguide.scorers.maps import map_to_image, reference_patches, similarity_map

from conftest import ALL, scorer_for


@pytest.mark.parametrize("name", ALL)
def test_an_image_matches_itself_everywhere_and_the_map_is_a_best_match(name, weights_root, batch):
    scorer = scorer_for(name, weights_root)
    tokens, (rows, cols) = scorer.patch_tokens(batch)
    assert tokens.shape[:2] == (4, rows * cols)
    assert torch.allclose(tokens.norm(dim=-1), torch.ones(()), atol=1e-5)
    itself = similarity_map(scorer, reference_patches(scorer, batch[:1]), batch[:1])
    assert itself.shape == (1, rows, cols)
    assert torch.allclose(itself, torch.ones(()), atol=1e-4)
    # Against two other photographs: each patch's best cosine over both references' patches, by brute force.
    maps = similarity_map(scorer, reference_patches(scorer, batch[2:]), batch[:2])
    references = tokens[2:].reshape(-1, tokens.shape[-1])
    for b in range(2):
        for p in (0, rows * cols // 2, rows * cols - 1):
            brute = max(F.cosine_similarity(tokens[b, p], r, dim=0).item() for r in references)
            assert maps[b, p // cols, p % cols].item() == pytest.approx(brute, abs=1e-5)
    assert maps.max() < 1.0 - 1e-3  # other photographs do not match perfectly anywhere


def test_idsim_patch_tokens_are_the_patch_head_features_of_embed(weights_root, batch):
    scorer = scorer_for("idsim-dinov2-vitb14", weights_root, mode="patch")
    tokens, grid = scorer.patch_tokens(batch)
    embedding = scorer.embed(batch)
    assert grid == embedding.grid
    assert torch.allclose(tokens, embedding.patches, atol=1e-5)


def test_a_centre_crop_leaves_the_borders_unseen(weights_root, batch):
    scorer = scorer_for("clip-i", weights_root)  # shortest edge 224, centre crop 224
    maps = similarity_map(scorer, reference_patches(scorer, batch[:1]), batch)
    full, seen = map_to_image(scorer, maps, 96, 128)
    # 96x128 → 224x298, crop left (298-224)//2 = 37 resized px = 15.9 input px on each side.
    assert full.shape == (4, 96, 128)
    assert not seen[:, :16].any() and not seen[:, 112:].any() and seen[:, 16:112].all()
    assert (full[:, :, :16] == 0).all()
    no_crop, seen = map_to_image(scorer_for("nearid", weights_root), maps, 96, 128)
    assert seen.all()


def test_overlay_colours_low_blue_high_red_and_dims_unseen_pixels():
    images = torch.full((2, 3, 8, 8), 0.5)
    maps = torch.zeros(2, 8, 8)
    maps[1] = 1.0
    seen = torch.ones(8, 8, dtype=torch.bool)
    seen[:, :2] = False
    out = heatmap_overlay(images, maps, seen, alpha=1.0)
    low, high = out[0, :, 4, 4], out[1, :, 4, 4]
    assert torch.allclose(low, colormap(torch.tensor(0.0))) and low[2] > low[0]  # blue end
    assert torch.allclose(high, colormap(torch.tensor(1.0))) and high[0] > high[2]  # red end
    assert torch.allclose(out[:, :, :, :2], torch.tensor(0.5 * 0.35))
    with pytest.raises(ValueError, match="do not match"):
        heatmap_overlay(images, maps[:1], seen)


def test_labels_change_only_the_top_left_band():
    images = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    out = draw_labels(images, ["87.50", "12.00"])
    changed = (out - images).abs().amax(dim=(0, 1)) > 1 / 255
    rows, cols = changed.nonzero().amax(dim=0).tolist()
    assert changed.any() and rows < 20 and cols < 60
    assert torch.allclose(out[:, :, 32:], images[:, :, 32:], atol=0.5 / 255)  # only 8-bit rounding below
    with pytest.raises(ValueError, match="labels"):
        draw_labels(images, ["one"])


def test_matrix_figure_is_an_rgb_image():
    matrix = torch.tensor([[1.0, 0.2, 0.9], [0.2, 1.0, 0.1]])
    image = figure_to_tensor(matrix_figure(matrix, ["a", "b"], ["a", "b", "c"], "title"))
    assert image.dim() == 3 and image.shape[0] == 3 and image.shape[1] > 100 and image.shape[2] > 100
    assert 0 <= image.min() and image.max() <= 1 and image.std() > 0.05
