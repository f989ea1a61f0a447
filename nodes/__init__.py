"""ComfyUI nodes: the only package that imports ComfyUI. Thin classes over scorers/ and guidance/."""

from comfy_api.latest import ComfyExtension, io

from .best_of_n import IdentityBestOfN
from .evaluation import DreamBenchScore, HumanAlignment, LoadDreamBenchFolder
from .guidance import IdentityGuidance
from .images import LoadImageFolder
from .maps import IdentitySimilarityMap, IdentitySimilarityMatrix
from .particles import IdentityParticleSampler
from .score import IdentityRank, IdentityScore
from .scorer import IdentityReferenceNode, LoadIdentityScorer
from .search import IdentityNoiseSearch

NODES = [LoadIdentityScorer, IdentityReferenceNode, IdentityScore, IdentityRank, LoadImageFolder, IdentityGuidance,
         IdentityBestOfN, IdentityNoiseSearch, IdentityParticleSampler, IdentitySimilarityMap, IdentitySimilarityMatrix,
         LoadDreamBenchFolder, DreamBenchScore, HumanAlignment]


class IDGuideExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
