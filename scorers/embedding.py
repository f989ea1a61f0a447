"""What ``Scorer.embed`` returns: the per-image features a scorer compares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch


@dataclass(frozen=True)
class Embedding:
    """Embeddings of a batch of images.

    ``vector``: ``[B, D]``, the global embedding (already normalised the way the scorer
    compares it). ``patches``: ``[B, N, D]`` patch tokens, present for scorers and modes that
    compare patches (ID-Sim ``patch`` / ``joint``); ``grid`` is their ``(rows, cols)``.
    ``scorer``: the tag of the scorer (and options) that made it, so embeddings of different
    scorers are never compared. Embed a reference once and pass the ``Embedding`` around:
    indexing and ``cat`` keep it one object.
    """

    vector: torch.Tensor
    patches: torch.Tensor | None = None
    grid: tuple[int, int] | None = None
    scorer: str | None = None

    def __len__(self) -> int:
        return self.vector.shape[0]

    def __getitem__(self, index: Union[int, slice, torch.Tensor, Sequence[int]]) -> "Embedding":
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        patches = None if self.patches is None else self.patches[index]
        return Embedding(self.vector[index], patches, self.grid, self.scorer)

    @property
    def device(self) -> torch.device:
        return self.vector.device

    def to(self, device: Union[str, torch.device]) -> "Embedding":
        patches = None if self.patches is None else self.patches.to(device)
        return Embedding(self.vector.to(device), patches, self.grid, self.scorer)

    def detach(self) -> "Embedding":
        patches = None if self.patches is None else self.patches.detach()
        return Embedding(self.vector.detach(), patches, self.grid, self.scorer)

    @staticmethod
    def cat(parts: Sequence["Embedding"]) -> "Embedding":
        if not parts:
            raise ValueError("Embedding.cat: nothing to concatenate")
        with_patches = {p.patches is not None for p in parts}
        if len(with_patches) != 1:
            raise ValueError("Embedding.cat: some parts have patch tokens and some do not")
        tags = {p.scorer for p in parts}
        if len(tags) != 1:
            raise ValueError(f"Embedding.cat: parts come from different scorers ({', '.join(map(str, sorted(tags, key=str)))})")
        patches = torch.cat([p.patches for p in parts]) if parts[0].patches is not None else None
        return Embedding(torch.cat([p.vector for p in parts]), patches, parts[0].grid, parts[0].scorer)
