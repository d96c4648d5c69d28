"""Plans and portability: plan + metadata JSON, and refusal of plans from another library version or GPU (FAQ 15)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ...errors import PlanError, PlanMismatchError
from ...workspace import atomic_write, write_json
from ._import import TrtApi
from .cuda import DeviceInfo

FORMAT = "trtlab-tensorrt-plan/1"


def metadata_path(plan_path: str | Path) -> Path:
    """The metadata JSON beside a plan: 'model.plan' -> 'model.plan.json'."""
    p = Path(plan_path)
    return p.with_name(p.name + ".json")


def plan_metadata(api: TrtApi, plan: bytes, device: DeviceInfo | None, targets: list[str],
                  extra: dict[str, Any]) -> dict[str, Any]:
    """What a plan depends on: module and version, device, compute capability, hashes, plus `extra`."""
    return {"format": FORMAT, "backend": api.family, "module": api.module_name, "library_version": api.version,
            "device": device.name if device and not targets else (f"compute capability {', '.join(targets)}"
                                                                  if targets else "unknown"),
            "build_device": device.name if device else None,
            "compute_capability": targets or ([device.compute_capability] if device else []),
            "plan_sha256": hashlib.sha256(plan).hexdigest(), "size_bytes": len(plan), **extra}


def save_plan(path: str | Path, plan: bytes, metadata: dict[str, Any]) -> Path:
    """Write the plan and its metadata JSON beside it; returns the plan path."""
    p = Path(path)
    atomic_write(p, plan)
    write_json(metadata_path(p), metadata)
    return p


def read_plan(path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """(plan bytes, metadata) with the metadata present and the plan complete (size and SHA-256 as recorded)."""
    p = Path(path)
    mp = metadata_path(p)
    try:
        plan = p.read_bytes()
    except OSError as exc:
        raise PlanError(f"cannot read plan {p} ({exc.strerror or exc})") from None
    try:
        meta = json.loads(mp.read_text())
    except OSError:
        raise PlanError(f"plan {p} has no metadata file {mp.name} beside it: trtlab cannot tell which TensorRT "
                        f"version and GPU it was built for; rebuild it with trtlab (engine.save) or load the "
                        f"metadata-less plan with TensorRT directly") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"metadata {mp} is not valid JSON ({exc}); rebuild the plan") from None
    if meta.get("format") != FORMAT:
        raise PlanError(f"{mp} is not trtlab plan metadata (format {meta.get('format')!r}, expected {FORMAT!r})")
    check_integrity(plan, meta, str(p))
    return plan, meta


def check_integrity(plan: bytes, meta: dict[str, Any], where: str) -> None:
    """PlanError when the plan is truncated or altered relative to its metadata."""
    if len(plan) != meta.get("size_bytes"):
        raise PlanError(f"plan {where} is {len(plan)} bytes but was saved with {meta.get('size_bytes')} bytes: the "
                        f"file is truncated or was replaced; copy it again or rebuild")
    if hashlib.sha256(plan).hexdigest() != meta.get("plan_sha256"):
        raise PlanError(f"plan {where} does not match the SHA-256 recorded in its metadata: it was altered; rebuild")


def check_compatible(meta: dict[str, Any], api: TrtApi, device: DeviceInfo | None, where: str) -> None:
    """PlanMismatchError naming both sides when the plan's library or GPU differs from the running ones."""
    built = f"{meta.get('module')} {meta.get('library_version')}"
    running = f"{api.module_name} {api.version}"
    if meta.get("backend") != api.family or meta.get("library_version") != api.version:
        raise PlanMismatchError(f"plan {where} was built by {built} ({meta.get('backend')}), but this process runs "
                                f"{running} ({api.family}); TensorRT plans are not portable across versions "
                                f"(TensorRT FAQ 15): rebuild the engine here")
    if device is None:
        return  # nothing to compare; running will say that a GPU is needed
    ccs = meta.get("compute_capability") or []
    if api.is_rtx:
        if ccs and device.compute_capability not in ccs:
            raise PlanMismatchError(f"plan {where} was built for compute capability {', '.join(ccs)}, but this GPU "
                                    f"({device.name}) is {device.compute_capability}: rebuild with "
                                    f"compute_capability='{device.compute_capability}'")
        return
    if meta.get("build_device") and meta["build_device"] != device.name or (ccs and device.compute_capability
                                                                           not in ccs):
        raise PlanMismatchError(f"plan {where} was built on {meta.get('build_device')} (compute capability "
                                f"{', '.join(ccs) or '?'}), but this GPU is {device.name} "
                                f"({device.compute_capability}); TensorRT plans are not portable across GPUs "
                                f"(TensorRT FAQ 15): rebuild the engine here")
