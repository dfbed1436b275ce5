"""USER `name|uid[:group|gid]` → numeric ids, from the rootfs' own /etc/passwd and /etc/group."""

from __future__ import annotations

from lamina.errors import InvalidInputError, NotFoundError
from lamina.layers import read_file_in_root
from lamina.oci import MAX_PASSWD_BYTES
from lamina.runtime._spec import User

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from lamina._paths import StrPath

_MAX_ID = 2**32 - 2  # (uid_t)-1 means "no change" to the kernel


def _table(rootfs: StrPath, path: str) -> list[list[str]]:
    data = read_file_in_root(rootfs, path, MAX_PASSWD_BYTES)
    if data is None:
        return []
    rows = []
    for line in data.decode("utf-8", "replace").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(line.split(":"))
    return rows


def _numeric(text: str, what: str) -> int | None:
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    if value > _MAX_ID:
        raise InvalidInputError(f"{what} {text} is out of range (0-{_MAX_ID})")
    return value


def _field_int(row: list[str], i: int) -> int | None:
    return _numeric(row[i], "id") if len(row) > i and row[i].isdigit() else None


def resolve_user(rootfs: StrPath, user: str) -> User:
    """The ids `user` means inside `rootfs`, as Docker resolves them.

    `""` is root, with the groups /etc/group lists root in (BuildKit's
    testUserAdditionalGids: `groups=0(root),10(wheel)`). A name must be in /etc/passwd;
    a number need not be (its gid is then 0). Without `:group` the primary gid comes from
    passwd and the additional gids are it and the /etc/group entries that list the user;
    with `:group` only that group applies. Files are
    read inside the rootfs (symlinks scoped to it).
    """
    return _resolve_user(rootfs, user, _table(rootfs, "/etc/passwd"))


def resolve_user_home(rootfs: StrPath, user: str) -> tuple[User, str]:
    """`resolve_user` and `home_dir` of its uid, from one reading of /etc/passwd."""
    passwd = _table(rootfs, "/etc/passwd")
    found = _resolve_user(rootfs, user, passwd)
    return found, _home(passwd, found.uid)


def _resolve_user(rootfs: StrPath, user: str, passwd: list[list[str]]) -> User:
    """`resolve_user` with /etc/passwd read already (its rows)."""
    spec_user, _, spec_group = user.partition(":")
    if not spec_user:
        if spec_group:
            raise InvalidInputError(f"user {user!r}: a group without a user")
        spec_user = "0"
    uid = _numeric(spec_user, "uid")
    entry = None
    for row in passwd:
        if len(row) < 4:
            continue
        if (uid is None and row[0] == spec_user) or (uid is not None and _field_int(row, 2) == uid):
            entry = row
            break
    if entry is None and uid is None:
        raise NotFoundError(
            f"unable to find user {spec_user}: no matching entries in passwd file",
            hint="create the user in an earlier step (RUN adduser ...) or use a numeric uid",
        )
    name = entry[0] if entry else None
    if uid is None:
        uid = _field_int(entry or [], 2)
        if uid is None:
            raise InvalidInputError(f"user {spec_user}: bad uid in the image's /etc/passwd")
    gid = (_field_int(entry, 3) if entry else None) or 0
    groups = _table(rootfs, "/etc/group")
    if spec_group:
        wanted = _numeric(spec_group, "gid")
        if wanted is None:
            for row in groups:
                if len(row) >= 3 and row[0] == spec_group and _field_int(row, 2) is not None:
                    wanted = _field_int(row, 2)
                    break
            else:
                raise NotFoundError(
                    f"unable to find group {spec_group}: no matching entries in group file"
                )
        assert wanted is not None
        return User(uid, wanted, (wanted,))
    # The primary group is one of the process's groups too, as containerd's
    # WithAdditionalGIDs makes it (`id` shows groups=0(root),10(wheel)).
    extra: list[int] = [gid]
    if name is not None:
        for row in groups:
            members = row[3].split(",") if len(row) >= 4 else []
            g = _field_int(row, 2)
            if name in members and g is not None and g not in extra:
                extra.append(g)
    return User(uid, gid, tuple(extra))


def home_dir(rootfs: StrPath, uid: int) -> str:
    """The home directory /etc/passwd gives `uid` inside `rootfs`, else `/` (as Docker)."""
    return _home(_table(rootfs, "/etc/passwd"), uid)


def _home(passwd: list[list[str]], uid: int) -> str:
    for row in passwd:
        if len(row) >= 6 and _field_int(row, 2) == uid and row[5].startswith("/"):
            return row[5]
    return "/"
