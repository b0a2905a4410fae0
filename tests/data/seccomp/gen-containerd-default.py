#!/usr/bin/env python3
"""Writes containerd-default.json, the JSON equivalent of containerd's
DefaultProfile (contrib/seccomp/seccomp_default.go), in the Docker profile
format: the Go code's runtime branches (GOARCH, kernel >= 4.8, the bounding
capabilities, "not CAP_SYS_ADMIN") become archMap, includes.arches,
includes.minKernel, includes.caps and excludes.caps, as moby's default.json
encodes the same branches.

Usage: gen-containerd-default.py seccomp_default.go > containerd-default.json

Only the first (large) allow list is read from the Go file; every other rule
is transcribed below by hand from the same file, in the same order. Constants
(golang.org/x/sys/unix, Linux x86_64): AF_ALG=38, AF_VSOCK=40, ENOSYS=38,
CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP=0x7E020000.
"""
import json
import re
import sys

src = open(sys.argv[1]).read()
first = re.search(r"syscalls := \[\]specs\.LinuxSyscall\{\s*\{\s*Names: \[\]string\{(.*?)\},\s*Action: specs\.ActAllow", src, re.S)
names = re.findall(r'"([a-z0-9_]+)"', first.group(1))

ALLOW = "SCMP_ACT_ALLOW"


def rule(names, action=ALLOW, args=None, **extra):
    r = {"names": names, "action": action, "args": args or []}
    r.update(extra)
    return r


def arg(index, value, op, value_two=0):
    return {"index": index, "value": value, "valueTwo": value_two, "op": op}


AF_ALG, AF_VSOCK, ENOSYS = 38, 40, 38
CLONE_NS_FLAGS = 0x20000 | 0x4000000 | 0x8000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x2000000

syscalls = [rule(names)]
syscalls += [
    rule(["socket"], args=[arg(0, AF_ALG, "SCMP_CMP_LT")]),
    rule(["socket"], args=[arg(0, AF_ALG + 1, "SCMP_CMP_EQ")]),
    rule(["socket"], args=[arg(0, AF_VSOCK, "SCMP_CMP_GT")]),
]
for v in (0x0, 0x0008, 0x20000, 0x20008, 0xFFFFFFFF):
    syscalls.append(rule(["personality"], args=[arg(0, v, "SCMP_CMP_EQ")]))
# kernelversion.GreaterEqualThan(4.8)
syscalls.append(rule(["process_vm_readv", "process_vm_writev", "ptrace"], includes={"minKernel": "4.8"}))
# switch runtime.GOARCH
for arches, ns in [
    (["ppc64le"], ["sync_file_range2", "swapcontext"]),
    (["arm", "arm64"], ["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"]),
    (["amd64"], ["arch_prctl", "modify_ldt"]),
    (["386"], ["modify_ldt"]),
    (["s390", "s390x"], ["s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"]),
    (["riscv64"], ["riscv_flush_icache", "riscv_hwprobe"]),
]:
    syscalls.append(rule(ns, includes={"arches": arches}))
# for _, c := range sp.Process.Capabilities.Bounding
for cap, ns in [
    ("CAP_DAC_READ_SEARCH", ["open_by_handle_at"]),
    ("CAP_SYS_ADMIN", ["bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
                       "lookup_dcookie", "mount", "mount_setattr", "move_mount", "open_tree", "perf_event_open",
                       "quotactl", "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount",
                       "umount2", "unshare"]),
    ("CAP_SYS_BOOT", ["reboot"]),
    ("CAP_SYS_CHROOT", ["chroot"]),
    ("CAP_SYS_MODULE", ["delete_module", "init_module", "finit_module"]),
    ("CAP_SYS_PACCT", ["acct"]),
    ("CAP_SYS_PTRACE", ["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    ("CAP_SYS_RAWIO", ["iopl", "ioperm"]),
    ("CAP_SYS_TIME", ["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    ("CAP_SYS_TTY_CONFIG", ["vhangup"]),
    ("CAP_SYS_NICE", ["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    ("CAP_SYSLOG", ["syslog"]),
    ("CAP_BPF", ["bpf"]),
    ("CAP_PERFMON", ["perf_event_open"]),
]:
    syscalls.append(rule(ns, includes={"caps": [cap]}))
# if !admin
not_admin = {"caps": ["CAP_SYS_ADMIN"]}
syscalls.append(rule(["clone"], args=[arg(1, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ")],
                     includes={"arches": ["s390", "s390x"]}, excludes=not_admin))
syscalls.append(rule(["clone"], args=[arg(0, CLONE_NS_FLAGS, "SCMP_CMP_MASKED_EQ")],
                     excludes={"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}))
syscalls.append(rule(["clone3"], action="SCMP_ACT_ERRNO", errnoRet=ENOSYS, excludes=not_admin))

# func arches(): the architectures for each GOARCH.
arch_map = [
    ("SCMP_ARCH_X86_64", ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", ["SCMP_ARCH_ARM"]),
    ("SCMP_ARCH_MIPS64", ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"]),
    ("SCMP_ARCH_MIPS64N32", ["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"]),
    ("SCMP_ARCH_MIPSEL64", ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"]),
    ("SCMP_ARCH_MIPSEL64N32", ["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"]),
    ("SCMP_ARCH_S390X", ["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_RISCV64", None),
    ("SCMP_ARCH_LOONGARCH64", None),
]
profile = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "archMap": [{"architecture": a, "subArchitectures": s} for a, s in arch_map],
    "syscalls": syscalls,
}
json.dump(profile, sys.stdout, indent="\t")
sys.stdout.write("\n")
