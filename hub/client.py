"""The one place where dna-zoo talks to huggingface_hub's client and translates its errors.

Everything goes through huggingface_hub itself: its ``HfApi`` (which reads ``HF_ENDPOINT``),
its token handling (``HF_TOKEN`` or the stored login; the token is never read, printed or
written by dna-zoo, only its presence is checked), its cache and ``HF_HUB_OFFLINE``.
Errors become one :class:`HubError` line that names the repo and the endpoint, never the
token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from dna_zoo.errors import ConfigError, DnaZooError

logger = logging.getLogger(__name__)

T = TypeVar("T")

LOGIN_HINT = "set HF_TOKEN or run `hf auth login` (pushing needs a token with write access)"


class HubError(DnaZooError, OSError):
    """The Hub refused or failed a request (auth, missing repo, server error, offline)."""


def endpoint() -> str:
    """The Hub endpoint the client uses (``HF_ENDPOINT`` or huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def api():
    """A fresh ``HfApi`` (so it follows the current endpoint configuration)."""
    from huggingface_hub import HfApi

    return HfApi(library_name="dna-zoo")


def validate_repo_id(repo_id: str) -> str:
    """``ORG/name`` as the Hub accepts it; anything else is one clear :class:`ConfigError`."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id as hf_validate

    hint = "use ORG/name, e.g. dna-zoo/dna_b.in1k"
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        raise ConfigError(f"invalid repo id '{repo_id}': it must be ORG/name", hint=hint)
    try:
        hf_validate(repo_id)
    except HFValidationError as e:
        reason = str(e).splitlines()[0]
        raise ConfigError(f"invalid repo id '{repo_id}': {reason}", hint=hint) from e
    return repo_id


def require_token() -> None:
    """Fail early, with one line, when the client has no token to push with."""
    from huggingface_hub import get_token

    if not get_token():
        raise HubError("no Hugging Face token found: pushing needs one", hint=LOGIN_HINT)


def offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


@contextmanager
def hub_errors(repo_id: str, action: str) -> Iterator[None]:
    """Translate huggingface_hub / HTTP errors raised inside into one :class:`HubError` line."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    where = endpoint()
    try:
        yield
    except DnaZooError:
        raise
    except OfflineModeIsEnabled as e:
        raise HubError(
            f"cannot {action} {repo_id}: offline mode is on (HF_HUB_OFFLINE)",
            hint="unset HF_HUB_OFFLINE to reach the Hub",
        ) from e
    except LocalEntryNotFoundError as e:
        hint = (
            "unset HF_HUB_OFFLINE and download it once" if offline() else f"check that {where} is reachable"
        )
        raise HubError(
            f"cannot {action} {repo_id}: not in the local cache and the Hub is not reachable", hint=hint
        ) from e
    except RevisionNotFoundError as e:
        raise HubError(f"cannot {action} {repo_id}: revision not found on {where}") from e
    except EntryNotFoundError as e:
        raise HubError(f"cannot {action} {repo_id}: file not found in the repo ({_short(e)})") from e
    except RepositoryNotFoundError as e:
        status = _status(e)
        if status == 401:
            raise _auth_error(repo_id, action) from e
        raise HubError(
            f"cannot {action} {repo_id}: repository not found on {where}",
            hint="check the repo id; a private repo also needs a token with access",
        ) from e
    except HfHubHTTPError as e:
        status = _status(e)
        if status == 401:
            raise _auth_error(repo_id, action) from e
        if status == 403:
            raise HubError(
                f"cannot {action} {repo_id}: the token has no write access to this namespace (403)",
                hint=LOGIN_HINT,
            ) from e
        if status == 404:
            raise HubError(f"cannot {action} {repo_id}: not found on {where} (404)") from e
        if status is not None and status >= 500:
            raise HubError(
                f"cannot {action} {repo_id}: the Hub at {where} failed with HTTP {status} after retries",
                hint="try again later: a commit is all-or-nothing, so running the same push again is safe",
            ) from e
        raise HubError(f"cannot {action} {repo_id}: HTTP {status} from {where} ({_short(e)})") from e
    except network_errors() as e:
        raise HubError(
            f"cannot {action} {repo_id}: the Hub at {where} is not reachable ({type(e).__name__})",
            hint="check the network or HF_ENDPOINT",
        ) from e


def network_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of the HTTP library huggingface_hub uses (it changed
    between releases: requests, httpx, httpx2)."""
    import importlib

    found: list[type[BaseException]] = []
    for module, names in (
        ("httpx2", ("ConnectError", "TimeoutException")),
        ("httpx", ("ConnectError", "TimeoutException")),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        found += [getattr(mod, n) for n in names if hasattr(mod, n)]
    return tuple(found)


def _auth_error(repo_id: str, action: str) -> HubError:
    return HubError(
        f"cannot {action} {repo_id}: the Hub rejected the token (401): it is missing or invalid",
        hint=LOGIN_HINT,
    )


def _status(e: Exception) -> int | None:
    response = getattr(e, "response", None)
    return getattr(response, "status_code", None)


def _short(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text[:160]


def retry_idempotent(fn: Callable[[], T], *, what: str, attempts: int = 3, wait_s: float = 0.5) -> T:
    """Retry an idempotent Hub call on a 5xx or a dropped connection.

    huggingface_hub retries the upload and download calls itself (preupload, commit, file
    metadata) but not ``create_repo`` / ``repo_info``; these are safe to repeat.
    """
    from huggingface_hub.errors import HfHubHTTPError

    for i in range(attempts):
        try:
            return fn()
        except (HfHubHTTPError, *network_errors()) as e:
            status = _status(e)
            if isinstance(e, HfHubHTTPError):
                transient = status is not None and (status >= 500 or status == 429)
            else:
                transient = True  # connection dropped or timed out
            if not transient or i == attempts - 1:
                raise
            logger.warning("%s failed (%s), retrying in %.1fs", what, status or type(e).__name__, wait_s)
            time.sleep(wait_s)
            wait_s *= 2
    raise AssertionError("unreachable")
