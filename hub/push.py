"""Publish a DNA-family model to the Hub: weights, timm config, model card, export artifacts.

The exact folder to upload is built in a temporary directory (``model.safetensors``,
``config.json``, ``README.md``, artifacts in subfolders with their manifests); then
huggingface_hub's ``create_repo`` + ``upload_folder`` publish it in one commit. The client
compares each file with the remote one and skips unchanged files, so pushing the same model
twice makes no new commit. ``dry_run`` writes that same folder to ``out`` and uploads
nothing. The folder is built deterministically (no dates), which is what makes re-pushes
no-ops.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dna_zoo.errors import ConfigError, DnaZooError, OutputExistsError, WeightsError
from dna_zoo.hub import client
from dna_zoo.hub.artifacts import LocalArtifact, find_artifacts, layout, read_manifest
from dna_zoo.hub.card import CardInfo, Latency, build_card, estimate_note
from dna_zoo.hub.config import hub_config, write_config
from dna_zoo.hub.convert import CONFIG_NAME, WEIGHTS_NAME
from dna_zoo.io import replace_dir, staging_dir

if TYPE_CHECKING:
    from dna_zoo.arch import ArchEncoding
    from dna_zoo.search.result import SearchResult
    from dna_zoo.search.retrain import RetrainOutput

logger = logging.getLogger(__name__)

CARD_NAME = "README.md"
DEFAULT_LICENSE = "apache-2.0"
MAC_CONVENTION = "conv_linear = multiply-adds of convs and linears; all = plus BN/activation elements"


@dataclass(frozen=True)
class PreparedRepo:
    """The folder that would be uploaded, and what its card says."""

    folder: Path
    files: tuple[str, ...]
    card: CardInfo


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    files: tuple[str, ...]
    params: int
    macs_conv_linear: int
    macs_all: int
    dry_run: bool
    out: Path | None = None  # dry run: where the folder was written
    url: str | None = None
    commit: str | None = None
    committed: bool = False  # False: the repo already held exactly these files
    artifacts: tuple[str, ...] = field(default=())
    deleted: tuple[str, ...] = field(default=())  # stale artifacts of earlier weights, removed

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "dry_run": self.dry_run,
            "out": str(self.out) if self.out else None,
            "url": self.url,
            "commit": self.commit,
            "committed": self.committed,
            "files": list(self.files),
            "artifacts": list(self.artifacts),
            "deleted": list(self.deleted),
            "params": self.params,
            "macs_conv_linear": self.macs_conv_linear,
            "macs_all": self.macs_all,
            "mac_convention": MAC_CONVENTION,
        }


def _search_result(spec: str) -> SearchResult | None:
    """The search result ``spec`` names, read by its typed reader; None for other specs (a zoo
    name, a bare encoding file)."""
    from dna_zoo.search.result import RESULT_FORMAT, SearchResult

    p = Path(spec)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # resolve_arch already reported a broken file
    if not isinstance(data, dict) or data.get("format") != RESULT_FORMAT:
        return None
    return SearchResult.from_dict(data, origin=str(p))


def _retrain_output(weights: Path, arch: ArchEncoding) -> RetrainOutput | None:
    """The retrain output the weights belong to (``config.json`` beside them), if it is one and
    is of this very network."""
    from dna_zoo.search.retrain import CONFIG, RetrainOutput

    cfg = weights.parent / CONFIG
    if not cfg.is_file():
        return None
    try:
        out = RetrainOutput.load(cfg)
    except DnaZooError as e:
        logger.info("not using %s for the card: %s", cfg, e)
        return None
    if out.arch.to_arch_def() != arch.to_arch_def():
        logger.warning("%s describes another network than the one pushed; its accuracy is not used", cfg)
        return None
    return out


def _accuracy(retrained: RetrainOutput | None, name: str | None, num_classes: int) -> dict[str, Any] | None:
    if retrained is not None and retrained.top1 is not None:
        return {
            "top1": round(retrained.top1, 2),
            "dataset": f"{retrained.data.name} (evaluation split)",
            "source": f"measured after retraining, {retrained.metrics.get('kept', 'model')} weights",
        }
    if name is not None and num_classes == 1000:
        from dna_zoo.zoo import published_figures

        return {
            "top1": published_figures(name)["top1"],
            "dataset": "ImageNet-1k val",
            "source": "published in the DNA paper for the authors' weights, not re-measured here",
        }
    return None


def _datasets(
    retrained: RetrainOutput | None, datasets: Sequence[str], published: bool, num_classes: int
) -> tuple:
    if datasets:
        return tuple(datasets)
    if retrained is not None and retrained.data.name:
        return (retrained.data.name,)
    if published and num_classes == 1000:
        return ("imagenet-1k",)
    return ()


def _export_artifacts(spec: str, weights: Path, formats: Sequence[str], out_dir: Path) -> list[LocalArtifact]:
    """Produce artifacts with the export library (imported lazily: it is optional here)."""
    try:
        from dna_zoo.export import export_artifact  # type: ignore[attr-defined]
    except ImportError as e:
        raise DnaZooError(
            "--with needs the export library (dna_zoo.export.export_artifact), which this installation lacks",
            hint="export with `dna export` and pass the folder with --artifacts DIR",
        ) from e
    found = []
    for fmt in formats:
        art = export_artifact(spec, fmt, out_dir / fmt, weights=weights)
        manifest = read_manifest(Path(art.manifest_path))
        extra = tuple(Path(art.path).with_name(n) for n in manifest.extra_files)
        found.append(LocalArtifact(Path(art.path), Path(art.manifest_path), manifest, extra))
    return found


def prepare_folder(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None,
    repo_id: str,
    dest: str | os.PathLike[str],
    artifacts_dir: str | os.PathLike[str] | None = None,
    with_formats: Sequence[str] = (),
    license: str | None = None,
    datasets: Sequence[str] = (),
) -> PreparedRepo:
    """Build the exact folder to upload into ``dest`` (an empty or missing folder)."""
    from dna_zoo.complexity import count_params, encoding_cost
    from dna_zoo.models import PUBLISHED, default_cfgs
    from dna_zoo.weights import save_safetensors
    from dna_zoo.zoo import build_model, resolve_source

    if weights is None:
        raise WeightsError(
            f"pushing {spec} needs its trained weights",
            hint="pass --weights FILE (safetensors or an original DNA .pth.tar)",
        )
    src = resolve_source(spec)
    if src.arch is None:
        raise ConfigError(
            f"'{spec}' is not a DNA-family model",
            hint="push a zoo name (dna_a..dna_d) or a search result .json",
        )
    published = spec in PUBLISHED
    result = None if published else _search_result(spec)
    retrained = None if published else _retrain_output(Path(weights), src.arch)
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)

    model = build_model(src, weights=weights)  # check_fits: one clear error if they do not fit
    save_safetensors(model.state_dict(), folder / WEIGHTS_NAME, metadata={"format": "pt"})
    write_config(hub_config(model, src.arch, searched=not published), folder / CONFIG_NAME)
    files = [WEIGHTS_NAME, CONFIG_NAME, CARD_NAME]

    artifacts: list[LocalArtifact] = []
    if artifacts_dir is not None:
        artifacts += find_artifacts(artifacts_dir)
    if with_formats:
        export_dir = folder.parent / f".{folder.name}.export"
        artifacts += _export_artifacts(spec, Path(weights), with_formats, export_dir)
    for repo_path, local in layout(artifacts).items():
        target = folder / repo_path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local, target)
        files.append(repo_path)

    num_classes = int(model.num_classes)
    # the model's own preprocessing (what export records in manifests), else the result's
    recorded = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    input_size = int(recorded[-1]) if recorded else (result.input_size if result is not None else 224)
    registered = None
    cfg = default_cfgs.get(spec) if published else None
    if cfg is not None and cfg.default.hf_hub_id == repo_id and num_classes == 1000:
        registered = spec  # `timm.create_model(spec, pretrained=True)` downloads this very repo
    card = CardInfo(
        repo_id=repo_id,
        title=repo_id.split("/")[-1],
        arch=src.arch,
        architecture=src.timm_name,
        searched=not published,
        num_classes=num_classes,
        input_size=input_size,
        params=count_params(model),
        cost=encoding_cost(src.arch, input_size=input_size, num_classes=num_classes),
        license=license or DEFAULT_LICENSE,
        datasets=_datasets(retrained, datasets, published, num_classes),
        accuracy=_accuracy(retrained, spec if published else None, num_classes),
        latency=tuple(_latencies(result, artifacts)),
        artifacts=tuple(
            {
                "path": f"{a.repo_folder()}/{a.path.name}",
                "manifest": a.manifest,
                "size": a.path.stat().st_size,
            }
            for a in artifacts
        ),
        registered_name=registered,
        **_chosen_by(result),
    )
    build_card(card).save(folder / CARD_NAME)
    _refuse_token_in(folder)
    return PreparedRepo(folder, tuple(sorted(files)), card)


def _chosen_by(result: SearchResult | None) -> dict[str, str | None]:
    """The card's record of what chose a searched net: its objective and predicted top-1."""
    if result is None:
        return {}
    from dna_zoo.search.strategy.objective import objective_text

    meta = result.meta
    predicted = (meta.get("predictor") or meta.get("imagenet_prior") or {}).get("text")
    return {"chosen_by": objective_text(str(meta.get("objective", "rating"))), "predicted": predicted}


def _latencies(result: SearchResult | None, artifacts: list[LocalArtifact]) -> list[Latency]:
    """The search's predicted latency (from its latency table), then each artifact's own
    latency measured at export."""
    out = []
    lat = result.latency if result is not None else None
    if lat is not None:
        d = lat.details
        out.append(
            Latency(
                device=str(d.get("device", "unknown device")),
                runtime=str(d.get("runtime", "unknown runtime")),
                precision=str(d.get("precision", "fp32")),
                ms=lat.value,
                source="estimated" if lat.estimated else "measured",
                batch=int(d.get("batch", 1)),
                note=estimate_note(d.get("estimate")) if lat.estimated else "from a measured per-layer table",
                input_size=d.get("input_size"),
            )
        )
    for a in artifacts:
        t = a.manifest.own_timing
        if t is not None:
            out.append(
                Latency(
                    device=a.manifest.device,
                    runtime=t.runner,
                    precision=a.manifest.precision,
                    ms=t.median_ms,
                    source="measured",
                    batch=t.batch,
                    note=f"{a.repo_folder()}/{a.path.name} at export, median",
                    input_size=_input_size(a.manifest.raw),
                )
            )
    return out


def _input_size(manifest: dict) -> int | None:
    """The square input resolution an export manifest records (None where not square/known)."""
    shape = manifest.get("shapes", {}).get("input", {}).get("shape", [])
    if len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] == shape[-2]:
        return int(shape[-1])
    return None


def _refuse_token_in(folder: Path) -> None:
    """Defence in depth: never upload a file that contains the Hub token."""
    from huggingface_hub import get_token

    token = get_token()
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and needle in p.read_bytes():
            raise client.HubError(
                f"refusing to upload: {p.relative_to(folder)} contains the Hub token",
                hint="remove the token from that file",
            )


@dataclass(frozen=True)
class RemoteState:
    """What the repo already holds that matters for this push."""

    exists: bool = False
    same_weights: bool = False
    kept: tuple[dict[str, Any], ...] = ()  # earlier artifacts of these weights, for the card
    stale: tuple[str, ...] = ()  # artifact files of other weights: deleted in the same commit


def _local_matches(entry: Any, path: Path) -> bool:
    """Whether a remote tree entry holds exactly the bytes of a local file."""
    from huggingface_hub.utils.sha import git_hash

    from dna_zoo.io import sha256_file

    if entry.lfs is not None:
        return entry.lfs.sha256 == sha256_file(path)
    return entry.blob_id == git_hash(path.read_bytes())


def remote_state(hf: Any, repo_id: str, prepared: PreparedRepo, revision: str | None = None) -> RemoteState:
    """Compare the repo with the prepared folder.

    Artifacts live in subfolders. When the repo's ``model.safetensors`` equals the one being
    pushed, artifacts pushed earlier (e.g. an engine built on another GPU) stay and are
    listed in the card; when the weights change, artifacts that this push does not replace
    were made from other weights, so they are deleted in the same commit.
    """
    from huggingface_hub import RepoFile, hf_hub_download

    from dna_zoo.hub.artifacts import MANIFEST_SUFFIX, validate_manifest

    entries = {
        e.path: e
        for e in hf.list_repo_tree(repo_id, recursive=True, revision=revision, repo_type="model")
        if isinstance(e, RepoFile)
    }
    ours = set(prepared.files)
    weights = entries.get(WEIGHTS_NAME)
    same = weights is not None and _local_matches(weights, prepared.folder / WEIGHTS_NAME)
    others = sorted(p for p in entries if "/" in p and p not in ours)
    if not same:
        return RemoteState(exists=True, same_weights=False, stale=tuple(others))
    kept = []
    for mpath in (p for p in others if p.endswith(MANIFEST_SUFFIX)):
        file_path = mpath[: -len(MANIFEST_SUFFIX)]
        if file_path not in entries:
            continue
        local = hf_hub_download(repo_id, mpath, revision=revision, repo_type="model")
        try:
            manifest = validate_manifest(json.loads(Path(local).read_text()), f"{repo_id}/{mpath}")
        except (DnaZooError, ValueError) as e:
            logger.warning("ignoring unreadable manifest %s in %s: %s", mpath, repo_id, e)
            continue
        kept.append({"path": file_path, "manifest": manifest, "size": entries[file_path].size})
    return RemoteState(exists=True, same_weights=True, kept=tuple(kept))


def _with_remote(prepared: PreparedRepo, remote: RemoteState) -> PreparedRepo:
    """Re-render the card so it lists every artifact the repo will hold after this push."""
    if not remote.kept:
        return prepared
    from dataclasses import replace

    ours = {a["path"] for a in prepared.card.artifacts}
    extra = tuple(a for a in remote.kept if a["path"] not in ours)
    card = replace(
        prepared.card, artifacts=tuple(sorted(prepared.card.artifacts + extra, key=lambda a: a["path"]))
    )
    build_card(card).save(prepared.folder / CARD_NAME)
    _refuse_token_in(prepared.folder)
    return PreparedRepo(prepared.folder, prepared.files, card)


def _peek_remote(repo_id: str, prepared: PreparedRepo) -> RemoteState:
    """For a dry run: the repo's state if it can be read (read-only), else a new repo."""
    if client.offline():
        return RemoteState()
    try:
        with client.hub_errors(repo_id, "read"):
            return remote_state(client.api(), repo_id, prepared)
    except DnaZooError as e:
        logger.info("dry run: cannot read %s (%s); treating it as a new repo", repo_id, e)
        return RemoteState()


def push(
    spec: str,
    *,
    weights: str | os.PathLike[str] | None,
    repo_id: str,
    artifacts_dir: str | os.PathLike[str] | None = None,
    with_formats: Sequence[str] = (),
    private: bool = False,
    dry_run: bool = False,
    out: str | os.PathLike[str] | None = None,
    force: bool = False,
    license: str | None = None,
    datasets: Sequence[str] = (),
    commit_message: str | None = None,
) -> PushResult:
    """Publish ``spec`` (a zoo name or a search-result JSON) with ``weights`` to ``repo_id``.

    With ``dry_run`` the exact upload folder is written to ``out`` and nothing is uploaded
    (no token needed). Otherwise the client's token is used (``HF_TOKEN`` or the stored
    login); it is never read into any file, card, manifest or log by dna-zoo.
    """
    client.validate_repo_id(repo_id)
    if weights is None:
        raise WeightsError(
            f"pushing {spec} needs its trained weights",
            hint="pass --weights FILE (safetensors or an original DNA .pth.tar)",
        )
    if dry_run:
        if out is None:
            raise ConfigError(
                "--dry-run writes the upload folder to --out, which is missing", hint="pass --out DIR"
            )
        out_dir = Path(out)
        if out_dir.exists() and not force:
            raise OutputExistsError(out_dir)
        stage = staging_dir(out_dir)
        try:
            prepared = prepare_folder(
                spec,
                weights=weights,
                repo_id=repo_id,
                dest=stage / "repo",
                artifacts_dir=artifacts_dir,
                with_formats=with_formats,
                license=license,
                datasets=datasets,
            )
            remote = _peek_remote(repo_id, prepared)
            prepared = _with_remote(prepared, remote)
            replace_dir(prepared.folder, out_dir)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        logger.info("dry run: wrote the upload folder for %s to %s", repo_id, out_dir)
        return _result(prepared, repo_id, dry_run=True, out=out_dir, deleted=remote.stale)

    if client.offline():
        raise client.HubError(
            f"cannot push to {repo_id}: offline mode is on (HF_HUB_OFFLINE)", hint="unset HF_HUB_OFFLINE"
        )
    client.require_token()
    with tempfile.TemporaryDirectory(prefix="dna-hub-push-") as tmp:
        prepared = prepare_folder(
            spec,
            weights=weights,
            repo_id=repo_id,
            dest=Path(tmp) / "repo",
            artifacts_dir=artifacts_dir,
            with_formats=with_formats,
            license=license,
            datasets=datasets,
        )
        hf = client.api()
        message = commit_message or f"Upload {prepared.card.title} with dna-zoo"
        with client.hub_errors(repo_id, "push to"):
            url = client.retry_idempotent(
                lambda: hf.create_repo(repo_id, private=private, exist_ok=True, repo_type="model"),
                what="create_repo",
            )
            before = client.retry_idempotent(
                lambda: hf.repo_info(repo_id, repo_type="model").sha, what="repo_info"
            )
            remote = client.retry_idempotent(
                lambda: remote_state(hf, repo_id, prepared, revision=before), what="list_repo_tree"
            )
            prepared = _with_remote(prepared, remote)
            info = hf.upload_folder(
                repo_id=repo_id,
                folder_path=prepared.folder,
                repo_type="model",
                commit_message=message,
                delete_patterns=list(remote.stale) or None,
                parent_commit=before,
            )
    committed = info.oid != before
    logger.info("%s %s at %s", "pushed" if committed else "unchanged, no new commit:", repo_id, info.oid)
    return _result(
        prepared,
        repo_id,
        dry_run=False,
        url=str(url),
        commit=info.oid,
        committed=committed,
        deleted=remote.stale if committed else (),
    )


def _result(prepared: PreparedRepo, repo_id: str, *, dry_run: bool, **kwargs: Any) -> PushResult:
    c = prepared.card
    return PushResult(
        repo_id=repo_id,
        files=prepared.files,
        params=c.params,
        macs_conv_linear=c.cost.macs_as("conv_linear"),
        macs_all=c.cost.macs_as("all"),
        dry_run=dry_run,
        artifacts=tuple(a["path"] for a in c.artifacts),
        **kwargs,
    )
