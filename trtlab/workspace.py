"""The on-disk workspace and the one writer every file trtlab writes goes through.

A workspace is `<root>/<model-hash>/` with `engines/<config-key>/`, `results/`, `sweeps/` and `calibration/`,
readable without trtlab. Everything written under a root is written by `atomic_write` / `append_line`
(through `Workspace.write`, `write_json`, ...): atomic (temp file + rename, fsynced), strict JSON (no NaN or
Infinity tokens), and confined: a path that leaves the root, or a symbolic link anywhere from the root down
(a folder or the file itself, e.g. planted by a workspace received from someone else), is refused with a
`WorkspaceError` instead of being written through.
"""
from __future__ import annotations

import errno
import itertools
import json
import math
import os
import re
import secrets
import stat
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Iterable, Iterator

from .config import BuildConfig
from .errors import ConfigError, WorkspaceError

DEFAULT_ROOT = Path(".trtlab")
_DIRFD = os.open in os.supports_dir_fd and os.rename in os.supports_dir_fd and os.mkdir in os.supports_dir_fd
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


# ---- strict JSON and safe CSV --------------------------------------------------------------------
def strict(value: Any) -> Any:
    """`value` as plain JSON types: NaN/Inf become None, numpy scalars and arrays Python numbers and lists."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k if isinstance(k, str) else str(k): strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [strict(v) for v in value]
    import numpy as np
    if isinstance(value, np.ndarray):
        return strict(value.tolist())
    if isinstance(value, np.generic):
        return strict(value.item())
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict") and callable(value.to_dict):
        try:
            return strict(value.to_dict())
        except TypeError:
            pass
    return str(value)


def dumps(payload: Any, indent: int | None = 1) -> str:
    """Strict JSON text of `payload` (see `strict`): every JSON parser reads it back."""
    return json.dumps(strict(payload), indent=indent, allow_nan=False)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @, tab, CR first) gets a leading quote."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def csv_text(frame: Any) -> str:
    """A DataFrame as CSV by the OWASP CSV-injection rule: text cells a spreadsheet would run as a formula get a
    leading quote, and every text cell is enclosed in double quotes (so a CR or tab inside stays in its cell);
    numbers stay numbers."""
    import csv

    import pandas as pd
    f = frame.copy()
    for c in f.columns:
        if not pd.api.types.is_numeric_dtype(f[c]):
            f[c] = f[c].map(csv_cell)
    f.columns = [csv_cell(str(c)) for c in f.columns]
    return f.to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC)


def safe_name(text: str, default: str = "item", limit: int = 80) -> str:
    """`text` reduced to a file name that cannot climb folders or hide (letters, digits, '.', '_', '-')."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("._-")[:limit]
    return name or default


# ---- the writer --------------------------------------------------------------------------------
def _parts(path: Path, root: Path | None) -> tuple[Path, list[str]]:
    """(base folder, components below it) for `path`; refuses what leaves `root`."""
    absolute = Path(os.path.abspath(path))
    if root is None:
        return absolute.parent, [absolute.name]
    base = Path(os.path.abspath(root))
    if ".." in Path(path).parts:
        raise WorkspaceError(f"refusing to write {path}: '..' in a workspace path could leave {base}")
    try:
        rel = absolute.relative_to(base)
    except ValueError:
        raise WorkspaceError(f"refusing to write {path}: it is outside the workspace root {base}") from None
    if not rel.parts:
        raise WorkspaceError(f"refusing to write {path}: that is the workspace root itself, not a file in it")
    return base, list(rel.parts)


def _link_error(where: Path, what: str) -> WorkspaceError:
    try:
        target = f" (to {os.readlink(where)})"
    except OSError:
        target = ""
    return WorkspaceError(f"refusing to write {what}: {where} is a symbolic link{target}; trtlab never writes "
                          f"through links in a workspace: remove the link (a received workspace may have planted it)")


def _open_dir(base: Path, parts: list[str], what: str, create: bool = True) -> int:
    """An fd of folder base/parts..., each component opened without following links (made when missing)."""
    if create:
        os.makedirs(base, exist_ok=True)
    fd = os.open(base, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    here = base
    try:
        for name in parts:
            here = here / name
            try:
                nxt = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(name, dir_fd=fd)
                except FileExistsError:
                    pass
                nxt = os.open(name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        raise _link_error(here, what) from None
                    raise WorkspaceError(f"refusing to write {what}: {here} is a file, not a folder; move it "
                                         f"away or choose another workspace=") from None
                raise
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check_lexical(base: Path, parts: list[str], what: str) -> None:
    """Where folders cannot be opened relative to each other: refuse any link from the root down."""
    here = base
    for name in parts:
        here = here / name
        if here.is_symlink():
            raise _link_error(here, what)


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_TMP_COUNTER = itertools.count()


def _tmp_name(name: str) -> str:
    return f".{name[:60]}.{os.getpid()}-{next(_TMP_COUNTER)}-{secrets.token_hex(4)}.tmp"


def atomic_write(path: str | os.PathLike[str], data: bytes | bytearray | memoryview | str,
                 root: str | os.PathLike[str] | None = None, fsync: bool = True) -> Path:
    """Write `data` to `path` all or nothing: a temp file beside it, fsynced, renamed over it.

    With `root`, the path must lie under it with no symbolic link from the root down (the file included);
    otherwise `WorkspaceError` names the path and why. A failed write leaves the previous file as it was."""
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    base, parts = _parts(path, Path(root) if root is not None else None)
    if root is None or not _DIRFD:
        if root is not None:
            _check_lexical(base, parts, str(path))
        return _atomic_write_plain(path, payload)
    dfd = _open_dir(base, parts[:-1], str(path))
    name = parts[-1]
    try:
        try:
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            raise _link_error(path, str(path))
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise WorkspaceError(f"refusing to write {path}: a folder of that name is in the way; move it away")
        tmp = _tmp_name(name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644, dir_fd=dfd)
        try:
            try:
                _write_all(fd, payload)
                if fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        if fsync:
            try:
                os.fsync(dfd)
            except OSError:
                pass
    finally:
        os.close(dfd)
    return path


def _atomic_write_plain(path: Path, payload: bytes | bytearray | memoryview) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / _tmp_name(path.name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0),
                 0o644)
    try:
        try:
            _write_all(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


def write_json(path: str | os.PathLike[str], payload: Any, root: str | os.PathLike[str] | None = None) -> Path:
    """Atomically write `payload` as strict JSON (NaN/Inf as null; see `atomic_write` for `root`)."""
    return atomic_write(path, dumps(payload), root=root)


def append_line(path: str | os.PathLike[str], line: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Append one complete line to `path` durably, never through a link (the file is opened O_NOFOLLOW).

    A torn last line (a crash mid-write) is ended first, so the new line stays whole."""
    path = Path(path)
    if "\n" in line or "\r" in line:
        raise WorkspaceError(f"refusing to append to {path}: the record spans several lines")
    base, parts = _parts(path, Path(root) if root is not None else None)
    if root is not None and not _DIRFD:
        _check_lexical(base, parts, str(path))
    if _DIRFD:
        dfd = _open_dir(base, parts[:-1], str(path)) if root is not None else _open_dir(base, [], str(path))
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        dfd = None
    name = parts[-1]
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | _NOFOLLOW | _CLOEXEC | getattr(os, "O_BINARY", 0)
    try:
        try:
            fd = os.open(name, flags, 0o644, dir_fd=dfd) if dfd is not None else os.open(path, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _link_error(path, str(path)) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise WorkspaceError(f"refusing to append to {path}: it is not a regular file")
            if st.st_nlink > 1:
                raise WorkspaceError(f"refusing to append to {path}: it has {st.st_nlink} hard links, so it may be "
                                     f"a file outside the workspace; remove it (it is recreated)")
            torn = st.st_size > 0 and os.pread(fd, 1, st.st_size - 1) != b"\n"
            _write_all(fd, (("\n" if torn else "") + line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        if dfd is not None:
            os.close(dfd)
    return path


def make_dirs(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Create folder `path` (and its parents) under `root`, refusing links on the way; returns it."""
    path = Path(path)
    base, parts = _parts(path, Path(root))
    if _DIRFD:
        os.close(_open_dir(base, parts, str(path)))
    else:
        _check_lexical(base, parts, str(path))
        path.mkdir(parents=True, exist_ok=True)
    return path


def rename(src: str | os.PathLike[str], dst: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Rename `src` to `dst` (both under `root`, no links on the way; `dst` must not exist)."""
    src, dst = Path(src), Path(dst)
    sbase, sparts = _parts(src, Path(root))
    dbase, dparts = _parts(dst, Path(root))
    if not _DIRFD:
        _check_lexical(sbase, sparts[:-1], str(src))
        _check_lexical(dbase, dparts, str(dst))
        if dst.exists() or dst.is_symlink():
            raise WorkspaceError(f"refusing to rename {src} to {dst}: {dst} exists")
        os.rename(src, dst)
        return dst
    sfd = _open_dir(sbase, sparts[:-1], str(src), create=False)
    try:
        dfd = _open_dir(dbase, dparts[:-1], str(dst))
        try:
            try:
                os.stat(dparts[-1], dir_fd=dfd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                raise WorkspaceError(f"refusing to rename {src} to {dst}: {dst} exists")
            os.rename(sparts[-1], dparts[-1], src_dir_fd=sfd, dst_dir_fd=dfd)
        finally:
            os.close(dfd)
    finally:
        os.close(sfd)
    return dst


def is_link(path: Path) -> bool:
    """Whether `path` itself is a symbolic link (not followed)."""
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except OSError:
        return False


def read_record(path: Path) -> Any:
    """Parse the JSON file `path`, or warn naming it and return None (damaged, not UTF-8, a link)."""
    if is_link(path):
        warnings.warn(f"skipping {path}: it is a symbolic link, not a record trtlab wrote", stacklevel=3)
        return None
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        warnings.warn(f"skipping damaged record {path} ({type(exc).__name__}: {exc})", stacklevel=3)
        return None


def read_lines(path: Path, what: str) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) of each line of an append-only file trtlab wrote (`append_line`), in order.

    A link is not read (warned, naming `what` the file should hold); a missing file has no lines; a torn last line
    (a crash while appending) is dropped quietly; any other line that is not UTF-8 JSON is skipped with a warning
    naming the file and line. What each value must be is the caller's rule. OSError reading the file propagates."""
    if is_link(path):
        warnings.warn(f"skipping {path}: it is a symbolic link, not {what} trtlab wrote", stacklevel=3)
        return []
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    out = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            out.append((i + 1, json.loads(raw.decode("utf-8"))))
        except ValueError as exc:  # JSON or UTF-8
            if i < len(lines) - 1:  # the last line without a newline is a torn write: not worth a warning
                warnings.warn(f"skipping damaged line {i + 1} of {path} ({exc})", stacklevel=3)
    return out


# ---- result ids ----------------------------------------------------------------------------------
_ID_COUNTER = itertools.count(1)
_ID_LOCK = threading.Lock()


def new_id(kind: str) -> str:
    """A result id unique across threads and processes: time to the microsecond, pid, counter, random."""
    with _ID_LOCK:
        n = next(_ID_COUNTER)
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"{int(now % 1 * 1e6):06d}"
    return f"{stamp}-{os.getpid()}-{n:04d}-{secrets.token_hex(3)}-{safe_name(kind, 'result', 40)}"


def _note_unsaved(result: Any, message: str) -> None:
    """Record on a result object that it exists in memory only (`.save_error`, and `.notes` where it has one)."""
    notes = getattr(result, "notes", None)
    if isinstance(notes, list):
        notes.append(message)
    attrs = getattr(result, "attrs", None)  # a DataFrame keeps it in .attrs
    if isinstance(attrs, dict):
        attrs["save_error"] = message
        return
    try:
        result.save_error = message
    except (AttributeError, TypeError):
        pass


class Workspace:
    """Folder `<root>/<model-hash>/` with `engines/<config-key>/` and `results/`; every write goes through it."""

    def __init__(self, root: str | Path | None, model_hash: str, model_name: str = "model") -> None:
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        if safe_name(model_hash) != model_hash:
            raise WorkspaceError(f"model hash {model_hash!r} cannot name a workspace folder")
        self.path = self.root / model_hash
        try:
            self.mkdir("engines")
            self.mkdir("results")
            info = self.path / "model.json"
            if not info.exists():
                self.write_json(info, {"name": model_name, "hash": model_hash, "created": time.time()})
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace folder {self.path} ({exc}): pass workspace= a writable "
                                 f"folder") from None

    # ---- the writer, confined to the root ----------------------------------------------------
    def _under(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        return p if p.is_absolute() or p.parts[:len(self.root.parts)] == self.root.parts else self.path / p

    def write(self, path: str | os.PathLike[str], data: bytes | str) -> Path:
        """Atomically write a file (a path relative to this model's folder, or one under the root)."""
        return atomic_write(self._under(path), data, root=self.root)

    def write_json(self, path: str | os.PathLike[str], payload: Any) -> Path:
        """Atomically write strict JSON."""
        return atomic_write(self._under(path), dumps(payload), root=self.root)

    def append_line(self, path: str | os.PathLike[str], line: str) -> Path:
        """Append one complete line (never through a link)."""
        return append_line(self._under(path), line, root=self.root)

    def mkdir(self, path: str | os.PathLike[str]) -> Path:
        """Create a folder (and parents) under the root, refusing links on the way."""
        return make_dirs(self._under(path), root=self.root)

    def rename(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
        """Rename within the root (the destination must not exist)."""
        return rename(self._under(src), self._under(dst), root=self.root)

    def library_file(self, path: str | os.PathLike[str], what: str) -> Path:
        """A path under the root that a library writes itself (Optuna's study journal): its folder is made
        here, refusing links on the way, and the file itself must not be a link; returns the checked path."""
        p = self._under(path)
        _parts(p, self.root)  # refuses '..' and anything outside the root
        self.mkdir(p.parent)
        if is_link(p):
            raise _link_error(p, what)
        return p

    def save_file(self, path: str | os.PathLike[str], data: bytes | str, result: Any = None,
                  what: str = "file") -> Path | None:
        """`write`, except that a failure warns (naming the path and why) and notes it on `result` instead of
        raising: whatever was computed is kept in memory."""
        target = self._under(path)
        try:
            return self.write(target, data)
        except (OSError, WorkspaceError) as exc:
            self._unsaved(what, target, exc, result)
            return None

    def _unsaved(self, what: str, where: Path, exc: BaseException, result: Any) -> None:
        why = exc if isinstance(exc, WorkspaceError) else f"{type(exc).__name__}: {exc}"
        message = (f"the {what} could not be saved to {where} ({why}); it is kept in memory only: free space or "
                   f"fix the folder's permissions, or open the session with another workspace=")
        warnings.warn(message, stacklevel=4)
        if result is not None:
            _note_unsaved(result, message)

    # ---- engines ---------------------------------------------------------------------------
    def engine_dir(self, config: BuildConfig) -> Path:
        """Folder of the engine built from `config`."""
        return self.path / "engines" / config.key

    def save_engine(self, config: BuildConfig, metadata: dict[str, Any], files: dict[str, bytes]) -> Path:
        """Store an engine's files (variant model, plan, ...) and config/metadata JSON, all or nothing. A finished
        entry for the key is never replaced: if one appears while this one is staged (another writer), it is
        kept and this one discarded. An unfinished folder in the way is removed first."""
        import shutil
        final = self.engine_dir(config)
        staging = self.mkdir(self.path / "engines" / f".staging-{os.getpid()}-{secrets.token_hex(6)}")
        try:
            for name, data in files.items():
                self.write(staging / name, data)
            self.write_json(staging / "config.json", config.to_dict())
            self.write_json(staging / "metadata.json", metadata)
            if is_link(final):
                raise _link_error(final, str(final))
            if final.exists() and self.find_engine(config) is None:
                self.discard_engine(final)
            try:
                os.rename(staging, final)  # fails, replacing nothing, when the folder exists (non-empty)
            except OSError:
                if self.find_engine(config) is None:
                    raise WorkspaceError(f"cannot store the engine in {final}: the folder is in the way and "
                                         f"unfinished; delete it") from None
                shutil.rmtree(staging, ignore_errors=True)  # another writer finished first: keep theirs
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def discard_engine(self, folder: Path) -> None:
        """Remove a stored engine folder (damaged or superseded): renamed aside first, so readers never see a
        half-deleted entry."""
        import shutil
        folder = Path(folder)
        if folder.parent != self.path / "engines" or folder.name.startswith("."):
            raise WorkspaceError(f"{folder} is not an engine entry of {self.path}")
        if is_link(folder):
            raise _link_error(folder, str(folder))
        aside = folder.with_name(f".discarded-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
        try:
            os.rename(folder, aside)
        except FileNotFoundError:
            return  # someone else removed it already
        shutil.rmtree(aside, ignore_errors=True)

    def find_engine(self, config: BuildConfig) -> Path | None:
        """The stored engine folder for `config`, if complete."""
        d = self.engine_dir(config)
        if is_link(d):  # not an entry trtlab wrote: never read through it (saving it again is refused)
            return None
        return d if (d / "metadata.json").exists() and (d / "config.json").exists() else None

    def list_engines(self) -> list[dict[str, Any]]:
        """Every stored engine: key, config, metadata; a damaged entry is skipped with a warning naming it."""
        out = []
        for d in sorted((self.path / "engines").iterdir()):
            if d.name.startswith(".") or not (d / "metadata.json").exists():
                continue
            if is_link(d):
                warnings.warn(f"skipping engine entry {d}: it is a symbolic link, not an entry trtlab wrote",
                              stacklevel=2)
                continue
            config, meta = read_record(d / "config.json"), read_record(d / "metadata.json")
            if config is None or meta is None:
                continue
            if not isinstance(config, dict) or not isinstance(meta, dict):
                warnings.warn(f"skipping engine entry {d}: config.json and metadata.json must hold JSON objects",
                              stacklevel=2)
                continue
            out.append({"key": d.name, "config": config, "metadata": meta, "path": str(d)})
        return out

    # ---- results ---------------------------------------------------------------------------
    def save_result(self, kind: str, payload: dict[str, Any], frame: Any = None, result: Any = None) -> Path | None:
        """Write a result as JSON (and its table as CSV beside it) the moment it exists.

        When it cannot be written the result is kept: a warning says what could not be saved and where,
        `result` (the object the caller returns) gets the same note, and None is returned."""
        rid = new_id(kind)
        path = self.path / "results" / f"{rid}.json"
        try:
            if frame is not None:  # the table first: a JSON record is only ever beside its complete table
                self.write(path.with_suffix(".csv"), csv_text(frame))
            self.write_json(path, {"id": rid, "kind": kind, "created": time.time(), **payload})
        except (OSError, WorkspaceError) as exc:
            self._unsaved(f"{kind} result", path, exc, result)
            return None
        return path

    def results(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Stored results (newest last), each the parsed JSON; a damaged record is skipped with a warning."""
        out = []
        for p in sorted((self.path / "results").glob("*.json")):
            rec = read_record(p)
            if rec is None:
                continue
            if not isinstance(rec, dict) or not isinstance(rec.get("id"), str) or not isinstance(rec.get("kind"),
                                                                                                 str):
                warnings.warn(f"skipping record {p}: not a trtlab result (a JSON object with 'id' and 'kind')",
                              stacklevel=2)
                continue
            if kind is None or rec.get("kind") == kind:
                rec["path"] = str(p)
                out.append(rec)
        return out

    # ---- sweeps ----------------------------------------------------------------------------
    def sweep_dir(self, sweep_id: str) -> Path:
        """The folder of sweep `sweep_id` ('sweep-' and 12 hex digits; nothing else can name a folder)."""
        if not isinstance(sweep_id, str) or not re.fullmatch(r"sweep-[0-9a-f]{12}", sweep_id):
            raise ConfigError(f"{sweep_id!r} is not a sweep id (they read 'sweep-' and 12 hex digits; "
                                 f"SweepResult.spec.id or the folder names in {self.path / 'sweeps'})")
        return self.path / "sweeps" / sweep_id

    def __repr__(self) -> str:
        return f"<Workspace {self.path}>"
