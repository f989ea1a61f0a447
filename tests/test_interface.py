"""The shared interface: gradients, determinism, batching, input handling, clear errors."""

import pytest
import torch

import idguide
from idguide import Embedding, ImageInputError

from conftest import ALL, FOLDER, scorer_for

@pytest.mark.parametrize("name", ALL)
def test_gradient_reaches_pixels_and_is_finite(name, weights_root, batch):
    options = {"mode": "joint"} if name.startswith("idsim") else {}
    scorer = scorer_for(name, weights_root, **options)
    reference = scorer.embed(batch[:1])  # no grad: embedded once, under inference mode
    images = batch[1:].clone().requires_grad_(True)
    loss = -scorer.similarity(reference, scorer.embed(images)).sum()
    loss.backward()
    assert images.grad is not None and torch.isfinite(images.grad).all()
    assert images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in scorer.parameters())


@pytest.mark.parametrize("name", ALL)
def test_deterministic_and_batch_equals_one_by_one(name, weights_root, batch):
    scorer = scorer_for(name, weights_root)
    together = scorer.embed(batch).vector
    assert torch.equal(together, scorer.embed(batch).vector)
    one_by_one = torch.cat([scorer.embed(batch[i : i + 1]).vector for i in range(len(batch))])
    assert torch.allclose(together, one_by_one, atol=1e-5)
    chunked = scorer.embed(batch, batch_size=3).vector
    assert torch.allclose(together, chunked, atol=1e-5)


def test_no_grad_path_runs_in_inference_mode_but_returns_normal_tensors(weights_root, batch):
    scorer = scorer_for("nearid", weights_root)
    emb = scorer.embed(batch)
    assert not emb.vector.is_inference()
    x = batch.clone().requires_grad_(True)
    (scorer.embed(x).vector * emb.vector).sum().backward()  # reference reused inside autograd
    assert x.grad is not None


def test_score_reuses_embedding_and_broadcasts(weights_root, batch):
    scorer = scorer_for("clip-i", weights_root)
    reference = scorer.embed(batch[:1])
    from_embedding = scorer.score(reference, batch[1:])
    from_images = scorer.score(batch[:1], batch[1:])
    assert from_embedding.shape == (3,) and torch.allclose(from_embedding, from_images)
    matrix = scorer.similarity_matrix(scorer.embed(batch), scorer.embed(batch[1:]))
    assert matrix.shape == (4, 3)
    assert torch.allclose(matrix[0], from_embedding, atol=1e-6)
    assert torch.allclose(torch.diagonal(matrix[1:]), torch.ones(3), atol=1e-5)
    with pytest.raises(ImageInputError, match="cannot pair 2 embeddings with 3"):
        scorer.similarity(scorer.embed(batch[:2]), scorer.embed(batch[1:]))


def test_an_image_is_most_similar_to_itself(weights_root, photos):
    """Direction and plumbing on differently sized photos (random weights: nothing more to expect)."""
    scorer = scorer_for("idsim-dinov2-vitb14", weights_root)
    emb = scorer.embed(list(photos))  # list of differently sized images
    sims = scorer.similarity_matrix(emb, emb)
    assert torch.equal(sims.argmax(dim=1), torch.arange(len(photos)))


def test_identity_ranks_the_same_subject_above_other_subjects():
    """On a scorer trained for identity (the proving ground's guide), through the public interface: a
    fresh render of an identity, in a context never seen in training, is closest to another fresh render
    of the same identity — above every other identity, its twin (same category and colours, another
    pattern density) included."""
    from idguide_proving.world import IDENTITIES, fresh_renders

    scorer = idguide.load_scorer("proving-guide", device="cpu")
    identities = [0, 1, 10, 11, 20, 21, 30, 31]  # four pairs of twins
    assert [IDENTITIES[i].twin for i in identities] == [1, 0, 11, 10, 21, 20, 31, 30]
    sims = scorer.similarity_matrix(scorer.embed(fresh_renders(identities)),
                                    scorer.embed(fresh_renders(identities, offset=100)))
    assert torch.equal(sims.argmax(dim=1), torch.arange(len(identities)))
    others = sims.clone().fill_diagonal_(-1.0).max(dim=1).values
    assert (torch.diagonal(sims) - others).min() > 0.3, (torch.diagonal(sims), others)


def test_grey_and_rgba_follow_pil_convert(weights_root, batch):
    scorer = scorer_for("siglip2", weights_root)
    grey = batch[:, :1]
    assert torch.allclose(scorer.embed(grey).vector, scorer.embed(grey.expand(-1, 3, -1, -1)).vector)
    rgba = torch.cat([batch, torch.rand_like(batch[:, :1])], dim=1)
    assert torch.equal(scorer.embed(rgba).vector, scorer.embed(batch).vector)  # alpha dropped
    grey_alpha = torch.cat([grey, torch.zeros_like(grey)], dim=1)
    assert torch.allclose(scorer.embed(grey_alpha).vector, scorer.embed(grey).vector)


@pytest.mark.parametrize(
    "bad,message",
    [
        (torch.rand(3, 32, 32), "4-d tensor"),
        (torch.rand(1, 5, 32, 32), "channels"),
        (torch.rand(0, 3, 32, 32), "empty"),
        (torch.rand(1, 3, 32, 32) * 255, "values must lie in \\[0, 1\\]"),
        (torch.rand(1, 3, 32, 32) * 2 - 1, "values must lie in \\[0, 1\\]"),
        (torch.full((1, 3, 32, 32), float("nan")), "NaN"),
        ((torch.rand(1, 3, 32, 32) * 255).to(torch.uint8), "float tensor"),
        ([], "empty"),
        ("image.png", "expected a tensor"),
    ],
)
def test_bad_inputs_raise_clear_errors(bad, message, weights_root):
    scorer = scorer_for("nearid", weights_root)
    with pytest.raises(ImageInputError, match=message):
        scorer.embed(bad)


def test_mismatched_devices(weights_root, batch):
    scorer = scorer_for("nearid", weights_root)
    with pytest.raises(ImageInputError, match="nearid: images are on meta but the scorer is on cpu"):
        scorer.embed(torch.empty(1, 3, 32, 32, device="meta"))
    emb = scorer.embed(batch)
    other = Embedding(emb.vector.to("meta"))
    with pytest.raises(ImageInputError, match="different devices"):
        scorer.similarity(emb, other)


def test_unknown_scorer_and_option():
    with pytest.raises(ValueError, match="unknown scorer 'neard'. Did you mean nearid"):
        idguide.load_scorer("neard")
    with pytest.raises(TypeError, match="scorer 'nearid' has no option 'mode'; it takes no options"):
        idguide.load_scorer("nearid", mode="cls")
    with pytest.raises(ValueError, match="mode must be 'cls', 'patch' or 'joint'"):
        idguide.load_scorer("idsim-dinov3-vitl16", weights="nonexistent-dir/x", mode="bogus")


def test_available_scorers_lists_every_name():
    names = idguide.available_scorers()
    for name in ["nearid", "idsim", *ALL, "idsim-dinov3-vitb16", "idsim-dinov2-vitl14"]:
        assert name in names and names[name]


def test_bf16(weights_root, batch):
    scorer = idguide.load_scorer("nearid", weights=weights_root / FOLDER["nearid"], dtype="bf16")
    assert scorer.dtype == torch.bfloat16
    full = scorer_for("nearid", weights_root).embed(batch).vector
    half = scorer.embed(batch).vector
    assert half.dtype == torch.float32 and (half - full).abs().max() < 0.05
