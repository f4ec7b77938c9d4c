import os
import tempfile

import pytest

# Never touch the user's Hugging Face or dna-zoo caches from tests. huggingface_hub reads
# these variables once, at import (timm imports it while test modules are collected), so
# they are set here, before any test module is imported; each test then gets its own dirs.
_SESSION_HOME = tempfile.mkdtemp(prefix="dna-zoo-tests-")
os.environ["HF_HOME"] = os.path.join(_SESSION_HOME, "hf")
os.environ["HF_HUB_CACHE"] = os.path.join(_SESSION_HOME, "hf", "hub")
os.environ["DNA_ZOO_CACHE"] = os.path.join(_SESSION_HOME, "dna_zoo")
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"


@pytest.fixture(autouse=True)
def _isolated_hf_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / "xdg"))
    monkeypatch.setenv("DNA_ZOO_CACHE", str(home / "dna_zoo"))


@pytest.fixture(autouse=True)
def _seed():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(2)
