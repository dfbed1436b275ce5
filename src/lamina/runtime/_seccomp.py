"""The seccomp filter every container and RUN step gets, as data for runc's config.

Written from Docker's documented default profile ("Seccomp security profiles for Docker",
and moby's profiles/seccomp/default.json): the syscalls that profile keeps from a container
without CAP_SYS_ADMIN & co. are refused here with EPERM. Docker expresses this as an
allowlist; lamina states the same refusals as a denylist (everything else allowed), which
is easier to check line by line and cannot break a syscall newer than the list.

One rule goes further than Docker, because lamina cannot use the device cgroup on machines
where runc may not set `linux.resources`: `mknod`/`mknodat` of a block device is refused, so
a process holding CAP_MKNOD still cannot make a node that reaches a host disk.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds of every `lamina run`
if TYPE_CHECKING:
    from typing import Any


_EPERM = 1
S_IFMT = 0o170000
S_IFBLK = 0o060000

# Docker's "significant syscalls blocked by the default profile" (kernel keyring, modules,
# clocks, mounts and namespaces, tracing, NUMA policy, obsolete and 32-bit-only calls...).
BLOCKED_SYSCALLS = (
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_settime",
    "clock_settime64",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "_sysctl",
    "sysfs",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
)

_ARCHITECTURES = ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


def _block_device_rule(name: str, mode_arg: int) -> dict[str, Any]:
    return {
        "names": [name],
        "action": "SCMP_ACT_ERRNO",
        "errnoRet": _EPERM,
        "args": [
            {"index": mode_arg, "value": S_IFMT, "valueTwo": S_IFBLK, "op": "SCMP_CMP_MASKED_EQ"}
        ],
    }


def seccomp_profile() -> dict[str, Any]:
    """runc's `linux.seccomp` value: allow by default, refuse the blocked calls with EPERM."""
    syscalls: list[dict[str, Any]] = [
        {"names": list(BLOCKED_SYSCALLS), "action": "SCMP_ACT_ERRNO", "errnoRet": _EPERM},
        _block_device_rule("mknod", 1),
        _block_device_rule("mknodat", 2),
    ]
    # personality: Docker allows only a few personas; the one that matters is refused here:
    # ADDR_NO_RANDOMIZE, which turns address-space randomisation off.
    syscalls.append(
        {
            "names": ["personality"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": _EPERM,
            "args": [
                {
                    "index": 0,
                    "value": 0x0040000,
                    "valueTwo": 0x0040000,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        }
    )
    # unshare/clone of a new user namespace is how an unprivileged process would gain
    # capabilities: clone with CLONE_NEWUSER is refused like unshare.
    syscalls.append(
        {
            "names": ["clone"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": _EPERM,
            "args": [
                {
                    "index": 0,
                    "value": 0x10000000,
                    "valueTwo": 0x10000000,
                    "op": "SCMP_CMP_MASKED_EQ",
                }
            ],
        }
    )
    return {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": list(_ARCHITECTURES),
        "syscalls": syscalls,
    }
