"""Which filesystem a results store lives on, and whether SQLite's locking can be trusted there.

SQLite's documentation ("How To Corrupt An SQLite Database File", §2.1; "WAL mode", which needs
shared memory on one host) says that POSIX advisory locks are broken on many NFS
implementations and that a database on a network filesystem must not be written by several
processes at once. A store on such a filesystem therefore has one writer (``ResultsStore``:
exclusive locking, a rollback journal); sharing it between concurrent runs is refused unless
``--allow-network-fs``. Shards (``bench run --shard``, docs/clusters.md) write a store each.

Detection: ``statfs(2)``'s ``f_type`` (through ctypes, Linux), its magic numbers first; where
that fails, the longest mount point above the path in ``/proc/self/mountinfo``; an unknown type
is allowed with a warning. The verdict per type, with its reason (docs/clusters.md):

- NFS (0x6969), SMB/CIFS (0xFF534D42, 0xFE534D42, 0x517B): untrusted (SQLite's documentation).
- Lustre (0x0BD00BD0): untrusted unless mounted with ``flock`` (cluster-coherent locks); the
  default, ``noflock``, fails lock calls, and ``localflock`` locks per client only.
- GPFS / IBM Storage Scale (0x47504653): trusted: fcntl byte-range locks are coherent across
  nodes through its token manager.
- CephFS (0x00C36400): trusted: the metadata server arbitrates fcntl locks across clients.
- FUSE (0x65735546: sshfs, cloud mounts...): unknown, allowed with a warning.
- Local filesystems (ext2/3/4, XFS, Btrfs, ZFS, tmpfs, overlay, ...): trusted.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pathlib
from typing import NamedTuple

# f_type magic numbers (linux/magic.h and the filesystems' own headers) -> name.
MAGIC = {
  0x6969: "nfs",
  0xFF534D42: "cifs",
  0xFE534D42: "smb2",
  0x517B: "smb",
  0x0BD00BD0: "lustre",
  0x47504653: "gpfs",
  0x00C36400: "ceph",
  0x65735546: "fuse",
  0xEF53: "ext4",
  0x58465342: "xfs",
  0x9123683E: "btrfs",
  0x2FC12FC1: "zfs",
  0x01021994: "tmpfs",
  0x794C7630: "overlay",
  0x858458F6: "ramfs",
  0xF2F52010: "f2fs",
}
UNTRUSTED = {"nfs", "nfs4", "cifs", "smb", "smb2", "smb3"}
TRUSTED_CLUSTER = {"gpfs", "ceph"}
LOCAL = {"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "tmpfs", "overlay", "ramfs", "f2fs"}
KNOWN = UNTRUSTED | TRUSTED_CLUSTER | LOCAL | {"lustre"}  # others (fuse, ...): a warning


class Filesystem(NamedTuple):
  """A path's filesystem: its type name, how it was found, and SQLite's locks there."""

  name: str  # "nfs", "ext4", ... or "unknown"
  source: str  # "statfs", "mountinfo" or "none"
  trusted: bool  # concurrent writers may share a store here
  known: bool  # False: the type was not recognised (allowed, with a warning)


def _statfs_type(path: str) -> int | None:
  """``statfs(path).f_type`` through libc, None where it cannot be called (not Linux)."""
  try:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
  except OSError:
    return None
  buffer = ctypes.create_string_buffer(256)  # struct statfs is 120 bytes on 64-bit Linux
  if libc.statfs(os.fsencode(path), buffer) != 0:
    return None
  return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF  # f_type is the first field


def _mountinfo(path: str, mountinfo: str = "/proc/self/mountinfo") -> tuple[str, str] | None:
  """(type, super options) of the longest mount point above ``path``, or None."""
  try:
    lines = pathlib.Path(mountinfo).read_text().splitlines()
  except OSError:
    return None
  best = None
  for line in lines:
    head, _, tail = line.partition(" - ")
    fields, rest = head.split(), tail.split()
    if len(fields) < 5 or len(rest) < 3:
      continue
    point = fields[4].replace("\\040", " ")
    inside = path == point or path.startswith(point.rstrip("/") + "/")
    if inside and (best is None or len(point) > len(best[0])):
      best = (point, rest[0], rest[2])
  return None if best is None else best[1:]


def filesystem(path: str | pathlib.Path, mountinfo: str = "/proc/self/mountinfo") -> Filesystem:
  """The filesystem of ``path`` (of its nearest existing ancestor): ``statfs`` first, then
  ``mountinfo``; trusted and known as the module docstring says."""
  path = pathlib.Path(path).absolute()
  existing = next(p for p in (path, *path.parents) if p.exists())
  magic = _statfs_type(str(existing))
  name = None if magic is None else MAGIC.get(magic)
  # mountinfo only where statfs does not settle it: an unknown magic, or Lustre's mount options
  found = None if name not in (None, "lustre") else _mountinfo(str(existing.resolve()), mountinfo)
  if name is not None:
    source = "statfs"
  elif found is not None:
    name, source = found[0], "mountinfo"
  else:
    return Filesystem("unknown", "none", True, False)
  if name == "lustre":
    return Filesystem(name, source, "flock" in (found[1].split(",") if found else []), True)
  return Filesystem(name, source, name not in UNTRUSTED, name in KNOWN)
