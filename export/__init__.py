"""dna_zoo.export: export formats behind one registry, every artifact checked against torch.

``export_artifact(model_spec, fmt, out_dir, *, weights=None, force=False, progress=None, **options)``
is the entry point; :mod:`dna_zoo.export.registry` lists the formats.
"""

from dna_zoo.export.api import export_artifact, latest_search_result
from dna_zoo.export.artifact import Artifact, ArtifactManifest, load_manifest, read_manifest
from dna_zoo.export.registry import FORMATS, get_format

__all__ = [
    "FORMATS",
    "Artifact",
    "ArtifactManifest",
    "export_artifact",
    "get_format",
    "latest_search_result",
    "load_manifest",
    "read_manifest",
]
