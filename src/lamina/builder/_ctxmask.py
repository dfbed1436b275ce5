"""`RUN --mount=type=bind` of the build context sees what `.dockerignore` leaves in.

BuildKit sends the context with the ignore rules applied, so a bind mount of it never
shows an ignored file. lamina bind-mounts the context directory itself; to show the
same tree it lays a *mask* over it: a directory holding an overlayfs whiteout for each
ignored entry (and the directories that lead to them, with the context's own metadata),
mounted as the top lower dir of an overlay whose other lower dir is the context.
"""

from __future__ import annotations

import os
import stat

from lamina.dockerfile import IgnoreRules
from lamina.layers import make_overlay_whiteout


def _hidden(abs_dir: str, rel_dir: str, bits: tuple[bool, ...], ignore: IgnoreRules,
            out: list[str]) -> bool:  # fmt: skip
    """Append to `out` the paths (relative to the walk's top) `ignore` leaves out under
    `abs_dir`, a left-out directory as one path; True if anything under it is kept."""
    kept = False
    with os.scandir(abs_dir) as it:
        entries = sorted(it, key=lambda e: e.name)
    for entry in entries:
        rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
        skip = ignore.ignored(rel, bits)
        if entry.is_dir(follow_symlinks=False) and (not skip or ignore.has_exceptions):
            mark = len(out)
            inner_kept = _hidden(entry.path, rel, ignore.inherit(rel, bits), ignore, out)
            if skip and not inner_kept:
                # Nothing under it is re-included: it goes whole, as BuildKit drops it.
                del out[mark:]
                out.append(rel)
            else:
                kept = True
        elif skip:
            out.append(rel)
        else:
            kept = True
    return kept


def context_mask(context: str, rel: str, ignore: IgnoreRules, mask: str) -> bool:
    """Fill `mask` (made here) with whiteouts for what `ignore` leaves out of the context
    directory `rel` (relative to `context`, "" for its root); False when nothing is left
    out (no overlay is needed then)."""
    if not ignore.patterns:
        return False
    bits = ignore.inherit(rel) if rel else tuple(False for _ in ignore.patterns)
    hidden: list[str] = []
    _hidden(os.path.join(context, rel), rel, bits, ignore, hidden)
    if not hidden:
        return False
    prefix = f"{rel}/" if rel else ""
    os.mkdir(mask)
    dirs = {""}
    for path in hidden:
        below = path[len(prefix):]
        parent, _, name = below.rpartition("/")
        if parent not in dirs:
            os.makedirs(os.path.join(mask, parent), exist_ok=True)
            parts = parent.split("/")
            dirs.update("/".join(parts[: i + 1]) for i in range(len(parts)))
        fd = os.open(os.path.join(mask, parent), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            make_overlay_whiteout(name, fd)
        finally:
            os.close(fd)
    # A directory of the mask hides the context's own in the merged view: give it the
    # context's metadata (last, since the whiteouts made in it moved its mtime).
    for d in dirs:
        st = os.stat(os.path.join(context, rel, d), follow_symlinks=False)
        where = os.path.join(mask, d)
        os.chown(where, st.st_uid, st.st_gid)
        os.chmod(where, stat.S_IMODE(st.st_mode))
        os.utime(where, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True
