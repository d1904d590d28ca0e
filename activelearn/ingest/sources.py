"""Reading untrusted inputs: folders, archives, loose files, URL lists and URLs, under limits.

Every file is treated as hostile until proven an image: sizes are capped before
reading, archive members are read as streams and never extracted (so `../evil.jpg`,
absolute names, links and device files cannot touch the disk), only common photo
formats are decoded, Pillow verifies the file and a per-call pixel limit stops
decompression bombs. One bad file becomes one line in the report; the rest of the
import goes on.
"""

from __future__ import annotations

import csv
import http.client
import io
import ipaddress
import os
import re
import socket
import ssl
import stat
import tarfile
import time
import urllib.parse
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from activelearn import __version__
from activelearn.convert import normalize_image, open_for_conversion
from activelearn.errors import ImportRejected

_ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_URL_LIST_SUFFIXES = (".txt", ".csv")
Image.init()
#: Photo formats accepted. Pillow would also open EPS (by running Ghostscript on the
#: file) and dozens of legacy formats; none is a product photo, all widen the attack surface.
IMAGE_FORMATS = tuple(f for f in ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO", "AVIF") if f in Image.OPEN)
_MB = 1024 * 1024
#: Set to 1 to let URL imports reach private, loopback and link-local addresses (e.g. an intranet server).
ALLOW_PRIVATE_URLS_ENV = "ACTIVELEARN_ALLOW_PRIVATE_URLS"
#: The folders (os.pathsep-separated) the UI's server-folder box may read; default <home>/data/incoming.
IMPORT_ROOTS_ENV = "ACTIVELEARN_IMPORT_ROOTS"


@dataclass(frozen=True)
class ImportLimits:
    """Resource caps for one import; a file over a cap is rejected, not truncated."""

    max_file_bytes: int = 25 * _MB
    max_import_bytes: int = 2 * 1024 * _MB
    #: Decompression-bomb limit, applied per call rather than via Pillow's global.
    max_pixels: int = 40_000_000
    #: Seconds allowed for connecting and for each read of a URL download.
    url_timeout_s: float = 10.0
    #: Seconds allowed for a whole URL download, so a server dripping bytes cannot stall the import.
    url_total_s: float = 60.0
    max_url_bytes: int = 25 * _MB
    #: Fetch URLs whose host resolves to loopback, private or link-local addresses (off: the
    #: server would otherwise fetch from, and probe, its own network for whoever types a URL).
    #: ACTIVELEARN_ALLOW_PRIVATE_URLS=1 in the environment allows them too.
    allow_private_urls: bool = False


@dataclass(frozen=True)
class Rejected:
    """One file that was not imported, and why (one line of the report)."""

    file: str
    reason: str


@dataclass(frozen=True)
class Candidate:
    """One file's bytes and where they came from."""

    display_name: str          # shown in the report
    original_name: str         # stored with the item
    source: str
    folder: str | None         # parent folder name: the class hint
    data: bytes


class _ImportBudgetSpent(Exception):
    """Raised inside the input walk when the per-import byte cap is reached."""

    def __init__(self, display_name: str):
        super().__init__(display_name)
        self.display_name = display_name


class _Budget:
    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def charge(self, display_name: str, size: int) -> None:
        if self.used + size > self.limit:
            raise _ImportBudgetSpent(display_name)
        self.used += size


def _input_kind(text: str) -> str:
    """What one input is: url, folder, missing, zip, tar, url-list or file (a loose file)."""
    if _is_url(text):
        return "url"
    path = Path(text)
    if path.is_dir():
        return "folder"
    if not path.exists():
        return "missing"
    if _has_suffix(path, _ARCHIVE_SUFFIXES):
        return "zip" if path.name.lower().endswith(".zip") else "tar"
    if _has_suffix(path, _URL_LIST_SUFFIXES):
        return "url-list"
    return "file"


def iter_inputs(inputs: Sequence[str | os.PathLike], source: str | None, limits: ImportLimits, *,
                url_lists: bool = False, confine_to: Sequence[Path] | None = None,
                ) -> Iterator[Candidate | Rejected]:
    """Every file of every input, lazily, as a candidate or a rejection.

    ``source`` overrides the recorded source; by default it follows the input kind. A .txt
    or .csv is read as a list of URLs only with ``url_lists``: an uploaded text file is not
    a reason to start downloading. With ``confine_to``, a folder walk does not follow a
    link to a file outside those folders.
    """
    budget = _Budget(limits.max_import_bytes)
    try:
        for item in inputs:
            text = os.fspath(item)
            path = Path(text)
            kind = _input_kind(text)
            if kind == "url":
                yield from _iter_urls([text], source or "url", limits, budget)
            elif kind == "folder":
                yield from _iter_folder(path, source or "folder", limits, budget, confine_to)
            elif kind == "missing":
                yield Rejected(text, "no such file or folder")
            elif kind in ("zip", "tar"):
                members = _zip_members(path) if kind == "zip" else _tar_members(path)
                yield from _iter_archive(path, members, source or "archive", limits, budget)
            elif kind == "url-list" and url_lists:
                yield from _iter_url_list(path, source or "url", limits, budget)
            elif kind == "url-list":
                yield Rejected(text, "a .txt or .csv file is not a photo; it is read as a list of image URLs "
                                     "only in URL-list mode")
            else:
                yield _read_local_file(path, text, path.name, source or "upload", limits, budget)
    except _ImportBudgetSpent as spent:
        yield Rejected(spent.display_name, f"import size limit of {_size(limits.max_import_bytes)} "
                       "reached: this and later files were not imported")


def within_roots(text: str, roots: Sequence[Path]) -> Path:
    """The real path of a server folder or archive a user typed, if it lies under one of ``roots``.

    Links are resolved first, so neither ``..`` nor a symlink leads out. Raises ImportRejected
    with one sentence otherwise.
    """
    resolved = Path(text).expanduser().resolve()
    real_roots = [Path(root).expanduser().resolve() for root in roots]
    if not any(resolved == root or root in resolved.parents for root in real_roots):
        raise ImportRejected(f"{text} is not in an import folder: put the photos under "
                             f"{' or '.join(str(r) for r in real_roots)} (the folders {IMPORT_ROOTS_ENV} names)")
    if not resolved.exists():
        raise ImportRejected(f"{text}: no such file or folder")
    return resolved


def import_roots(default: Path) -> list[Path]:
    """The folders the server-folder box may read: ACTIVELEARN_IMPORT_ROOTS (os.pathsep-separated), else default."""
    configured = [part for part in os.environ.get(IMPORT_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
    return [Path(part).expanduser() for part in configured] or [default]


def count_inputs(inputs: Sequence[str | os.PathLike], url_lists: bool = False) -> int | None:
    """How many files the walk will visit, when that is cheap to know (not for tar streams)."""
    total = 0
    for item in inputs:
        text = os.fspath(item)
        path = Path(text)
        kind = _input_kind(text)
        if kind == "folder":
            total += sum(1 for folder, dirs, files in os.walk(path)
                         if not _skipped_name(os.path.relpath(folder, path).replace(os.sep, "/"))
                         for name in files if not _skipped_name(name))
        elif kind == "zip":
            try:
                with zipfile.ZipFile(path) as archive:
                    total += sum(1 for info in archive.infolist()
                                 if not info.is_dir() and not _skipped_name(info.filename))
            except (zipfile.BadZipFile, OSError):
                total += 1
        elif kind == "tar":
            return None
        elif kind == "url-list" and url_lists:
            try:
                total += sum(1 for _ in _read_url_list(path))
            except (OSError, UnicodeDecodeError, csv.Error):
                total += 1
        else:  # a URL, a missing path or a loose file: one line each
            total += 1
    return total


def _has_suffix(path: Path, suffixes: Sequence[str]) -> bool:
    return path.name.lower().endswith(tuple(suffixes))


def _is_url(text: str) -> bool:
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text) is not None


def _size(n: int) -> str:
    return f"{n / _MB:.1f} MB" if n >= _MB else f"{n:,} bytes"


def _too_large(size: int, limit: int) -> str:
    return f"file too large: {_size(size)} is over the {_size(limit)} limit"


def _skipped_name(name: str) -> bool:
    """System clutter (.DS_Store, AppleDouble ._files, __MACOSX/) is skipped without a report line."""
    return any((part.startswith(".") and part not in (".", "..")) or part == "__MACOSX"
               for part in re.split(r"[\\/]", name))


# ---------------------------------------------------------------- local files

def _iter_folder(root: Path, source: str, limits: ImportLimits, budget: _Budget,
                 confine_to: Sequence[Path] | None = None) -> Iterator[Candidate | Rejected]:
    """Walk in sorted order (stable reports); symlinked folders are not followed (no loops)."""
    real_roots = [Path(r).resolve() for r in confine_to] if confine_to is not None else None
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not _skipped_name(d))
        for name in sorted(files):
            if _skipped_name(name):
                continue
            path = Path(folder) / name
            if real_roots is not None and path.is_symlink():
                target = path.resolve()
                if not any(target == r or r in target.parents for r in real_roots):
                    yield Rejected(str(path), "link to a file outside the import folders refused")
                    continue
            yield _read_local_file(path, str(path), path.relative_to(root).as_posix(), source,
                                   limits, budget)


def _read_local_file(path: Path, display_name: str, original_name: str, source: str,
                     limits: ImportLimits, budget: _Budget) -> Candidate | Rejected:
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO would block the read for ever
            return Rejected(display_name, "not a regular file")
        if info.st_size > limits.max_file_bytes:
            return Rejected(display_name, _too_large(info.st_size, limits.max_file_bytes))
        budget.charge(display_name, info.st_size)
        with open(path, "rb") as stream:
            data = stream.read(limits.max_file_bytes + 1)
    except OSError as exc:
        return Rejected(display_name, f"cannot read: {exc.strerror or exc}")
    if len(data) > limits.max_file_bytes:  # grew since stat
        return Rejected(display_name, _too_large(len(data), limits.max_file_bytes))
    return Candidate(display_name, original_name, source, path.parent.name or None, data)


# ---------------------------------------------------------------- archives

@dataclass(frozen=True)
class _Member:
    """An archive member's header, as zip and tar both describe it."""

    name: str
    size: int
    #: "file", "dir", "link", "device" (or FIFO / socket), or "other" (not a regular file).
    kind: str
    link_target: str | None = None    # known for tar links only
    encrypted: bool = False


class _UnreadableMember(Exception):
    """A member's bytes could not be read; ``fatal`` when the rest of the stream is lost too."""

    def __init__(self, reason: str, *, fatal: bool):
        super().__init__(reason)
        self.fatal = fatal


#: Reads a member's bytes, at most the given count; raises _UnreadableMember.
_MemberReader = Callable[[int], bytes]


def _unsafe_member_name(name: str) -> str | None:
    """Why an archive member name could escape an extraction folder (zip-slip), or None."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return f"unsafe archive member (absolute path): {name}"
    if ".." in re.split(r"[\\/]", name):
        return f"unsafe archive member ('..' in path): {name}"
    return None


def _member_refusal(member: _Member, limits: ImportLimits) -> str | None:
    """Why a member with a safe name is refused, or None: one ladder for zip and tar."""
    name = member.name
    if member.kind == "link":
        target = "" if member.link_target is None else f" -> {member.link_target}"
        return f"link member refused: {name}{target}"
    if member.kind == "device":
        return f"device or special file refused: {name}"
    if member.kind == "other":
        return f"not a regular file: {name}"
    if member.encrypted:
        return "encrypted archive member"
    if member.size > limits.max_file_bytes:
        return _too_large(member.size, limits.max_file_bytes)
    return None


def _member_folder(name: str) -> str | None:
    parent = PurePosixPath(name.replace("\\", "/")).parent.name
    return parent or None


def _iter_archive(path: Path, members: Iterator[tuple[_Member, _MemberReader] | Rejected], source: str,
                  limits: ImportLimits, budget: _Budget) -> Iterator[Candidate | Rejected]:
    """Check each member before reading it, then read it as a stream (nothing is extracted)."""
    for entry in members:
        if isinstance(entry, Rejected):  # the archive itself is unreadable or damaged
            yield entry
            continue
        member, read = entry
        display = f"{path}:{member.name}"
        refusal = _unsafe_member_name(member.name)
        if refusal is None and (member.kind == "dir" or _skipped_name(member.name)):
            continue
        refusal = refusal or _member_refusal(member, limits)
        if refusal is not None:
            yield Rejected(display, refusal)
            continue
        budget.charge(display, member.size)
        try:
            data = read(limits.max_file_bytes + 1)
        except _UnreadableMember as exc:
            yield Rejected(display, str(exc))
            if exc.fatal:
                return
            continue
        if len(data) > limits.max_file_bytes:  # the header understated the size
            yield Rejected(display, _too_large(len(data), limits.max_file_bytes))
            continue
        yield Candidate(display, member.name, source, _member_folder(member.name), data)


def _zip_members(path: Path) -> Iterator[tuple[_Member, _MemberReader] | Rejected]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        yield Rejected(str(path), f"not a readable zip archive: {exc}")
        return
    with archive:
        for info in archive.infolist():
            mode = info.external_attr >> 16
            if info.is_dir():
                kind = "dir"
            elif stat.S_ISLNK(mode):
                kind = "link"
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                kind = "device"
            else:
                kind = "file"

            def read(limit: int, info: zipfile.ZipInfo = info) -> bytes:
                try:
                    with archive.open(info) as stream:
                        return stream.read(limit)
                except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
                    raise _UnreadableMember(f"unreadable archive member: {exc}", fatal=False) from exc

            yield _Member(info.filename, info.file_size, kind, encrypted=bool(info.flag_bits & 0x1)), read


def _tar_members(path: Path) -> Iterator[tuple[_Member, _MemberReader] | Rejected]:
    """Stream the archive once, member by member (a .tar.gz cannot be seeked cheaply)."""
    try:
        archive = tarfile.open(path, mode="r|*")
    except (tarfile.TarError, OSError) as exc:
        yield Rejected(str(path), f"not a readable tar archive: {exc}")
        return
    with archive:
        while True:
            try:
                member = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                yield Rejected(str(path), f"archive damaged, later members not read: {exc}")
                return
            if member is None:
                return
            archive.members.clear()  # TarFile keeps every header otherwise: unbounded memory
            if member.isdir():
                kind, target = "dir", None
            elif member.issym() or member.islnk():
                kind, target = "link", member.linkname
            elif member.ischr() or member.isblk() or member.isfifo():
                kind, target = "device", None
            else:
                kind, target = ("file" if member.isreg() else "other"), None

            def read(limit: int, member: tarfile.TarInfo = member) -> bytes:
                try:
                    stream = archive.extractfile(member)
                    return stream.read(limit) if stream is not None else b""
                except (tarfile.TarError, OSError, EOFError) as exc:
                    raise _UnreadableMember(f"archive damaged, later members not read: {exc}",
                                            fatal=True) from exc

            yield _Member(member.name, member.size, kind, link_target=target), read


# ---------------------------------------------------------------- URLs

def _iter_url_list(path: Path, source: str, limits: ImportLimits,
                   budget: _Budget) -> Iterator[Candidate | Rejected]:
    try:
        urls = list(_read_url_list(path)) if path.stat().st_size <= limits.max_file_bytes else None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        yield Rejected(str(path), f"cannot read URL list: {exc}")
        return
    if urls is None:
        yield Rejected(str(path), _too_large(path.stat().st_size, limits.max_file_bytes))
        return
    yield from _iter_urls(urls, source, limits, budget)


def _read_url_list(path: Path) -> Iterator[str]:
    """URLs from a .txt (one per line, # comments) or a .csv (a `url` column, else the first)."""
    with open(path, newline="", encoding="utf-8-sig") as stream:
        if path.name.lower().endswith(".txt"):
            for line in stream:
                line = line.strip()
                if line and not line.startswith("#"):
                    yield line
            return
        rows = csv.reader(stream)
        header = next(rows, None)
        if header is None:
            return
        lowered = [cell.strip().lower() for cell in header]
        column = lowered.index("url") if "url" in lowered else 0
        if "url" not in lowered and header and header[0].strip():
            yield header[0].strip()
        for row in rows:
            if len(row) > column and row[column].strip():
                yield row[column].strip()


_MAX_REDIRECTS = 5


def _iter_urls(urls: Sequence[str], source: str, limits: ImportLimits,
               budget: _Budget) -> Iterator[Candidate | Rejected]:
    for url in urls:
        try:
            data = _fetch(url, limits)
        except ImportRejected as exc:
            yield Rejected(url, str(exc))
            continue
        budget.charge(url, len(data))
        yield Candidate(url, url, source, None, data)


def _public_address(address: str) -> bool:
    """A globally routable unicast address: not loopback, private, link-local, shared, reserved or multicast."""
    ip = ipaddress.ip_address(address.split("%")[0])   # an IPv6 scope id ("fe80::1%eth0") is not part of it
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped                             # ::ffff:127.0.0.1 is 127.0.0.1
    return ip.is_global and not ip.is_multicast


def _resolve(host: str, port: int, limits: ImportLimits) -> list[tuple]:
    """Every address of host; all must be public unless private URLs are allowed (no DNS-rebinding gap:
    the connection then goes to one of these, not to a second lookup)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise ImportRejected(f"download failed: cannot resolve {host}") from exc
    allowed = limits.allow_private_urls or os.environ.get(ALLOW_PRIVATE_URLS_ENV) == "1"
    if not allowed and not all(_public_address(info[4][0]) for info in infos):
        raise ImportRejected(f"{host} is on a private, loopback or link-local network: such addresses are "
                             f"not fetched unless {ALLOW_PRIVATE_URLS_ENV}=1 allows them")
    return infos


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to an address resolved (and checked) beforehand, not to whatever the name resolves to now."""

    def __init__(self, host: str, port: int, address: tuple, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection(self._address[:2], self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: tuple, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._address, self._tls = address, ssl.create_default_context()

    def connect(self) -> None:
        raw = socket.create_connection(self._address[:2], self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def _connect(url: str, limits: ImportLimits, deadline: float) -> http.client.HTTPConnection:
    """An open connection to the URL's host, after checking its scheme and every address it resolves to."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ImportRejected("only http and https URLs are fetched")
    try:
        host, port = parts.hostname, parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise ImportRejected("download failed: malformed URL") from exc
    if not host:
        raise ImportRejected("download failed: the URL names no host")
    infos = _resolve(host, port, limits)
    kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    # one sentence for every way a connection fails: which of them it was would tell whether a port is open
    failure = ImportRejected(f"download failed: could not connect to {host}")
    for info in infos:
        timeout = min(limits.url_timeout_s, deadline - time.monotonic())
        if timeout <= 0:
            raise ImportRejected(f"download took longer than {limits.url_total_s:g} s")
        connection = kind(host, port, info[4], timeout)
        try:
            connection.connect()
            return connection
        except (OSError, ssl.SSLError):
            connection.close()
    raise failure


def _fetch(url: str, limits: ImportLimits) -> bytes:
    """Download one URL into memory: checked addresses, redirects re-checked, a byte cap and a total deadline.

    The deadline bounds every read (the socket timeout is what is left of it), so a server
    dripping a byte at a time is cut at ``url_total_s`` however often it sends.
    """
    deadline = time.monotonic() + limits.url_total_s
    for _ in range(_MAX_REDIRECTS + 1):
        connection = _connect(url, limits, deadline)
        sock = connection.sock   # kept: http.client drops connection.sock once a response will close it
        try:
            parts = urllib.parse.urlsplit(url)
            target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
            try:
                connection.request("GET", target, headers={"User-Agent": f"activelearn/{__version__}",
                                                           "Accept-Encoding": "identity"})
                _limit_wait(sock, limits, deadline)
                response = connection.getresponse()
            except (TimeoutError, socket.timeout) as exc:
                raise _timed_out(limits, deadline) from exc
            except (OSError, http.client.HTTPException) as exc:
                raise ImportRejected(f"download failed: no valid HTTP response from {parts.hostname}") from exc
            if response.status in (301, 302, 303, 307, 308) and response.getheader("Location"):
                url = urllib.parse.urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise ImportRejected(f"download failed: HTTP {response.status} {response.reason}")
            return _read_body(sock, response, limits, deadline)
        finally:
            connection.close()
    raise ImportRejected(f"download failed: more than {_MAX_REDIRECTS} redirects")


def _limit_wait(sock: socket.socket, limits: ImportLimits, deadline: float) -> None:
    """Before each blocking read: wait at most url_timeout_s, and never past the deadline."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _timed_out(limits, deadline)
    sock.settimeout(min(limits.url_timeout_s, left))


def _timed_out(limits: ImportLimits, deadline: float) -> ImportRejected:
    if time.monotonic() >= deadline - 0.05:
        return ImportRejected(f"download took longer than {limits.url_total_s:g} s")
    return ImportRejected(f"download timed out: nothing received for {limits.url_timeout_s:g} s")


def _read_body(sock: socket.socket, response: http.client.HTTPResponse,
               limits: ImportLimits, deadline: float) -> bytes:
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > limits.max_url_bytes:
        raise ImportRejected(_too_large(int(declared), limits.max_url_bytes))
    chunks, received = [], 0
    try:
        while True:
            _limit_wait(sock, limits, deadline)
            chunk = response.read1(64 * 1024)   # what has arrived, not a full 64 KB: each read is bounded
            if not chunk:
                break
            received += len(chunk)
            if received > limits.max_url_bytes:
                raise ImportRejected(f"download too large: over the {_size(limits.max_url_bytes)} limit")
            chunks.append(chunk)
    except (TimeoutError, socket.timeout) as exc:
        raise _timed_out(limits, deadline) from exc
    except (OSError, http.client.HTTPException) as exc:
        raise ImportRejected("download failed: the connection broke off") from exc
    return b"".join(chunks)


# ---------------------------------------------------------------- decoding

@dataclass(frozen=True)
class Decoded:
    """A file proven to be an image: its decoded form and what its header said."""

    image: Image.Image     # normalised RGB, possibly reduced by the JPEG decoder
    width: int             # of the original
    height: int
    format: str


def decode(data: bytes, limits: ImportLimits) -> Decoded:
    """Verify and decode untrusted bytes; every Pillow failure becomes an ImportRejected.

    ``verify`` leaves the image unusable, so the file is opened twice; the first open
    only parses headers (about 0.02 ms for a JPEG), the second decodes at reduced size.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as probe:
                width, height = probe.size
                image_format = probe.format or "unknown"
                if width * height > limits.max_pixels:
                    raise ImportRejected(f"decompression bomb: {width}x{height} = {width * height:,} "
                                         f"pixels is over the {limits.max_pixels:,} limit")
                probe.verify()
            image = normalize_image(open_for_conversion(io.BytesIO(data)))
        except ImportRejected:
            raise
        except UnidentifiedImageError as exc:
            raise ImportRejected(f"not an image: not one of {', '.join(IMAGE_FORMATS)}") from exc
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImportRejected(f"decompression bomb: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes means a bad file
            raise ImportRejected(f"corrupt image: {exc or type(exc).__name__}") from exc
    return Decoded(image, width, height, image_format)
