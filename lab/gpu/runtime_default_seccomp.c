/*
 * runtime-default-seccomp PROGRAM [ARG...]: exec PROGRAM under a seccomp filter that refuses what a
 * container runtime's RuntimeDefault profile refuses to a process holding no capabilities, for the
 * hardened-pod rehearsal on a GPU host that has no container runtime (lab/gpu/pod_rehearsal.py).
 *
 * The runtime profiles (containerd's and Docker's) are allowlists; this is the matching denylist of
 * the syscalls an unprivileged process could otherwise make and that those profiles grant only with a
 * capability the chart drops (CAP_SYS_PTRACE, CAP_SYS_NICE, CAP_SYS_ADMIN, ...) or not at all. Calls
 * that need a capability anyway (mount, reboot, module loading) are refused by the kernel already once
 * every capability is dropped, and are listed so that the filter says so itself. clone3 answers ENOSYS
 * as the profiles do, so that libc falls back to clone, whose namespace flags are refused.
 *
 * It must run after no_new_privs is set (setpriv --no-new-privs), as an unprivileged filter needs.
 * Build: cc -O2 -static -o runtime-default-seccomp runtime_default_seccomp.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

static const int refused[] = {
    /* CAP_SYS_PTRACE in the profiles: handle and fd theft between processes. */
    SYS_kcmp, SYS_pidfd_getfd, SYS_process_madvise,
    /* CAP_SYS_NICE: NUMA memory policy. */
    SYS_get_mempolicy, SYS_mbind, SYS_set_mempolicy, SYS_set_mempolicy_home_node, SYS_move_pages,
    SYS_migrate_pages,
    /* CAP_SYS_ADMIN (and CAP_BPF, CAP_PERFMON, CAP_SYSLOG). */
    SYS_bpf, SYS_perf_event_open, SYS_fanotify_init, SYS_lookup_dcookie, SYS_mount, SYS_umount2,
    SYS_mount_setattr, SYS_move_mount, SYS_open_tree, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
    SYS_quotactl, SYS_quotactl_fd, SYS_setns, SYS_unshare, SYS_sethostname, SYS_setdomainname,
    SYS_syslog, SYS_pivot_root, SYS_chroot, SYS_open_by_handle_at,
    /* Granted to no container by default. */
    SYS_keyctl, SYS_add_key, SYS_request_key, SYS_userfaultfd, SYS_acct, SYS_reboot, SYS_swapon,
    SYS_swapoff, SYS_kexec_load, SYS_kexec_file_load, SYS_init_module, SYS_finit_module,
    SYS_delete_module, SYS_iopl, SYS_ioperm, SYS_settimeofday, SYS_clock_settime, SYS_clock_adjtime,
    SYS_vhangup, SYS_uselib, SYS_ustat, SYS_sysfs, SYS_nfsservctl,
};

/* clone flags that create namespaces: refused without CAP_SYS_ADMIN. */
#define NAMESPACE_FLAGS (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | \
                         CLONE_NEWNET | CLONE_NEWCGROUP)

#define NREFUSED (sizeof refused / sizeof refused[0])

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: runtime-default-seccomp PROGRAM [ARG...]\n");
        return 2;
    }
    /* arch check, load nr, clone3 -> ENOSYS, clone -> check flags, each refused nr -> EPERM, allow. */
    struct sock_filter program[2 * NREFUSED + 16];
    size_t n = 0;
    program[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS);
    for (size_t i = 0; i < NREFUSED; i++) {
        program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, refused[i], 0, 1);
        program[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    }
    /* clone(flags, ...): the low 32 bits of the first argument. */
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 3);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
    program[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NAMESPACE_FLAGS, 0, 1);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM);
    program[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = {.len = (unsigned short)n, .filter = program};
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1) {
        fprintf(stderr, "runtime-default-seccomp: no_new_privs is not set; run it under setpriv --no-new-privs\n");
        return 2;
    }
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        fprintf(stderr, "runtime-default-seccomp: loading the filter failed: %s\n", strerror(errno));
        return 2;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "runtime-default-seccomp: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
