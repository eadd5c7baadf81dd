"""Which files an ingestion run reads, and why it leaves every other one unread.

Before the pipeline starts, the day-partitioned logs a glob names (`events/*/*`) are listed
without opening anything: every entry the glob names is either a regular file to read or a
`Skipped` entry with a `recs.contract.layout.SkipReason`, which ingestion counts in its
report and writes as a dead letter. On a local filesystem the listing looks at each entry
itself (`lstat`), never through it:

- a folder named `day=...` that is not `day=YYYY-MM-DD` of a real date (`day=2026-13-45`,
  `day=2026-01-05.bak`) is not a day, and nothing under it is read (`not_a_day`); for the
  events, every file must sit directly in a day folder;
- a folder where files are expected (inside a day folder) is `nested_folder`, a file where
  folders are expected is `misplaced_file`;
- a FIFO, socket or device is `not_a_regular_file` and is never opened (opening a FIFO waits
  for a writer for ever);
- a name starting with a dot is `hidden` (a glob's `*` does not name it; an upload in progress
  looks like this);
- a symbolic link is followed only when it leads inside the raw folder (or the glob's own
  folder); otherwise it is `link_outside_raw` and nothing behind it is read. A link whose
  target is missing is `dangling_link`, one that leads back to itself `link_loop`.

Other filesystems (gs://, s3://, hdfs://) have no links, FIFOs or folders of their own: the
listing is the runner's match of the glob, with the same rules for names (day folders,
hidden names).
"""

import dataclasses
import errno
import fnmatch
import os
import pathlib
import posixpath
import re
import stat

from apache_beam.io.filesystems import FileSystems

from recs.contract.layout import SkipReason, parse_day_partition

_MAGIC = re.compile(r"[*?[]")


@dataclasses.dataclass(frozen=True)
class Skipped:
    """One file or folder the glob names that is not read.

    Attributes:
        path: where it is, as the glob names it.
        reason: a `recs.contract.layout.SkipReason` code.
        detail: what it is, in words (for a link: where it leads; never its content).
    """

    path: str
    reason: str
    detail: str


@dataclasses.dataclass(frozen=True)
class Listing:
    """What a glob names: the regular files to read, and every entry left unread."""

    files: tuple[str, ...]
    skipped: tuple[Skipped, ...]


def delivery_day(path: str) -> str:
    """The delivery day of an events file: the name of the folder it sits in,
    `day=YYYY-MM-DD` of a real date.

    Raises:
        ValueError: the file's folder is not a day partition.
    """
    folder = posixpath.basename(posixpath.dirname(path.replace(os.sep, "/")))
    day = parse_day_partition(folder)
    if day is None:
        raise ValueError(f"events file {path!r} is not inside a day partition (its folder is "
                         f"{folder!r}); put each day's events under a folder named "
                         "day=YYYY-MM-DD of a real date (the day they were delivered).")
    return day


def list_files(pattern: str, raw_dir: str = "", days: bool = False) -> Listing:
    """The files `pattern` names and the entries it names that are not read.

    Args:
        pattern: a glob such as `raw/events/*/*`.
        raw_dir: the raw folder; a link is followed when it leads inside it or inside the
            pattern's fixed folder (the part before the first wildcard). "" = that folder only.
        days: every file must sit directly in a day folder (the events).

    Returns:
        The files in path order and the skipped entries in path order.
    """
    if FileSystems.get_scheme(pattern) is not None:
        return _remote(pattern, days)
    parts = pathlib.PurePath(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if _MAGIC.search(part)), len(parts) - 1)
    root = os.path.join(*parts[:fixed]) if fixed else os.curdir
    if not os.path.isdir(root):
        return Listing((), ())
    folders = {os.path.realpath(folder) for folder in (root, raw_dir) if folder}
    allowed = {folder for folder in folders
               if not any(_inside(folder, other) for other in folders if other != folder)}
    files: list[str] = []
    skipped: list[Skipped] = []
    walk = _Walk(tuple(parts[fixed:]), tuple(sorted(allowed)), days, files, skipped)
    walk.folder(root, 0)
    return Listing(tuple(sorted(files)), tuple(sorted(skipped, key=lambda s: s.path)))


def _named(name: str, part: str) -> bool:
    """`part` of a glob names `name`; unlike a glob's, a `*` names hidden names too, so that
    they are counted rather than passed over."""
    return fnmatch.fnmatchcase(name, part)


@dataclasses.dataclass
class _Walk:
    parts: tuple[str, ...]
    allowed: tuple[str, ...]
    days: bool
    files: list[str]
    skipped: list[Skipped]

    def skip(self, path: str, reason: str, detail: str) -> None:
        self.skipped.append(Skipped(path, reason, detail))

    def folder(self, path: str, level: int) -> None:
        try:
            with os.scandir(path) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            self.skip(path, SkipReason.UNREADABLE_FOLDER, _error(error))
            return
        for entry in entries:
            if _named(entry.name, self.parts[level]):
                self.entry(entry.path, entry.name, level)

    def entry(self, path: str, name: str, level: int) -> None:
        last = level == len(self.parts) - 1
        if name.startswith(".") and not self.parts[level].startswith("."):
            self.skip(path, SkipReason.HIDDEN, "a hidden name (a temporary or partial file?)")
            return
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return  # Gone since the folder was listed: nothing to read.
        if stat.S_ISLNK(mode):
            mode = self.follow(path)
            if mode is None:
                return
        if stat.S_ISDIR(mode):
            if last:
                self.skip(path, SkipReason.NESTED_FOLDER,
                          f"a folder where files are expected ({_entries(path)}), not read")
            elif parse_day_partition(name) is None and (
                    name.startswith("day=") or (self.days and level == len(self.parts) - 2)):
                self.skip(path, SkipReason.NOT_A_DAY,
                          f"not a day=YYYY-MM-DD folder of a real date ({_entries(path)}), "
                          "not read")
            else:
                self.folder(path, level + 1)
        elif not stat.S_ISREG(mode):
            self.skip(path, SkipReason.NOT_A_REGULAR_FILE,
                      f"a {_kind(mode)}, never opened")
        elif not last:
            self.skip(path, SkipReason.MISPLACED_FILE, "a file where folders are expected")
        elif self.days and _day_of(path) is None:
            self.skip(path, SkipReason.NOT_A_DAY,
                      "an events file outside a day=YYYY-MM-DD folder of a real date")
        else:
            self.files.append(path)

    def follow(self, path: str) -> int | None:
        """The mode of a link's target when it may be read; None (and the link skipped)
        when it dangles, loops or leads outside the raw folder."""
        target = _readlink(path)
        try:
            mode = os.stat(path).st_mode
        except OSError as error:
            reason = (SkipReason.LINK_LOOP if error.errno == errno.ELOOP
                      else SkipReason.DANGLING_LINK)
            self.skip(path, reason, f"a link to {target!r}: {_error(error)}")
            return None
        real = os.path.realpath(path)
        if not any(_inside(real, folder) for folder in self.allowed):
            self.skip(path, SkipReason.LINK_OUTSIDE_RAW,
                      f"a link to {target!r}, outside {' and '.join(self.allowed)}; not "
                      "followed")
            return None
        return mode


def _inside(path: str, folder: str) -> bool:
    """`path` is `folder` or below it (both resolved)."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _day_of(path: str) -> str | None:
    return parse_day_partition(os.path.basename(os.path.dirname(path)))


def _remote(pattern: str, days: bool) -> Listing:
    files: list[str] = []
    skipped: list[Skipped] = []
    for match in FileSystems.match([pattern])[0].metadata_list:
        path = match.path
        folders = path.split("://", 1)[-1].split("/")[:-1]
        if posixpath.basename(path).startswith("."):
            skipped.append(Skipped(path, SkipReason.HIDDEN, "a hidden name"))
        elif any(folder.startswith("day=") and parse_day_partition(folder) is None
                 for folder in folders) or (days and parse_day_partition(folders[-1]) is None):
            skipped.append(Skipped(path, SkipReason.NOT_A_DAY,
                                   "outside a day=YYYY-MM-DD folder of a real date"))
        else:
            files.append(path)
    return Listing(tuple(sorted(files)), tuple(sorted(skipped, key=lambda s: s.path)))


def _entries(path: str) -> str:
    try:
        with os.scandir(path) as listing:
            count = sum(1 for _ in listing)
    except OSError as error:
        return f"cannot be listed: {_error(error)}"
    return f"{count} entr{'y' if count == 1 else 'ies'} inside"


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return f"file of mode {stat.filemode(mode)}"


def _error(error: OSError) -> str:
    return f"{type(error).__name__}: {error.strerror or error}"


__all__ = ["Listing", "Skipped", "delivery_day", "list_files"]
