"""Small file helpers shared by the data, checkpoint and weight-import code: hashing, the one atomic
write every file the app saves goes through (checkpoints, token caches, downloads, JSON), and the one
downloader (GPT-2 weights and datasets): progress bar, resume, size and sha256 checks."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

from chatgpt_scratch.errors import ScratchError


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks (GPT-2 XL is 6 GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def non_utf8_lines(data: bytes) -> list[int]:
    """The 1-based numbers of the lines of `data` that are not valid UTF-8 (a latin-1 export, say),
    so a reader that decodes with errors="replace" can say how many lines it changed."""
    bad = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(number)
    return bad


def describe_non_utf8(bad: list[int], source: str) -> str:
    """`note: 2 lines of FILE (1, 7) were not UTF-8; ...` for non_utf8_lines' result."""
    shown = ", ".join(map(str, bad[:5])) + (", ..." if len(bad) > 5 else "")
    return (f"note: {len(bad)} line{'s' if len(bad) != 1 else ''} of {source} ({shown}) "
            f"{'were' if len(bad) != 1 else 'was'} not UTF-8; their undecodable bytes were read as \ufffd "
            "(save the file as UTF-8 to keep them)")


def temp_prefix(path: Path) -> str:
    """Temp files of a save of `path` are `.NAME.*.tmp` beside it (hidden, so listings skip them)."""
    return f".{path.name}."


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete temp files a killed save of `path` left behind (`.NAME.*.tmp` beside it)."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f"{temp_prefix(path)}*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


class DiskFullError(ScratchError):
    """A save found no room on its disk (ENOSPC/EDQUOT): the message names the folder and the space."""


def write_atomically(target: str | Path, write: Callable[[str], None], size_hint: int | None = None) -> Path:
    """write(tmp) fills a temp file beside `target`; only a complete, fsynced file replaces target.

    A crash at any moment leaves the old file (if any) intact: the temp file is fsynced, given the
    permissions of any new file (mkstemp makes it 0600), renamed over the target (atomic on POSIX
    and Windows), and the folder is fsynced so the rename survives a power loss.

    A full disk or a folder that cannot be written raises ScratchError (DiskFullError for a full disk,
    naming the folder and `size_hint`, the bytes the save needs); the old file is still intact.
    """
    target = Path(target)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=".tmp", dir=target.parent)
        os.close(fd)
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        problem = write_problem(e, target, size_hint)
        if problem is not None:
            raise problem from None
        raise
    fsync_dir(target.parent)
    return target


def human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def _errno_of(e: BaseException) -> int | None:
    if isinstance(e, OSError) and e.errno is not None:
        return e.errno
    text = str(e)  # safetensors (Rust) raises SafetensorError with the OS message in its text
    if "No space left on device" in text:
        return errno.ENOSPC
    if "Disk quota exceeded" in text:
        return errno.EDQUOT
    if "Read-only file system" in text:
        return errno.EROFS
    if "Permission denied" in text:
        return errno.EACCES
    return None


def write_problem(e: BaseException, target: Path, size_hint: int | None = None) -> ScratchError | None:
    """The user-fixable reason a write of `target` failed (one line, what to do), or None if it is not one."""
    if isinstance(e, ScratchError):
        return None
    code = _errno_of(e)
    folder = target.parent
    if code in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{human_bytes(shutil.disk_usage(_existing(folder)).free)} free"
        except OSError:
            free = "free space unknown"
        need = f"needs about {human_bytes(size_hint)}" if size_hint else "did not fit"
        what = "no space left" if code == errno.ENOSPC else "disk quota exceeded"
        return DiskFullError(f"{what} in {folder}: saving {target.name} {need} ({free}); "
                             f"free some space there (the previous {target.name}, if any, is intact)")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        why = "the file system is read-only" if code == errno.EROFS else "permission denied"
        return ScratchError(f"cannot write {target.name} in {folder}: {why}; make the folder writable or "
                            "choose another one (nothing there was changed)")
    if code == errno.ENAMETOOLONG:
        return ScratchError(f"cannot write in {folder}: the name {target.name[:40]}... is too long; choose a shorter one")
    return None


def os_error_text(e: OSError) -> str:
    """One line for an OSError: the write_problem message where it is one, else `STRERROR: FILE`."""
    if e.filename:
        problem = write_problem(e, Path(os.fsdecode(e.filename)))
        if problem is not None:
            return str(problem)
    text = e.strerror or str(e) or type(e).__name__
    return f"{text}: {os.fsdecode(e.filename)}" if e.filename else text


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return write_atomically(target, write, size_hint=len(data))


def write_text_atomic(target: str | Path, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def _read_umask() -> int:
    umask = os.umask(0)  # the only way to read it is to set it; done once, at import
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _fsync_file(path: str | Path) -> None:
    """Flush to disk, and give the file the permissions of any new file (temp files start as 0600)."""
    os.chmod(path, 0o666 & ~_UMASK)
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or a new file in `folder` durable (no-op where folders cannot be opened)."""
    if hasattr(os, "O_DIRECTORY"):
        dir_fd = os.open(folder, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# --- downloads ------------------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # keep the 302 so its X-Linked-* headers can be read
        return None


def _remote_facts(url: str, timeout: float) -> tuple[int | None, str | None]:
    """(size, sha256) the server announces, from a HEAD request that does not follow redirects.

    The Hub answers /resolve/ with a redirect to its CDN carrying X-Linked-Size and
    X-Linked-Etag (the LFS object's sha256); a plain server gives Content-Length.
    """
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        response = opener.open(urllib.request.Request(url, method="HEAD"), timeout=timeout)
        headers = response.headers
    except urllib.error.HTTPError as e:
        if e.code in (301, 302, 303, 307, 308):
            headers = e.headers
        elif e.code == 404:
            raise ScratchError(f"{url} was not found (HTTP 404)") from None
        else:
            return None, None  # HEAD refused: rely on the GET
    size = headers.get("X-Linked-Size") or (headers.get("Content-Length") if not headers.get("Location") else None)
    etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip('"').removeprefix("W/").strip('"')
    return (int(size) if size and size.isdigit() else None), (etag.lower() if re.fullmatch(r"[0-9a-fA-F]{64}", etag) else None)


def download_file(url: str, dest: str | Path, expected_size: int | None = None, expected_sha256: str | None = None,
                  progress: bool = True, what: str = "file", timeout: float = 30.0,
                  chunk: int = 1 << 20, _after_chunk: Callable[[int], None] | None = None,
                  fallback: str = "use --from FILE") -> str:
    """Download url to dest with a progress bar; resume from dest.part with an HTTP Range request.

    `fallback` completes the error messages with what the user can do instead (the command's own
    option: import-gpt2's "use --from FILE", a dataset's "pass --data PATH").

    Checks the size (known, announced by the server, or Content-Length) and the sha256 when one is
    known; a download that fails a check is deleted so the next try starts clean. Returns the sha256.
    An existing dest that passes the known checks is not downloaded again.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file():
        if expected_size is None or dest.stat().st_size == expected_size:
            digest = sha256_file(dest)
            if expected_sha256 is None or digest == expected_sha256:
                return digest
    try:
        if expected_size is None or expected_sha256 is None:
            size, sha = _remote_facts(url, timeout)
            expected_size, expected_sha256 = expected_size or size, expected_sha256 or sha
        have = part.stat().st_size if part.is_file() else 0
        if expected_size is not None and have > expected_size:
            have = 0
        hasher = hashlib.sha256()
        if expected_size is None or have < expected_size:
            have, total = _fetch(url, part, have, expected_size, hasher, progress, what, timeout, chunk, _after_chunk)
            expected_size = expected_size or total
        else:  # a complete .part from an interrupted run: only verification is left
            _hash_into(hasher, part, chunk)
    except urllib.error.HTTPError as e:
        raise ScratchError(f"downloading the {what} from {url} failed: HTTP {e.code} {e.reason}; "
                           f"try again later, or download it elsewhere and {fallback}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = str(getattr(e, "reason", None) or e).splitlines()[0][:120]
        kept = f"; the partial download {part} is kept and resumes next time" if part.is_file() else ""
        raise ScratchError(f"cannot reach {urllib.parse.urlsplit(url).hostname} to download the {what} ({reason}); "
                           f"download {url} elsewhere and {fallback}{kept}") from None
    digest = hasher.hexdigest()
    got = part.stat().st_size
    if expected_size is not None and got != expected_size:
        part.unlink()
        raise ScratchError(f"the downloaded {what} has {got} bytes, expected {expected_size}; "
                           "it was deleted, nothing was saved: run the command again")
    if expected_sha256 is not None and digest != expected_sha256:
        part.unlink()
        raise ScratchError(f"the downloaded {what} has sha256 {digest[:16]}..., expected {expected_sha256[:16]}...; "
                           "it was deleted, nothing was saved: run the command again")
    os.replace(part, dest)
    return digest


def _hash_into(hasher: "hashlib._Hash", path: Path, chunk: int) -> None:
    with open(path, "rb") as f:
        while block := f.read(chunk):
            hasher.update(block)


def _fetch(url: str, part: Path, have: int, expected_size: int | None, hasher: "hashlib._Hash", progress: bool,
           what: str, timeout: float, chunk: int, after_chunk: Callable[[int], None] | None) -> tuple[int, int | None]:
    """Append the rest of url to part (from byte `have`), hashing everything; -> (bytes in part, total)."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as response:
        if have and response.status != 206:
            have = 0  # the server ignored the Range: start over
        if have:
            _hash_into(hasher, part, chunk)
        length = response.headers.get("Content-Length", "")
        total = expected_size or (have + int(length) if length.isdigit() else None)
        from tqdm import tqdm

        with open(part, "ab" if have else "wb") as out, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=f"downloading {what}", disable=not progress,
        ) as bar:
            while block := response.read(chunk):
                out.write(block)
                hasher.update(block)
                bar.update(len(block))
                if after_chunk is not None:
                    after_chunk(out.tell())
            out.flush()
            os.fsync(out.fileno())
            return out.tell(), total
