"""Random access to webdataset tar shards: expand shard patterns, index a shard's samples, read their bytes.

A webdataset sample is a run of consecutive tar members sharing a key: `0000042.jpg` and `0000042.cls` form the
sample with key `0000042` (key = member path up to the first dot of its file name, extension = the rest).
Indexing reads only the tar headers (seeking over the data), so the readers can pick, shuffle and skip samples
without reading their bytes; only local files are supported.
"""
from __future__ import annotations

import glob
import logging
import mmap
import os
import tarfile
from dataclasses import dataclass
from typing import Optional

import braceexpand

from utils.errors import MaskbitError

logger = logging.getLogger(__name__)


class ShardPatternError(MaskbitError, FileNotFoundError):
    """A shard pattern names no file, or only some of the files it expands to exist."""


@dataclass(frozen=True)
class TarSample:
    """One sample of a shard: its key and, per extension, the (offset, size) of the member's data."""

    key: str
    members: dict[str, tuple[int, int]]


def expand_shards(pattern: str) -> list[str]:
    """Brace-expand `pattern` ('dir/imagenet-train-{0000..0252}.tar'; also globs) into existing shard paths.

    Raises FileNotFoundError naming the pattern when nothing matches or some expanded files are missing.
    """
    if not pattern:
        raise ValueError("Empty shard pattern: set dataset.params.train_shards_path_or_url / "
                         "eval_shards_path_or_url to e.g. 'DIR/train/imagenet-train-{0000..0252}.tar'")
    if "://" in pattern or pattern.startswith("pipe:"):
        raise ValueError(f"Shard pattern '{pattern}' is a URL or pipe; only local shard files are supported. "
                         f"Download the shards and point the pattern at the local copies.")
    paths: list[str] = []
    for expanded in braceexpand.braceexpand(os.path.expanduser(pattern)):
        paths.extend(sorted(glob.glob(expanded)) if glob.has_magic(expanded) else [expanded])
    missing = [p for p in paths if not os.path.isfile(p)]
    if not paths or len(missing) == len(paths):
        raise ShardPatternError(f"No shard file matches the pattern '{pattern}'. Check the directory and the "
                                f"brace range, e.g. 'DIR/train/imagenet-train-{{0000..0252}}.tar'.")
    if missing:
        raise ShardPatternError(f"{len(missing)} of {len(paths)} shards of the pattern '{pattern}' do not exist, "
                                f"e.g. '{missing[0]}'. Fix the brace range or regenerate the shards.")
    return paths


def split_member_name(name: str) -> tuple[str, str]:
    """'dir/0000042.jpg' -> ('dir/0000042', 'jpg'); a name without an extension gives ext ''."""
    directory, base = os.path.split(name)
    stem, _, ext = base.partition(".")
    return os.path.join(directory, stem) if directory else stem, ext


def _pax_records(data: bytes) -> dict[bytes, bytes]:
    """'<length> <key>=<value>\\n' records of a pax extended header."""
    records, pos = {}, 0
    while pos < len(data) and data[pos:pos + 1] != b"\x00":
        length = int(data[pos:data.index(b" ", pos)])
        key, _, value = data[data.index(b" ", pos) + 1:pos + length - 1].partition(b"=")
        records[key] = value
        pos += length
    return records


def _scan_ustar(path: str) -> Optional[list[tuple[str, int, int]]]:
    """(name, data offset, size) of the regular files of a ustar/pax archive, parsing the headers directly
    (5-10x faster than tarfile); None for anything unusual (other member types, damage): use tarfile then."""
    with open(path, "rb") as f:
        try:
            view = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except ValueError:  # empty file
            logger.warning("shard %s is empty (0 bytes); re-copy or regenerate this shard", path)
            return []
    entries, pending = [], {}  # pending: pax 'path'/'size' overrides for the next member
    complete = False
    with view:
        pos = 0
        while pos + 512 <= len(view):
            header = view[pos:pos + 512]
            if header[0] == 0:  # end-of-archive zero block
                complete = True
                break
            posix = header[257:263] == b"ustar\x00"
            if not (posix or header[257:265] == b"ustar  \x00") or header[124] & 0x80:
                return None
            try:
                size = int(header[124:136].strip(b"\x00 ") or b"0", 8)
                kind = header[156:157]
                if kind == b"x":
                    pending = _pax_records(view[pos + 512:pos + 512 + size])
                elif kind in (b"0", b"\x00"):
                    name = header[:100].split(b"\x00", 1)[0]
                    prefix = header[345:500].split(b"\x00", 1)[0] if posix else b""
                    name = pending.get(b"path", prefix + b"/" + name if prefix else name)
                    size = int(pending.get(b"size", size))
                    entries.append((name.decode("utf-8"), pos + 512, size))
                    pending = {}
                elif kind not in (b"5", b"g"):  # directories and global headers are ignored
                    return None
            except ValueError:
                return None
            pos += 512 + (size + 511) // 512 * 512
        if not complete or (entries and entries[-1][1] + entries[-1][2] > len(view)):
            readable = sum(1 for _, offset, size in entries if offset + size <= len(view))
            logger.warning("shard %s is truncated (%d bytes, no end-of-archive block or a member cut short): its %d "
                           "complete members are used, the rest is skipped; re-copy or regenerate this shard",
                           path, len(view), readable)
    return entries


def _scan_tarfile(path: str) -> list[tuple[str, int, int]]:
    entries = []
    try:
        with tarfile.open(path, "r:") as tar:
            entries.extend((info.name, info.offset_data, info.size) for info in tar if info.isfile())
    except (tarfile.TarError, OSError) as err:
        logger.warning("shard %s is damaged after %d members (%s); using the members before the damage",
                       path, len(entries), err)
    return entries


def index_tar(path: str) -> list[TarSample]:
    """All samples of the shard at `path`, in tar order. A truncated or damaged shard is indexed up to the damage
    (logged); a member whose data runs past the end of the file is kept and fails when its bytes are read."""
    entries = _scan_ustar(path)
    if entries is None:
        entries = _scan_tarfile(path)
    samples: list[TarSample] = []
    key, members = None, {}
    for name, offset, size in entries:
        member_key, ext = split_member_name(name)
        if member_key != key:
            if members:
                samples.append(TarSample(key, members))
            key, members = member_key, {}
        members[ext.lower()] = (offset, size)
    if members:
        samples.append(TarSample(key, members))
    return samples


def read_member(file, offset: int, size: int, path: str = "") -> bytes:
    """Bytes [offset, offset + size) of an open binary file; a short read raises OSError."""
    file.seek(offset)
    data = file.read(size)
    if len(data) != size:
        raise OSError(f"truncated member in {path or file}: wanted {size} bytes at offset {offset}, got {len(data)}")
    return data
