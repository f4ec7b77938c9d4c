"""dna-zoo: DNA (block-wisely supervised NAS with knowledge distillation) for deployment.

Importing this package registers ``dna_a``..``dna_d`` and ``dna_net`` with timm.
"""

from dna_zoo.arch import ArchEncoding, Layer, Op, load_encoding
from dna_zoo.errors import DnaZooError
from dna_zoo.models import PUBLISHED, published_encoding

__version__ = "0.1.0"

__all__ = [
    "PUBLISHED",
    "ArchEncoding",
    "DnaZooError",
    "Layer",
    "Op",
    "__version__",
    "load_encoding",
    "published_encoding",
]
