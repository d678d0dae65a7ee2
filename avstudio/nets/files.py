"""Model files on disk: safetensors weights + a JSON card beside them. Nothing is ever unpickled.

The file layer under :mod:`avstudio.nets.checkpoint` (which builds the networks from these
files): writing, checking the bytes before safetensors parses them, reading, loading a state
strictly. It knows no network class.

A MODEL (a contract, docs/method.md) is a path to a ``.safetensors`` file with its ``.json``
card beside it, or a folder holding one or more such pairs (e.g. ``localizer`` and
``separator``). Each file holds one or more *components* under key prefixes
(``av.``, ``counter.``, ``sep.``); the card says which, with their configs::

    {"format": "avstudio-model", "format_version": 1,
     "components": {"av": {"class": "AVModel", "config": {...}}, ...},
     "stages": [...], "data": {...}, "metrics": {...}, "command": "...", ...}

Loading checks the file's bytes before handing them to safetensors (a pickle or a zip
renamed to .safetensors is named as such), checks the card, builds the modules from their
configs and loads the tensors strictly (wrong shapes or missing keys are refused with the
offending key named).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from ..dbguard import ensure_not_database
from ..errors import CheckpointError

FORMAT = "avstudio-model"
FORMAT_VERSION = 1
MAX_HEADER = 100 * 1024 * 1024


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    ensure_not_database(path, "write over", CheckpointError)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def card_path(weights: Path) -> Path:
    return weights.with_suffix(".json")


def save_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], card: dict[str, Any]) -> Path:
    """Write ``path`` (.safetensors) and its card atomically (weights first, then card)."""
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: model files must end in .safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    card = dict(card)
    card.setdefault("format", FORMAT)
    card.setdefault("format_version", FORMAT_VERSION)
    # the card is embedded in the weights too: the two files cannot be replaced together
    # atomically, so a reader that must not pair new weights with an old card (the trainer's
    # resume) reads the embedded copy
    meta = {"format": FORMAT, "card": json.dumps(card)}
    _atomic_write_bytes(path, save(flat, metadata=meta))
    _atomic_write_bytes(card_path(path), (json.dumps(card, indent=2, sort_keys=False) + "\n").encode())
    return path


def sniff(path: Path) -> dict:
    """Refuse anything that is not a well-formed safetensors file, without parsing it as code."""
    ensure_not_database(path, "load as a model", CheckpointError)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    if head[:2] == b"PK":
        raise CheckpointError(f"{path}: this is a zip archive (a PyTorch .pt/.pth checkpoint?), "
                              "not safetensors; AV Studio never unpickles files")
    if head[:1] == b"\x80" and len(head) > 1 and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        raise CheckpointError(f"{path}: this is a Python pickle, not safetensors; "
                              "AV Studio never unpickles files")
    if len(head) < 9:
        raise CheckpointError(f"{path}: the file is truncated (only {size} bytes)")
    (n,) = struct.unpack("<Q", head[:8])
    if n > MAX_HEADER or head[8:9] != b"{":
        raise CheckpointError(f"{path}: not a safetensors file (no valid header)")
    if 8 + n > size:
        raise CheckpointError(f"{path}: the file is truncated (header says {n} bytes, file has {size})")
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            header = json.loads(fh.read(n).decode("utf-8"))
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError):
        raise CheckpointError(f"{path}: not a safetensors file (unreadable header)") from None
    need = 8 + n + (max(ends) if ends else 0)
    if need > size:
        raise CheckpointError(f"{path}: the file is truncated ({size} of {need} bytes)")
    meta = header.get("__metadata__") or {}
    return meta if isinstance(meta, dict) else {}


def load_tensors(path: str | os.PathLike, embedded_card: bool = False) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a ``.safetensors`` file and its card. Raises CheckpointError with one clear line.

    The card is the JSON file beside the weights (the user may edit it); with
    ``embedded_card`` the copy written inside the weights file is used when there is one.
    """
    from safetensors.torch import load

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, expected a .safetensors file")
    meta = sniff(path)
    cp = card_path(path)
    ensure_not_database(cp, "read as a model card", CheckpointError)
    if embedded_card and meta.get("card"):
        try:
            card = json.loads(meta["card"])
        except json.JSONDecodeError:
            raise CheckpointError(f"{path}: the card embedded in the file is not valid JSON") from None
        try:
            return load(path.read_bytes()), card
        except Exception as exc:
            raise CheckpointError(f"{path}: corrupt safetensors data ({exc})") from None
    if not cp.exists():
        raise CheckpointError(f"{path}: its model card {cp.name} is missing beside it")
    try:
        card = json.loads(cp.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cp}: the model card is not valid JSON ({exc})") from None
    if not isinstance(card, dict) or card.get("format") != FORMAT:
        raise CheckpointError(f"{cp}: not an AV Studio model card (format must be {FORMAT!r})")
    if int(card.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(f"{cp}: made by a newer AV Studio (format_version "
                              f"{card.get('format_version')}); please upgrade")
    try:
        data = path.read_bytes()
        tensors = load(data)
    except Exception as exc:  # safetensors raises its own error types on corrupt data
        raise CheckpointError(f"{path}: corrupt safetensors data ({exc})") from None
    return tensors, card


def model_files(path: str | os.PathLike) -> list[Path]:
    """The .safetensors files a MODEL path names (a file, or every file in a folder)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.glob("*.safetensors"))
        if not files:
            raise CheckpointError(f"{path}: the folder holds no .safetensors model file")
        return files
    if not path.exists():
        raise CheckpointError(f"{path}: no such model file or folder")
    return [path]


def load_state(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, where: str) -> None:
    """Strictly load ``prefix``-ed tensors into ``module`` with clear messages."""
    sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    own = module.state_dict()
    missing = [k for k in own if k not in sub]
    extra = [k for k in sub if k not in own]
    if missing or extra:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}"
        raise CheckpointError(f"{where}: weights do not match the card's architecture ({what}, "
                              f"{len(missing)} missing, {len(extra)} unexpected)")
    for k, v in own.items():
        if tuple(sub[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{where}: weight {prefix}{k} has shape {tuple(sub[k].shape)}, "
                                  f"the card's architecture needs {tuple(v.shape)}")
        if sub[k].dtype != v.dtype and not (sub[k].is_floating_point() and v.is_floating_point()):
            raise CheckpointError(f"{where}: weight {prefix}{k} has dtype {sub[k].dtype}, expected {v.dtype}")
    module.load_state_dict(sub, strict=True)


def component_tensors(name: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for k, v in module.state_dict().items()}


def weights_sha256(module: torch.nn.Module) -> str:
    """Identity of a module's weights (names, dtypes, shapes, bytes; sorted): the AV model's
    visual space, whatever file it was loaded from (a localizer whose counter was refitted
    keeps the same encoders and the same identity)."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    ensure_not_database(path, "hash as a model file", CheckpointError)
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
