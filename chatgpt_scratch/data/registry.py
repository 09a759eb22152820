"""Known datasets: where each comes from, its sha256, and where it lives locally.

`resolve_dataset(name_or_path)` is what every `--data` flag goes through:

- an existing path is used as it is (so `--data PATH` always works, offline too);
- a registry name ("sms-spam", "instruction-data", "alpaca", "the-verdict", "pretrain-compact", ...) is
  looked up in `paths.datasets_dir()`, then among the datasets shipped with the app (builtin.py); only
  if it is in neither is it downloaded from its canonical URL with a progress bar, checked against its
  sha256, and written atomically;
- with no network, one ScratchError names the URL and says to pass `--data PATH`.

Downloads go through fileio.download_file (the standard library's urllib); nothing is downloaded without saying so on stderr.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from chatgpt_scratch.storage import paths
from chatgpt_scratch.errors import ScratchError
from chatgpt_scratch.storage.fileio import download_file, write_bytes_atomic


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    url: str | None           # None: shipped with the app only (no single canonical download)
    filename: str             # the local file name in datasets_dir()
    sha256: str | None        # of the local file (for a zip download: of the unzipped member); None = unknown
    size: int | None          # bytes of the local file, when known
    description: str
    license: str
    zip_member: str | None = None  # the download is a zip; this member is the file we keep


# Hashes and sizes are those of the canonical downloads (of the unzipped member for a zip), as fetched from their URLs.
# The shared development copies of sms-spam and alpaca are subsets of these (some entries withheld),
# so their hashes differ; pass them with --data PATH.
_DATASETS = (
    DatasetInfo(
        name="sms-spam",
        url="https://archive.ics.uci.edu/static/public/228/sms+spam+collection.zip",
        filename="SMSSpamCollection",
        sha256="7d039a24a6083ed9ef0f806ebad56bbb976e3aeb8de05669173bfdc4996c239d",
        size=None,
        description="UCI SMS Spam Collection v.1: 5,574 `label<TAB>text` lines (ham/spam)",
        license="free with attribution (Almeida & Gómez Hidalgo, 2011)",
        zip_member="SMSSpamCollection",
    ),
    DatasetInfo(
        name="instruction-data",
        url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/01_main-chapter-code/"
            "instruction-data.json",
        filename="instruction-data.json",
        sha256="7e09a9af353722ca15c18bc580f093f9c39d3178335a75177319cb1e1d163944",
        size=203_524,
        description="the book's 1,100 Alpaca-style instructions (ch07)",
        license="Apache-2.0",
    ),
    DatasetInfo(
        name="alpaca",
        url="https://raw.githubusercontent.com/tatsu-lab/stanford_alpaca/main/alpaca_data.json",
        filename="alpaca_data.json",
        sha256=None,  # no hash recorded for the full 52k file: the download is not verified
        size=None,
        description="Stanford Alpaca, 52k instructions",
        license="CC BY-NC 4.0 (non-commercial)",
    ),
    DatasetInfo(
        name="the-verdict",
        url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch02/01_main-chapter-code/the-verdict.txt",
        filename="the-verdict.txt",
        sha256="b41e41a68f0398a3154ae69e2e4c0e2694e17fe0d66730536837f1b01935b31f",
        size=20_479,
        description="Edith Wharton, The Verdict (1908): the book's ch02/ch05 pretraining text",
        license="public domain",
    ),
    DatasetInfo(
        name="instruction-preference",
        url="https://raw.githubusercontent.com/rasbt/LLMs-from-scratch/main/ch07/04_preference-tuning-with-dpo/"
            "instruction-data-with-preference.json",
        filename="instruction-data-with-preference.json",
        sha256="305315abf14f65fa42c01a0877572f832606571c2a7d49f152ac1d758b16756e",
        size=386_968,
        description="the book's 1,100 instructions with a chosen and a rejected response each (DPO)",
        license="Apache-2.0",
    ),
    DatasetInfo(
        name="pretrain-compact",
        url=None,
        filename="pretrain",  # a folder of .txt files
        sha256=None,
        size=None,
        description="a compact pretraining corpus: 12 public-domain books (Project Gutenberg) and the first "
                    "~1.1k TinyStories, 4.9 MB (see datasets/README.md)",
        license="public domain (books); CDLA-Sharing-1.0 (TinyStories)",
    ),
)
REGISTRY: dict[str, DatasetInfo] = {info.name: info for info in _DATASETS}  # each under its name


def resolve_dataset(name_or_path: str | Path, download: bool = True) -> Path:
    """A path that exists -> itself; a registry name -> its local file, downloading it if needed."""
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    info = REGISTRY.get(str(name_or_path))
    if info is None:
        known = ", ".join(REGISTRY)
        raise ScratchError(f"{name_or_path}: no such file or folder, and not a known dataset name ({known})")
    local = paths.datasets_dir() / info.filename
    if local.exists():
        return local
    from chatgpt_scratch.storage.builtin import bundled_datasets_dir

    bundled = bundled_datasets_dir()
    if bundled is not None and (bundled / info.filename).exists():
        return bundled / info.filename
    if info.url is None:
        raise ScratchError(f"dataset {info.name!r} ships with the app but is not in {local.parent} "
                           f"or {bundled}; reinstall from the repository or pass --data PATH")
    if not download:
        raise ScratchError(f"dataset {info.name!r} is not in {local.parent}; download it from {info.url} "
                           "or pass --data PATH")
    return download_dataset(info, local)


def download_dataset(info: DatasetInfo, target: Path, timeout: float = 30.0) -> Path:
    """Fetch info.url with fileio.download_file (progress bar on stderr, resumable, size and sha256 checked),
    keeping the zip member for a zipped dataset; nothing is left at `target` unless every check passed."""
    print(f"downloading {info.name} from {info.url}", file=sys.stderr)
    fallback = "pass --data PATH"
    if info.zip_member is None:
        digest = download_file(info.url, target, expected_size=info.size, expected_sha256=info.sha256,
                               what=f"dataset {info.name!r}", timeout=timeout, fallback=fallback)
    else:
        archive = target.with_name(f".{target.name}.zip")
        download_file(info.url, archive, what=f"dataset {info.name!r}", timeout=timeout, fallback=fallback)
        try:
            with zipfile.ZipFile(archive) as z:
                data = z.read(info.zip_member)
        except (zipfile.BadZipFile, KeyError):
            raise ScratchError(f"{info.url} did not give a zip holding {info.zip_member}; "
                               f"download it by hand and {fallback}") from None
        finally:
            archive.unlink(missing_ok=True)
        digest = hashlib.sha256(data).hexdigest()
        if info.sha256 is not None and digest != info.sha256:
            raise ScratchError(f"{info.url} gave a file with sha256 {digest}, expected {info.sha256}; "
                               f"nothing was saved: try again later or {fallback}")
        write_bytes_atomic(target, data)
    if info.sha256 is None:
        print(f"note: {info.name} has no known sha256 to check against; got {digest}", file=sys.stderr)
    print(f"saved {target} ({target.stat().st_size:,} bytes, sha256 {digest[:12]}…)", file=sys.stderr)
    return target
