"""Pretrained weights of the zoo's registered Hub repos: from the cache, or one fast Hub check.

``timm.create_model("dna_b", pretrained=True)`` left to timm alone asks huggingface_hub for
the file, which on a network error retries for about 40 s per candidate file and then ends
in a generic ``LocalEntryNotFoundError``. Here the weights are resolved first:

- offline (``HF_HUB_OFFLINE``): the cached file, or an error at once;
- online: one ``HEAD`` of the file with huggingface_hub's own metadata call (no retries,
  timeout :data:`PROBE_TIMEOUT_S`, or ``HF_HUB_ETAG_TIMEOUT`` if that is lower); if the Hub
  cannot be reached the cached file is used when there is one; if it answers, the file
  is downloaded through huggingface_hub (its cache, endpoint, token and retries).

Every failure is one :class:`~dna_zoo.errors.WeightsUnavailableError` (a ``DnaZooError``
and an ``OSError``, like huggingface_hub's own errors) naming the repo, what failed, and
how to load the authors' original checkpoint instead.
"""

from __future__ import annotations

import logging
from pathlib import Path

from dna_zoo.errors import WeightsUnavailableError

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
#: Seconds the reachability check of the Hub may take (huggingface_hub's etag timeout is 10 s).
PROBE_TIMEOUT_S = 4.0


def original_checkpoint_hint(variant: str) -> str:
    letter = variant.rsplit("_", 1)[-1]
    return (
        f'load the authors\' original checkpoint with timm.create_model("{variant}", pretrained=True, '
        f'pretrained_cfg_overlay=dict(file="DNA_{letter}.pth.tar")), or convert it once with '
        f"`dna hub convert DNA_{letter}.pth.tar --model {variant} --out DIR`"
    )


def fetch_hub_weights(variant: str, repo_id: str, *, revision: str | None = None) -> Path:
    """The local path of ``repo_id``'s weights file, or one clear error within seconds."""
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = constants.ENDPOINT
    hint = original_checkpoint_hint(variant)

    def fail(what: str) -> WeightsUnavailableError:
        return WeightsUnavailableError(
            f"cannot load pretrained weights of {variant} from the Hub repo {repo_id}: {what}",
            hint=hint,
            repo_id=repo_id,
        )

    if constants.is_offline_mode():
        cached = _cached(repo_id, revision)
        if cached is None:
            raise fail(f"{WEIGHTS_FILE} is not in the local cache and offline mode is on (HF_HUB_OFFLINE)")
        return cached
    timeout = min(PROBE_TIMEOUT_S, float(constants.HF_HUB_ETAG_TIMEOUT))
    try:
        get_hf_file_metadata(hf_hub_url(repo_id, WEIGHTS_FILE, revision=revision), timeout=timeout)
    except RepositoryNotFoundError as e:
        raise fail(f"the repository does not exist on {where} (or is private)") from e
    except RevisionNotFoundError as e:
        raise fail(f"revision {revision} not found on {where}") from e
    except EntryNotFoundError as e:
        raise fail(f"the repository on {where} has no {WEIGHTS_FILE}") from e
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        return _cached_or(fail, repo_id, revision, f"the Hub at {where} answered HTTP {status}", e)
    except Exception as e:  # any network failure (the HTTP library differs between releases)
        return _cached_or(fail, repo_id, revision, f"the Hub at {where} is not reachable ({_reason(e)})", e)
    try:
        return Path(hf_hub_download(repo_id, WEIGHTS_FILE, revision=revision))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        raise fail(f"downloading {WEIGHTS_FILE} from {where} failed ({_reason(e)})") from e


def _cached(repo_id: str, revision: str | None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, WEIGHTS_FILE, revision=revision)
    return Path(found) if isinstance(found, str) else None


def _cached_or(fail, repo_id: str, revision: str | None, what: str, cause: Exception) -> Path:
    cached = _cached(repo_id, revision)
    if cached is None:
        raise fail(f"{what}, and {WEIGHTS_FILE} is not in the local cache") from cause
    logger.warning("%s; using the cached %s of %s", what, WEIGHTS_FILE, repo_id)
    return cached


def _reason(e: BaseException) -> str:
    text = " ".join(str(e).split())[:120]
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
