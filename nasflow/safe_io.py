"""nasflow's own tensor files: safetensors, with a JSON document in the header metadata.

Every checkpoint and cache of tensors that nasflow writes goes through ``save`` and comes
back through ``load``. safetensors holds only raw tensor bytes and a JSON header, so
reading a file, however hostile, cannot run code; ``torch.load`` and pickle are never used
(torch 2.2.1 runs TorchScript archives even with ``weights_only=True``). One file per
checkpoint: the JSON document (format name, version, configuration) sits under the
``nasflow`` key of the safetensors metadata.

Tensor names are ``group/name`` so that several state dicts share one file
(``flatten``/``unflatten``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from . import torchfile
from .errors import CheckpointError
from .atomic import atomic_write

META_KEY = "nasflow"


class LegacyCheckpointError(CheckpointError):
    """A file in torch's pickle-based formats, which nasflow no longer loads."""


def save(path, tensors: Mapping, document: dict) -> None:
    """Write ``tensors`` (name -> tensor) and the JSON-able ``document`` atomically to ``path``."""
    from safetensors.torch import save as to_bytes

    # safetensors refuses views and tensors sharing memory: give it plain copies
    path = Path(path)
    try:  # NaN/Infinity are not JSON: a file with them could not be read back by other tools
        text = json.dumps(document, allow_nan=False)
    except ValueError:
        raise CheckpointError(f"cannot write {path}: its configuration holds a NaN or infinite number") from None
    plain = {name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}
    data = to_bytes(plain, metadata={META_KEY: text})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)


def load(path, fmt: str, what: str, tensors: bool = True) -> tuple[dict, dict]:
    """``(document, tensors)`` of a file written by :func:`save` whose document has format ``fmt``.

    ``what`` names the file in messages ("predictor checkpoint"). ``tensors=False`` reads the header alone
    (the tensors come back empty): a caller that needs only the document does not read the weights. Raises
    CheckpointError (LegacyCheckpointError for a torch pickle or zip file) with one line.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}" + (" (it is a directory)" if path.is_dir() else ""))
    _refuse_torch_formats(path, what)
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            found = {name: f.get_tensor(name) for name in f.keys()} if tensors else {}
    except (SafetensorError, OSError, ValueError) as e:
        text = (str(e).strip().splitlines() or [type(e).__name__])[0][:120]
        raise CheckpointError(f"{path} is not a readable {what} (damaged or not a safetensors file: {text})") from None
    try:
        document = json.loads(metadata[META_KEY])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path} is a safetensors file but not a nasflow {what}") from None
    if not isinstance(document, dict) or document.get("format") != fmt:
        found = document.get("format") if isinstance(document, dict) else None
        raise CheckpointError(f"{path} is not a nasflow {what}" + (f" (it is a {found!r} file)" if found else ""))
    return document, found


def _refuse_torch_formats(path: Path, what: str) -> None:
    """One line naming a torch pickle/zip/TorchScript file, before safetensors' own less helpful error."""
    import zipfile

    with open(path, "rb") as f:
        head = f.read(512)
    # a safetensors file starts with its header's length (8 bytes, little-endian) and then '{':
    # that length's low bytes may look like a pickle's start (0x80 0x02 is 640), so test this first
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size:
        return
    kind = torchfile.sniff(head)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:  # reads the member list only, runs nothing
                if torchfile.torchscript_members(z.namelist()):
                    raise CheckpointError(
                        f"{path} is a TorchScript archive, not a {what}; nasflow never loads those (they can run code)"
                    )
        except zipfile.BadZipFile:
            pass
    if kind in ("zip", "pickle"):
        raise LegacyCheckpointError(
            f"{path} is a torch pickle file (the old .pt checkpoint format), which nasflow no longer loads "
            f"because loading one can run code; if you trust it, convert it: nasflow convert-checkpoint {path} NEW"
        )


def flatten(groups: Mapping[str, Mapping]) -> dict:
    """{'model': {'w': t}} -> {'model/w': t}."""
    return {f"{group}/{name}": t for group, tensors in groups.items() for name, t in tensors.items()}


def unflatten(tensors: Mapping, groups, where) -> dict:
    """The inverse of :func:`flatten` for ``groups``; a name outside them raises CheckpointError."""
    out: dict = {g: {} for g in groups}
    for name, t in tensors.items():
        group, _, rest = name.partition("/")
        if group not in out or not rest:
            raise CheckpointError(f"{where} holds an unexpected tensor {name[:80]!r}")
        out[group][rest] = t
    return out
