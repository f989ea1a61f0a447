"""The interface every scorer shares: embed once, compare many times, differentiably."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, Sequence, TypeVar, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import checks
from .embedding import Embedding
from .errors import ImageInputError
from .images import ImageBatch, as_batch
from .preprocess import Preprocess

EmbeddingOrImages = Union[Embedding, ImageBatch]


Item = TypeVar("Item")


class Scorer(nn.Module):
    """Base class: subclasses implement ``encode`` (model input → Embedding).

    ``similarity`` is "higher = more alike"; the default is the cosine of the (unit) vectors,
    which is what CLIP-I, DINO-I, SigLIP2 and NearID use. ``distance`` is ``1 - similarity``.
    """

    name: str = "scorer"

    def __init__(self, preprocess: Preprocess):
        super().__init__()
        self.preprocess = preprocess

    # --- model -----------------------------------------------------------------------------
    def encode(self, pixels: torch.Tensor) -> Embedding:
        raise NotImplementedError

    @property
    def tag(self) -> str:
        """What made an embedding: the scorer and any option that changes its embeddings."""
        return self.name

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def set_gradient_checkpointing(self, enabled: bool = True) -> bool:
        """Let differentiable passes recompute each transformer block in the backward pass instead of
        keeping its activations: identity guidance then holds about one block's activations, not
        all of them (scores and gradients are unchanged). Returns whether this scorer supports it
        (the DINO backbones of ID-Sim and DINO-I do)."""
        blocks = [m for m in self.modules() if hasattr(m, "checkpointing")]
        for module in blocks:
            module.checkpointing = bool(enabled)
        return bool(blocks)

    def embed(self, images: ImageBatch, batch_size: int | None = None) -> Embedding:
        """Embed ``[B,3,H,W]`` RGB in [0, 1] (or a list of differently sized images).

        Differentiable when the input requires grad; otherwise runs under
        ``torch.inference_mode`` and returns ordinary tensors usable in later autograd code.
        ``batch_size`` bounds how many images go through the model at once.
        """
        return self._embed(images, batch_size, "images")

    def _embed(self, images: ImageBatch, batch_size: int | None, parameter: str) -> Embedding:
        if batch_size is not None:
            checks.integer("batch_size", batch_size)
        chunks = as_batch(images, f"{self.name}: {parameter}", self.device)
        need_grad = torch.is_grad_enabled() and any(c.requires_grad for c in chunks)
        with nullcontext() if need_grad else torch.inference_mode():
            pixels = torch.cat([self.preprocess(c.float()) for c in chunks]).to(self.dtype)
            size = batch_size or pixels.shape[0]
            parts = [self.encode(pixels[i : i + size]) for i in range(0, pixels.shape[0], size)]
            embedding = parts[0] if len(parts) == 1 else Embedding.cat(parts)
        patches = embedding.patches
        if not need_grad and not torch.is_inference_mode_enabled():
            # Inference tensors cannot take part in autograd later (e.g. a guidance loss).
            patches = None if patches is None else patches.clone()
            return Embedding(embedding.vector.clone(), patches, embedding.grid, self.tag)
        return Embedding(embedding.vector, patches, embedding.grid, self.tag)

    def embed_batches(self, items: Sequence[Item], batch_size: int, load: Callable[[Item], torch.Tensor] | None = None,
                      advance: Callable[[int], None] | None = None) -> Embedding:
        """Embed many images ``batch_size`` at a time, each loaded (``load(item)`` → ``[3,H,W]``,
        e.g. from a file) only when its batch comes; ``advance(count)`` after each batch reports
        progress (and may raise to cancel). The one loop the CLI and the nodes embed with."""
        checks.integer("batch_size", batch_size)
        parts = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            parts.append(self.embed([(item if load is None else load(item)).to(self.device) for item in chunk]))
            if advance is not None:
                advance(len(chunk))
        if not parts:
            raise ImageInputError(f"{self.name}: no images to embed")
        return Embedding.cat(parts)

    def encode_patches(self, pixels: torch.Tensor) -> torch.Tensor:
        """Model input → patch tokens ``[B, N, D]`` in the scorer's own feature space."""
        raise NotImplementedError(f"{self.name} gives no patch tokens")

    def patch_tokens(self, images: ImageBatch) -> tuple[torch.Tensor, tuple[int, int]]:
        """Unit-length patch tokens ``[B, N, D]`` and their ``(rows, cols)`` grid.

        For maps of *where* two images agree (``scorers.maps``); they go through the same
        preprocessing as ``embed``, so a map covers what the metric sees.
        """
        chunks = as_batch(images, f"{self.name}: images", self.device)
        with torch.inference_mode():
            pixels = torch.cat([self.preprocess(c.float()) for c in chunks]).to(self.dtype)
            tokens = F.normalize(self.encode_patches(pixels).float(), dim=-1)
        rows, cols = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        if tokens.shape[1] != rows * cols:
            raise ValueError(f"{self.name}: {tokens.shape[1]} patch tokens do not fill a {rows}x{cols} grid")
        return tokens.clone(), (rows, cols)

    @property
    def patch_size(self) -> int:
        raise NotImplementedError(f"{self.name} gives no patch tokens")

    def as_embedding(self, x: EmbeddingOrImages, parameter: str = "images") -> Embedding:
        """``x`` itself when it is an ``Embedding`` (checked), else its images embedded; errors name ``parameter``."""
        if isinstance(x, Embedding):
            return self.check(x, parameter)
        if isinstance(x, torch.Tensor) and x.dim() == 2:
            raise TypeError(f"{parameter}: a {tuple(x.shape)} tensor is neither images [B,3,H,W] nor an Embedding; "
                            f"to reuse embeddings pass the Embedding that {self.name}.embed returned")
        return self._embed(x, None, parameter)

    def check(self, embedding: Embedding, parameter: str = "embedding") -> Embedding:
        """Refuse what is not an ``Embedding`` (a plain tensor has no record of its scorer), one made by
        another scorer (or the same one with other options), and NaN or infinite values."""
        if not isinstance(embedding, Embedding):
            hint = (f" (a tensor does not say which scorer made it: pass what {self.name}.embed(images) returned)"
                    if isinstance(embedding, torch.Tensor) else "")
            raise TypeError(f"{parameter} must be an Embedding (from {self.name}.embed), got "
                            f"{checks.given(embedding)}{hint}")
        if embedding.scorer is not None and embedding.scorer != self.tag:
            raise ImageInputError(f"{self.tag} cannot compare an embedding made by {embedding.scorer}; "
                                  f"embed the images with this scorer")
        for part in (embedding.vector, embedding.patches):
            if part is not None and part.device.type != "meta":
                bad = int((~torch.isfinite(part.detach())).sum())  # one sync per part
                if bad:
                    raise ValueError(f"{parameter}: {bad} embedding value(s) are NaN or infinite")
        return embedding

    # --- comparison ------------------------------------------------------------------------
    def similarity(self, a: Embedding, b: Embedding) -> torch.Tensor:
        """Pairwise similarity ``[B]``; a batch-1 side is broadcast against the other."""
        return self._similarity(*paired(self.check(a, "a"), self.check(b, "b")))

    def similarity_matrix(self, a: Embedding, b: Embedding) -> torch.Tensor:
        """All-pairs similarity ``[A, B]``."""
        same_device(self.check(a, "a"), self.check(b, "b"))
        return self._similarity_matrix(a, b)

    # The comparisons on checked embeddings. The guidance loss calls ``_similarity_matrix`` directly:
    # it made its embeddings with this scorer, and a non-finite result there skips a step or drops a
    # particle rather than stopping the run.
    def _similarity(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return (a.vector * b.vector).sum(-1)

    def _similarity_matrix(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return a.vector @ b.vector.T

    def distance(self, a: Embedding, b: Embedding) -> torch.Tensor:
        return 1.0 - self.similarity(a, b)

    def score(self, reference: EmbeddingOrImages, images: EmbeddingOrImages) -> torch.Tensor:
        """Similarity of each image to the reference ``[B]``; pass an ``Embedding`` to reuse it."""
        return self.similarity(self.as_embedding(reference, "reference"), self.as_embedding(images, "images"))

    def extra_repr(self) -> str:
        return f"name={self.name!r}, preprocess={self.preprocess}"


def same_device(a: Embedding, b: Embedding) -> None:
    if a.device != b.device:
        raise ImageInputError(f"embeddings are on different devices: {a.device} and {b.device}")


def paired(a: Embedding, b: Embedding) -> tuple[Embedding, Embedding]:
    """Check two embeddings can be compared pairwise (equal batch, or one side of 1)."""
    same_device(a, b)
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise ImageInputError(
            f"cannot pair {len(a)} embeddings with {len(b)}: use equal batch sizes, a single "
            "reference, or similarity_matrix for all pairs"
        )
    return a, b


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.cosine_similarity(a, b, dim=-1)
