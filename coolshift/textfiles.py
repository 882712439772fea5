"""Reading a text file safely: regular files only, compressed or UTF-16 read transparently.

Below every reader and the site config loader (``coolshift.config`` reads the site YAML
through :func:`read_text`; ``coolshift.io`` its data files), with the error they all raise:
:class:`DataError` names the file and, where known, the column and row, and never quotes the
file's content.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import os
import re
import stat
import zlib
from pathlib import Path

__all__ = ["DataError", "MAX_FILE_BYTES", "read_bytes", "read_text"]


class DataError(ValueError):
    """Bad input data; the message names the file, and where known the column and row."""

    def __init__(self, path: str | Path | None, message: str, column: str | None = None, row: int | None = None):
        self.path, self.column, self.row = (str(path) if path else None), column, row
        where = [p for p in (self.path, f"column {column!r}" if column else None, f"row {row}" if row else None) if p]
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")



# --- reading files safely -------------------------------------------------------------------
# A year of 5-minute data in any supported format is a few tens of MB; 512 MiB (after
# decompression) is far above that and still below what a small server can hold in memory.
MAX_FILE_BYTES = 512 * 2**20
_COMPRESSED = {b"\x1f\x8b": ("gzip", lambda f: gzip.GzipFile(fileobj=f)), b"BZh": ("bzip2", bz2.BZ2File), b"\xfd7zXZ\x00": ("xz", lzma.LZMAFile)}
_REFUSED_MAGIC = {b"PK\x03\x04": "a zip archive (or an Excel .xlsx): extract or export the CSV first",
                  b"PAR1": "a Parquet file: export it as CSV", b"%PDF": "a PDF document",
                  b"\xd0\xcf\x11\xe0": "an old-style Excel/Office file: export it as CSV", b"SQLite format 3": "an SQLite database"}
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")


def _file_kind(mode: int) -> str | None:
    """What a non-regular file is (None for a regular file): reading a FIFO or a device can block forever."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_bytes(path, *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file, decompressed if gzip/bzip2/xz; anything else is a DataError.

    The file type is checked before opening (a FIFO or device would block or never end),
    and again on the open descriptor, which is opened non-blocking in case the path was
    swapped for a FIFO in between.
    """
    path = Path(path)
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        raise DataError(path, "file not found") from None
    except PermissionError:
        raise DataError(path, "cannot read the file: permission denied") from None
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the file ({getattr(exc, 'strerror', None) or type(exc).__name__})") from None
    kind = _file_kind(st.st_mode)
    if kind:
        raise DataError(path, f"is {kind}, not a regular data file")
    if st.st_size > max_bytes:
        raise DataError(path, f"file is {st.st_size / 2**20:,.0f} MiB, above the {max_bytes / 2**20:,.0f} MiB limit for a data file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except PermissionError:
        raise DataError(path, "cannot read the file: permission denied") from None
    except OSError as exc:
        raise DataError(path, f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    with os.fdopen(fd, "rb") as fh:
        kind = _file_kind(os.fstat(fh.fileno()).st_mode)
        if kind:
            raise DataError(path, f"is {kind}, not a regular data file")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as exc:
            raise DataError(path, f"cannot read the file ({exc.strerror or type(exc).__name__})") from None
    for magic, (name, opener) in _COMPRESSED.items():
        if data.startswith(magic):
            try:
                # stream at most max_bytes + 1: a decompression bomb never fills memory
                with opener(io.BytesIO(data)) as z:
                    data = z.read(max_bytes + 1)
            except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
                raise DataError(path, f"{name}-compressed but corrupt or truncated") from None
            break
    if len(data) > max_bytes:
        raise DataError(path, f"more than {max_bytes / 2**20:,.0f} MiB (after decompression): too large for a data file")
    for magic, what in _REFUSED_MAGIC.items():
        if data.startswith(magic):
            raise DataError(path, f"is {what}, not a text data file")
    return data


def _decode(data: bytes, path) -> str:
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc).lstrip("\ufeff")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"starts with a {enc.upper()} byte-order mark but is not valid {enc.upper()} "
                                      f"(byte {exc.start})") from None
    head = data[:4096]
    if head.count(b"\x00") > len(head) // 4:
        # UTF-16 without a byte-order mark: ASCII text has a zero in every other byte.
        enc = "utf-16-le" if head[1::2].count(0) > len(head) // 4 else "utf-16-be"
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            text = None
        if text is not None and not _CONTROL.search(text):
            return text
        raise DataError(path, "binary content (zero bytes): not a text data file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (undecodable byte at line {line}): a binary file, or text in another "
                              "encoding; save it as UTF-8 (or UTF-16 with a byte-order mark)", row=line) from None


def read_text(path, *, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A data file's text: regular files only, gzip/bzip2/xz read transparently, UTF-8 (with or
    without BOM) or UTF-16/32 (with BOM, or UTF-16 without). Binary content is a DataError
    naming the file and line, never quoting it."""
    text = _decode(read_bytes(path, max_bytes=max_bytes), path)
    bad = _CONTROL.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        raise DataError(path, f"binary content (control character U+{ord(bad.group()):04X} at line {line}): not a text data file",
                        row=line)
    return text
