"""Where dataset files come from: a local folder, the user cache, the system, or a mirror.

The order (each choice logged once on the ``xpnet.data`` logger):

1. ``data_dir`` (the trainer's ``--data-dir``), else ``$XPNET_DATA_DIR``: a
   folder holding ``<dataset>/`` or the four files directly;
2. the user cache, ``$XDG_CACHE_HOME/xpnet/<dataset>`` (default ``~/.cache``);
3. system copies (Debian's ``dataset-fashion-mnist`` package);
4. a download from public mirrors into the user cache, verified against the
   published checksums and written atomically.

Local copies are trusted by structure (IDX validation, done when decoding) and
identified by the SHA-256 of their *uncompressed* contents where it is known,
never rejected for the hash of their .gz: Debian recompressed Fashion-MNIST.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import os
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from xpnet.data._files import atomic_path, digest
from xpnet.data.idx import DataError, parse_idx

logger = logging.getLogger("xpnet.data")

ENV_DATA_DIR = "XPNET_DATA_DIR"
ENV_OFFLINE = "XPNET_OFFLINE"
FETCH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class FileSpec:
    """One of a dataset's four files and the checksums published for it."""

    name: str  # "train-images-idx3-ubyte"
    kind: str  # "images" | "labels"
    split: str  # "train" | "test"
    count: int
    gz_md5: str  # MD5 of the .gz the mirrors serve (as published upstream)
    raw_sha256: str  # SHA-256 of the uncompressed IDX file

    @property
    def gz_name(self) -> str:
        return self.name + ".gz"

    def local_names(self) -> tuple[str, ...]:
        """Names a local copy may have: gzipped, raw, and the original 'train-images.idx3-ubyte'."""
        dotted = self.name.replace("-idx", ".idx")
        return (self.gz_name, self.name, dotted + ".gz", dotted)


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset xpnet knows how to find, verify and download."""

    name: str
    title: str
    classes: tuple[str, ...]
    files: tuple[FileSpec, ...]
    mirrors: tuple[str, ...]
    has_sample: bool  # a bundled real sample exists for the offline fallback
    how_to_get: str = field(default="")

    def file(self, split: str, kind: str) -> FileSpec:
        return next(f for f in self.files if f.split == split and f.kind == kind)


MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    classes=tuple(str(d) for d in range(10)),
    files=(
        FileSpec("train-images-idx3-ubyte", "images", "train", 60000, "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                 "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        FileSpec("train-labels-idx1-ubyte", "labels", "train", 60000, "d53e105ee54ea40749a09fcbcd1e9432",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        FileSpec("t10k-images-idx3-ubyte", "images", "test", 10000, "9fb629c4189551a2d022fa330f9573f3",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        FileSpec("t10k-labels-idx1-ubyte", "labels", "test", 10000, "ec29112dd5afa0611ce80d1b7f02629c",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    ),
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    has_sample=True,
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
             "Ankle boot"),
    files=(
        FileSpec("train-images-idx3-ubyte", "images", "train", 60000, "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
        FileSpec("train-labels-idx1-ubyte", "labels", "train", 60000, "25c81989df183df01b3e8a0aad5dffbe",
                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
        FileSpec("t10k-images-idx3-ubyte", "images", "test", 10000, "bef4ecab320f06d8554ea6380940ec79",
                 "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
        FileSpec("t10k-labels-idx1-ubyte", "labels", "test", 10000, "bb300cfdad3c16e7a12a480ee83cd310",
                 "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
    ),
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
    has_sample=False,
    how_to_get="on Debian/Ubuntu `apt-get install dataset-fashion-mnist`",
)

SPECS: dict[str, DatasetSpec] = {s.name: s for s in (MNIST, FASHION_MNIST)}
_ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist"}

# System-wide copies per dataset; a module-level table so tests can point it elsewhere.
SYSTEM_DIRS: dict[str, list[Path]] = {
    "fashion-mnist": [Path("/usr/share/datasets/fashion-mnist")],  # Debian: dataset-fashion-mnist
}

# SHA-256 of every known uncompressed file -> (dataset, file): tells MNIST from Fashion-MNIST,
# and train from test, whatever the files are called.
KNOWN_CONTENT: dict[str, tuple[str, str]] = {
    f.raw_sha256: (s.name, f.name) for s in SPECS.values() for f in s.files
}


def get_spec(name: str) -> DatasetSpec:
    """The spec for 'mnist' or 'fashion-mnist' (also 'fashion_mnist', 'fashion')."""
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key.replace("-", ""), key)
    if key not in SPECS:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(SPECS)}")
    return SPECS[key]


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/xpnet`` (``~/.cache/xpnet`` when unset or not absolute, per the XDG spec)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xpnet"


def cache_dir(spec: DatasetSpec) -> Path:
    return cache_root() / spec.name


@dataclass
class Found:
    """A complete set of files for a dataset and a human description of where it came from."""

    files: dict[str, Path]  # FileSpec.name -> path
    source: str
    origin: str  # "data_dir" | "env" | "cache" | "system" | "download" | "sample"


def find_in(folder: Path, spec: DatasetSpec) -> dict[str, Path]:
    """The dataset's files present in ``folder`` (any of their accepted names)."""
    out: dict[str, Path] = {}
    for f in spec.files:
        for cand in f.local_names():
            p = folder / cand
            if p.is_file():
                out[f.name] = p
                break
    return out


def _probe(base: Path, spec: DatasetSpec) -> tuple[Path, dict[str, Path]]:
    """Look in ``base/<dataset>`` first, then ``base`` itself; return the folder and what it holds."""
    best: tuple[Path, dict[str, Path]] = (base, {})
    for folder in (base / spec.name, base):
        found = find_in(folder, spec)
        if len(found) == len(spec.files):
            return folder, found
        if len(found) > len(best[1]):
            best = (folder, found)
    return best


def _missing(spec: DatasetSpec, found: dict[str, Path]) -> str:
    return ", ".join(f.gz_name for f in spec.files if f.name not in found)


def locate(spec: DatasetSpec, data_dir: Path | str | None = None) -> tuple[Found | None, str]:
    """Find a complete local copy of ``spec``'s files, in the documented order.

    Returns ``(found, looked)``: ``found`` is None when no local source has the
    dataset, and ``looked`` lists the places tried (for error messages).
    """
    looked: list[str] = []
    if data_dir is not None:
        base, label, origin = Path(data_dir).expanduser(), "data_dir", "data_dir"
        if not base.is_dir():
            raise DataError(f"data_dir {base} does not exist or is not a folder", base)
    elif os.environ.get(ENV_DATA_DIR):
        base, label, origin = Path(os.environ[ENV_DATA_DIR]).expanduser(), ENV_DATA_DIR, "env"
    else:
        base = None
    if base is not None:
        looked.append(f"{base} ({label})")
        if not base.is_dir():
            logger.warning("%s: %s=%s is not a folder; trying the next source", spec.name, label, base)
        else:
            folder, files = _probe(base, spec)
            if len(files) == len(spec.files):
                return _chose(spec, Found(files, f"{folder} (from {label})", origin)), ""
            if files:
                raise DataError(f"{folder} (from {label}) holds only part of {spec.title}: missing "
                                f"{_missing(spec, files)}", folder)
            logger.warning("%s: %s=%s holds no %s files (looked in %s and %s); trying the next source",
                           spec.name, label, base, spec.title, base / spec.name, base)

    cdir = cache_dir(spec)
    looked.append(f"{cdir} (user cache)")
    files = find_in(cdir, spec)
    if len(files) == len(spec.files):
        return _chose(spec, Found(files, f"{cdir} (user cache)", "cache")), ""

    for sysdir in SYSTEM_DIRS.get(spec.name, []):
        looked.append(f"{sysdir} (system)")
        files = find_in(sysdir, spec)
        if len(files) == len(spec.files):
            return _chose(spec, Found(files, f"{sysdir} (system copy)", "system")), ""
        if files:
            logger.warning("%s: %s holds only part of %s (missing %s); skipping it", spec.name, sysdir,
                           spec.title, _missing(spec, files))
    return None, "; ".join(looked)


def _chose(spec: DatasetSpec, found: Found) -> Found:
    """Log the one source chosen for this load."""
    logger.info("%s: using %s", spec.name, found.source)
    return found


# ---------------------------------------------------------------- downloads


class DownloadError(DataError):
    """No mirror delivered a verified file. ``offline`` is True when every failure was a network error."""

    def __init__(self, message: str, offline: bool) -> None:
        super().__init__(message)
        self.offline = offline


class ChecksumError(DataError):
    """A downloaded file does not match its published checksum."""


def fetch_url(url: str, dest: Path) -> None:
    """Copy ``url`` into ``dest``: the only function here that uses the network (tests replace it).

    Shows a tqdm bar on a terminal. Raises OSError (URLError, timeouts, a
    connection closed before Content-Length bytes arrived) on network failure.
    Tests replace it with a local fake.
    """
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": "xpnet/0.1 (dataset download)"})
    with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp, open(dest, "wb") as out:
        length = int(resp.headers.get("Content-Length") or 0) or None
        got = 0
        with tqdm(total=length, unit="B", unit_scale=True, unit_divisor=1024, desc=url.rsplit("/", 1)[-1],
                  leave=False, disable=None) as bar:
            while chunk := resp.read(1 << 16):
                out.write(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        if length is not None and got != length:
            raise ConnectionError(f"transfer interrupted: received {got} of {length} bytes")


def verify_download(data: bytes, f: FileSpec, url: str) -> str:
    """Check a downloaded .gz against the published sums; return how it was verified.

    The published MD5 of the .gz is checked first; a mirror that recompressed
    the file is accepted when the uncompressed SHA-256 matches instead.
    """
    got_md5 = digest(data, "md5")
    if got_md5 == f.gz_md5:
        parse_idx(gzip.decompress(data), url, expect=f.kind)
        return "MD5 of the .gz"
    try:
        raw = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise ChecksumError(f"{url}: checksum mismatch: MD5 {got_md5} != published {f.gz_md5}, and "
                            f"the download is not valid gzip ({exc})") from None
    got_sha = digest(raw, "sha256")
    if got_sha != f.raw_sha256:
        raise ChecksumError(f"{url}: checksum mismatch: MD5 {got_md5} != published {f.gz_md5}, and the "
                            f"uncompressed SHA-256 {got_sha} != published {f.raw_sha256}")
    parse_idx(raw, url, expect=f.kind)
    return "SHA-256 of the uncompressed data (recompressed copy)"


def download_file(f: FileSpec, mirrors: tuple[str, ...] | list[str], dest_dir: Path) -> tuple[Path, str]:
    """Download one file into ``dest_dir``, trying each mirror; return (path, mirror used).

    The file appears under its final name only once verified; a failed,
    corrupt or interrupted transfer leaves neither it nor a temporary file.
    """
    dest = Path(dest_dir) / f.gz_name
    failures: list[str] = []
    offline = True
    for mirror in mirrors:
        url = mirror + f.gz_name
        try:
            with atomic_path(dest) as tmp:
                logger.info("downloading %s", url)
                fetch_url(url, tmp)
                how = verify_download(tmp.read_bytes(), f, url)
            logger.info("verified %s (%s)", dest, how)
            return dest, mirror
        except DataError as exc:  # a checksum or structure failure: the mirror is online but wrong
            offline = False
            failures.append(str(exc))
            logger.warning("%s", exc)
        except (OSError, http.client.HTTPException) as exc:
            failures.append(f"{url}: {exc.__class__.__name__}: {exc}")
            logger.info("download failed: %s: %s", url, exc)
    raise DownloadError(f"could not download {f.gz_name}: " + "; ".join(failures), offline=offline)


def download(spec: DatasetSpec, dest_dir: Path | None = None) -> Found:
    """Download whatever of ``spec`` is missing from ``dest_dir`` (default: the user cache)."""
    dest_dir = Path(dest_dir) if dest_dir is not None else cache_dir(spec)
    have = find_in(dest_dir, spec)
    used: set[str] = set()
    files: dict[str, Path] = {}
    for f in spec.files:
        if f.name in have:
            files[f.name] = have[f.name]
            continue
        files[f.name], mirror = download_file(f, spec.mirrors, dest_dir)
        used.add(mirror)
    source = f"{dest_dir} (downloaded from {', '.join(sorted(used))})" if used else f"{dest_dir} (user cache)"
    return _chose(spec, Found(files, source, "download" if used else "cache"))


def downloads_allowed(download: bool | None) -> bool:
    """``download`` if given, else True unless ``$XPNET_OFFLINE`` is set to something other than 0."""
    if download is not None:
        return bool(download)
    return os.environ.get(ENV_OFFLINE, "").strip() in ("", "0")
