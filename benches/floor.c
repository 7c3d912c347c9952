/* The floor: the kernel work of one fastcontain container and nothing else.
 *
 * Per container, the same objects fastcontain makes, in the same order:
 *   state dir <root>/<n>/{upper,work,rootfs}
 *   [cgroups: mkdir + open of <v2>/<n> (CLONE_INTO_CGROUP) with the device program
 *    attached (--device-bpf: loaded once), mkdir of <v1 ctrl>/<n> + a memory/pids limit
 *    each, the child joining them itself by writing 0 to cgroup.procs]
 *   clone3(CLONE_NEWNS|NEWPID|NEWUTS|NEWIPC|NEWNET|NEWCGROUP|PIDFD[|INTO_CGROUP])
 *   [--hold-mnt: the child's mount namespace taken through its pidfd (Linux 6.11)]
 *   child: [--reuse-netns: setns into the server's one network namespace, made once with
 *          lo up, instead of CLONE_NEWNET], / rprivate, overlay (lower = the image, volatile
 *          upper) on rootfs, /proc, /sys ro, /dev tmpfs with 6 nodes and 5 links, devpts,
 *          /dev/shm, mqueue, [the masked paths (one empty ro tmpfs, bound for the other
 *          directories; /dev/null for files) and read-only binds of the security defaults
 *          (made while /proc is read-only when all are in it: they inherit it)],
 *          pivot_root(".", "."), umount2(".", MNT_DETACH), sethostname, lo up (not with
 *          --reuse-netns), [the bounding set dropped to the kept capabilities, capset,
 *          no_new_privs, the seccomp filters], execve
 *   parent: waitid on the pidfd, close, answer; then [close the held mount namespace: its
 *          mounts go], rmdir the cgroups, remove the state dir (after the answer, as
 *          fastcontain tears down off the caller's path)
 * --reuse-netns and --hold-mnt are what fastcontain.run does by default (netns.py's
 * reserve, spec hold_mount_ns); benches/floor.py passes both.
 *
 * Built by benches/conftest.py with `cc -O2`. Two modes:
 *   floor [opts] --once ARGV...   one container running ARGV, its stdio inherited
 *   floor [opts] --serve          a line "run ARGV0" on stdin runs one container with stdio
 *                                 on /dev/null; the answer is one line:
 *                                 "<exit status> <ns per step>..." (see STEPS), or "err <msg>"
 * Options: --lower DIR (the image), --root DIR (state dirs), --cgroup-v2 DIR (a parent in
 * the cgroup2 hierarchy), --cgroup-v1 DIR (a parent v1 cgroup, repeatable: memory, pids),
 * --mask PATH and --ro PATH (repeatable: absolute container paths), --caps HEX (kept set),
 * --seccomp FILE (repeatable: a struct sock_filter array, loaded in order last before execve,
 * as fastcontain loads its compiled profile after no_new_privs), --device-bpf FILE (the
 * instructions of a BPF_PROG_TYPE_CGROUP_DEVICE program, attached to each v2 cgroup as
 * fastcontain attaches its device policy's).
 *
 * Step times come from the child through a MAP_SHARED page: clock_gettime is vDSO.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/filter.h>
#include <linux/bpf.h>
#include <sched.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <net/if.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef PIDFD_GET_MNT_NAMESPACE
#define PIDFD_GET_MNT_NAMESPACE _IO(0xFF, 3)
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

enum { T_START, T_STATE, T_CGROUP, T_CLONE, T_MOUNTS, T_PIVOT, T_NET, T_EXEC, T_WAIT, T_TEARDOWN, T_N };
static const char *STEPS[T_N] = {"start", "state", "cgroup", "clone", "mounts", "pivot", "network", "exec", "wait", "teardown"};

static const char *lower = NULL, *root = NULL, *cg2 = NULL;
static const char *cg1[8];
static int ncg1 = 0;
static const char *masks[64], *ros[64];
static int nmasks = 0, nros = 0;
static unsigned long long caps_keep = ~0ull; /* --caps HEX: the bounding/permitted/effective set */
static int caps_given = 0;
static struct sock_fprog filters[8];
static int nfilters = 0;
static volatile uint64_t *shared; /* child's timestamps */
static int reuse_netns = -1; /* --reuse-netns: the one network namespace, lo up */
static int hold_mnt = 0;     /* --hold-mnt */
static int device_prog = -1; /* --device-bpf: the loaded program */

static uint64_t now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void die_child(int errfd, const char *what) {
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s: %s", what, strerror(errno));
    if (write(errfd, buf, n) < 0) {}
    _exit(127);
}

#define CHK(call, what) do { if ((call) < 0) die_child(errfd, what); } while (0)

static int write_fd(int fd, const char *s) {
    return write(fd, s, strlen(s)) < 0 ? -1 : 0;
}

static int write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = write_fd(fd, s);
    close(fd);
    return r;
}

static void lo_up(int errfd) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    CHK(s, "socket");
    struct ifreq req;
    memset(&req, 0, sizeof req);
    strcpy(req.ifr_name, "lo");
    CHK(ioctl(s, SIOCGIFFLAGS, &req), "SIOCGIFFLAGS");
    req.ifr_flags |= IFF_UP | IFF_RUNNING;
    CHK(ioctl(s, SIOCSIFFLAGS, &req), "SIOCSIFFLAGS");
    close(s);
}

static void child(const char *dir, int errfd, int *v1procs, char **argv, int quiet) {
    char rootfs[4096], data[8192], p[4200];
    static const struct { const char *name; int major, minor; } devs[] = {
        {"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}};
    static const char *links[][2] = {{"pts/ptmx", "dev/ptmx"}, {"/proc/self/fd", "dev/fd"},
        {"/proc/self/fd/0", "dev/stdin"}, {"/proc/self/fd/1", "dev/stdout"}, {"/proc/self/fd/2", "dev/stderr"}};
    if (reuse_netns >= 0) CHK(setns(reuse_netns, CLONE_NEWNET), "setns net");
    for (int i = 0; i < ncg1; i++) CHK(write_fd(v1procs[i], "0"), "joining a v1 cgroup");
    snprintf(rootfs, sizeof rootfs, "%s/rootfs", dir);
    snprintf(data, sizeof data, "lowerdir=%s,upperdir=%s/upper,workdir=%s/work,volatile", lower, dir, dir);
    CHK(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make / rprivate");
    CHK(mount("overlay", rootfs, "overlay", 0, data), "overlay");
    CHK(chdir(rootfs), "chdir rootfs");
    /* the rest is relative to the rootfs: the same paths fastcontain mounts on */
    CHK(mount("proc", "proc", "proc", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL), "proc");
    CHK(mount("sysfs", "sys", "sysfs", MS_NOSUID | MS_NOEXEC | MS_NODEV | MS_RDONLY, NULL), "sysfs");
    CHK(mount("tmpfs", "dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k"), "dev");
    umask(0);
    for (unsigned i = 0; i < sizeof devs / sizeof devs[0]; i++) {
        snprintf(p, sizeof p, "dev/%s", devs[i].name);
        CHK(mknod(p, S_IFCHR | 0666, makedev(devs[i].major, devs[i].minor)), "mknod");
    }
    for (unsigned i = 0; i < sizeof links / sizeof links[0]; i++) CHK(symlink(links[i][0], links[i][1]), "symlink");
    CHK(mkdir("dev/pts", 0755), "mkdir pts");
    CHK(mount("devpts", "dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"), "devpts");
    CHK(mkdir("dev/shm", 0755), "mkdir shm");
    CHK(mount("shm", "dev/shm", "tmpfs", MS_NOSUID | MS_NOEXEC | MS_NODEV, "mode=1777,size=65536k"), "shm");
    CHK(mkdir("dev/mqueue", 0755), "mkdir mqueue");
    CHK(mount("mqueue", "dev/mqueue", "mqueue", MS_NOSUID | MS_NOEXEC | MS_NODEV, NULL), "mqueue");
    /* the security defaults' masked and read-only paths, as fastcontain mounts them */
    const char *empty = NULL; /* the first masked directory: its tmpfs is bound for the others */
    for (int i = 0; i < nmasks; i++) {
        const char *m = masks[i] + 1; /* relative to the rootfs */
        int r = empty ? mount(empty, m, NULL, MS_BIND, NULL)
                      : mount("tmpfs", m, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0");
        if (r == 0 && !empty) empty = m;
        if (r < 0) {
            if (errno == ENOTDIR) {
                if (mount("/dev/null", m, NULL, MS_BIND, NULL) < 0 && errno != ENOENT) die_child(errfd, "mask");
            } else if (errno != ENOENT) die_child(errfd, "mask");
        }
    }
    /* all in /proc with no mask below one of them: bound while /proc is read-only */
    int inherit = nros > 1;
    for (int i = 0; i < nros; i++) {
        size_t len = strlen(ros[i]);
        if (strncmp(ros[i], "/proc/", 6)) inherit = 0;
        for (int j = 0; j < nmasks; j++)
            if (!strncmp(masks[j], ros[i], len) && (masks[j][len] == 0 || masks[j][len] == '/')) inherit = 0;
    }
    struct mount_attr proc_ro = {.attr_set = MOUNT_ATTR_RDONLY}, proc_rw = {.attr_clr = MOUNT_ATTR_RDONLY};
    if (inherit) CHK(syscall(SYS_mount_setattr, AT_FDCWD, "proc", 0, &proc_ro, sizeof proc_ro), "mount_setattr proc");
    for (int i = 0; i < nros; i++) {
        const char *r = ros[i] + 1;
        if (mount(r, r, NULL, MS_BIND | MS_REC, NULL) < 0) {
            if (errno != ENOENT) die_child(errfd, "readonly bind");
            continue;
        }
        if (inherit) continue;
        struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
        CHK(syscall(SYS_mount_setattr, AT_FDCWD, r, AT_RECURSIVE, &attr, sizeof attr), "mount_setattr");
    }
    if (inherit) CHK(syscall(SYS_mount_setattr, AT_FDCWD, "proc", 0, &proc_rw, sizeof proc_rw), "mount_setattr proc");
    shared[T_MOUNTS] = now();
    CHK(syscall(SYS_pivot_root, ".", "."), "pivot_root");
    CHK(umount2(".", MNT_DETACH), "detach old root");
    CHK(chdir("/"), "chdir /");
    shared[T_PIVOT] = now();
    CHK(sethostname("floor", 5), "sethostname");
    if (reuse_netns < 0) lo_up(errfd);
    shared[T_NET] = now();
    if (caps_given) { /* drop the bounding set to the kept capabilities, then capset */
        for (int cap = 0; cap <= 63; cap++)
            if (!(caps_keep >> cap & 1) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL)
                die_child(errfd, "PR_CAPBSET_DROP");
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2] = {{(unsigned)caps_keep, (unsigned)caps_keep, 0},
                                             {(unsigned)(caps_keep >> 32), (unsigned)(caps_keep >> 32), 0}};
        CHK(syscall(SYS_capset, &h, d), "capset");
        CHK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs");
    }
    for (int i = 0; i < nfilters; i++)
        CHK(syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &filters[i]), "seccomp");
    umask(022);
    if (quiet) {
        int null = open("/dev/null", O_RDWR);
        CHK(null, "open /dev/null");
        for (int i = 0; i < 3; i++) CHK(dup2(null, i), "dup2");
        close(null);
    }
    char *envp[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/", NULL};
    execve(argv[0][0] == '/' ? argv[0] : "/bin/sh", argv, envp);
    die_child(errfd, "execve");
}

static int rmtree(const char *path) {
    /* the state dir's known shape: upper, rootfs, and in work what a volatile overlay
     * leaves (the file work/work/incompat/volatile/dirty and its dirs) */
    char p[4200];
    static const char *made[] = {"work/work/incompat/volatile/dirty", "work/work/incompat/volatile",
                                 "work/work/incompat", "work/work", NULL};
    for (int i = 0; made[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", path, made[i]);
        if ((i == 0 ? unlink(p) : rmdir(p)) < 0 && errno != ENOENT) return -1;
    }
    static const char *subs[] = {"upper", "work", "rootfs", NULL};
    for (int i = 0; subs[i]; i++) {
        snprintf(p, sizeof p, "%s/%s", path, subs[i]);
        if (rmdir(p) < 0) return -1;
    }
    return rmdir(path);
}

/* What a container leaves for its teardown: its cgroups and its state dir. */
struct left { unsigned long n; int cgfd, mntfd, v1procs[8]; char dir[4096]; };

/* Remove what a container left; -1 with msg set when something could not go. */
static int teardown(struct left *l, char *msg, size_t msglen) {
    char p[4200];
    int r = 0;
    if (l->mntfd >= 0) close(l->mntfd); /* the last reference: its mounts go now */
    l->mntfd = -1;
    if (l->cgfd >= 0) close(l->cgfd);
    for (int i = 0; i < ncg1; i++) {
        close(l->v1procs[i]);
        snprintf(p, sizeof p, "%s/floor-%d-%lu", cg1[i], (int)getpid(), l->n);
        if (rmdir(p) < 0 && !r) { snprintf(msg, msglen, "rmdir %s: %s", p, strerror(errno)); r = -1; }
    }
    if (cg2) {
        snprintf(p, sizeof p, "%s/floor-%d-%lu", cg2, (int)getpid(), l->n);
        if (rmdir(p) < 0 && !r) { snprintf(msg, msglen, "rmdir %s: %s", p, strerror(errno)); r = -1; }
    }
    if (rmtree(l->dir) < 0 && !r) { snprintf(msg, msglen, "removing %s: %s", l->dir, strerror(errno)); r = -1; }
    return r;
}

/* One container; fills t[] with step end times up to T_WAIT and *l with what its teardown
 * removes (the caller's to do: as fastcontain, after the answer). Returns the exit status
 * (or -signal), or -1000 with msg set (then nothing is left). */
static int one(unsigned long n, char **argv, int quiet, uint64_t *t, char *msg, size_t msglen, struct left *l) {
    char *dir = l->dir, p[4200];
    int *v1procs = l->v1procs, cgfd = -1, errp[2];
    l->n = n;
    l->cgfd = -1;
    l->mntfd = -1;
    t[T_START] = now();
    snprintf(dir, sizeof l->dir, "%s/floor-%d-%lu", root, (int)getpid(), n);
    if (mkdir(dir, 0700) < 0) { snprintf(msg, msglen, "mkdir %s: %s", dir, strerror(errno)); return -1000; }
    static const char *subs[][2] = {{"upper", "0755"}, {"work", "0700"}, {"rootfs", "0755"}};
    for (int i = 0; i < 3; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, subs[i][0]);
        if (mkdir(p, strtol(subs[i][1], NULL, 8)) < 0) { snprintf(msg, msglen, "mkdir %s: %s", p, strerror(errno)); return -1000; }
    }
    t[T_STATE] = now();
    if (cg2) {
        snprintf(p, sizeof p, "%s/floor-%d-%lu", cg2, (int)getpid(), n);
        if (mkdir(p, 0755) < 0 || (cgfd = open(p, O_DIRECTORY | O_RDONLY | O_CLOEXEC)) < 0) {
            snprintf(msg, msglen, "cgroup %s: %s", p, strerror(errno)); return -1000;
        }
        if (device_prog >= 0) {
            union bpf_attr a;
            memset(&a, 0, sizeof a);
            a.target_fd = cgfd;
            a.attach_bpf_fd = device_prog;
            a.attach_type = BPF_CGROUP_DEVICE;
            a.attach_flags = BPF_F_ALLOW_MULTI;
            if (syscall(SYS_bpf, BPF_PROG_ATTACH, &a, sizeof a) < 0) {
                snprintf(msg, msglen, "BPF_PROG_ATTACH to %s: %s", p, strerror(errno)); close(cgfd); rmdir(p); return -1000;
            }
        }
    }
    for (int i = 0; i < ncg1; i++) {
        snprintf(p, sizeof p, "%s/floor-%d-%lu", cg1[i], (int)getpid(), n);
        if (mkdir(p, 0755) < 0) { snprintf(msg, msglen, "mkdir %s: %s", p, strerror(errno)); return -1000; }
        /* one limit per controller, as a container with memory and pids limits has */
        const char *file = strstr(cg1[i], "/memory") ? "memory.limit_in_bytes" : strstr(cg1[i], "/pids") ? "pids.max" : NULL;
        if (file) {
            snprintf(p, sizeof p, "%s/floor-%d-%lu/%s", cg1[i], (int)getpid(), n, file);
            if (write_file(p, strcmp(file, "pids.max") ? "268435456" : "1024") < 0) {
                snprintf(msg, msglen, "write %s: %s", p, strerror(errno)); return -1000;
            }
        }
        snprintf(p, sizeof p, "%s/floor-%d-%lu/cgroup.procs", cg1[i], (int)getpid(), n);
        if ((v1procs[i] = open(p, O_WRONLY | O_CLOEXEC)) < 0) { snprintf(msg, msglen, "open %s: %s", p, strerror(errno)); return -1000; }
    }
    t[T_CGROUP] = now();
    if (pipe2(errp, O_CLOEXEC) < 0) { snprintf(msg, msglen, "pipe: %s", strerror(errno)); return -1000; }
    int pidfd = -1;
    struct clone_args args;
    memset(&args, 0, sizeof args);
    args.flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWCGROUP | CLONE_PIDFD;
    if (reuse_netns < 0) args.flags |= CLONE_NEWNET;
    args.pidfd = (uint64_t)(uintptr_t)&pidfd;
    args.exit_signal = SIGCHLD;
    if (cgfd >= 0) { args.flags |= CLONE_INTO_CGROUP; args.cgroup = cgfd; }
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid == 0) {
        close(errp[0]);
        shared[T_CLONE] = now();
        child(dir, errp[1], v1procs, argv, quiet);
    }
    close(errp[1]);
    l->cgfd = cgfd;
    if (pid > 0 && hold_mnt) l->mntfd = ioctl(pidfd, PIDFD_GET_MNT_NAMESPACE, 0); /* -1: held nothing */
    if (pid < 0) {
        snprintf(msg, msglen, "clone3: %s", strerror(errno));
        close(errp[0]);
        char ignored[512];
        teardown(l, ignored, sizeof ignored);
        return -1000;
    }
    /* EOF on the CLOEXEC pipe: exec'd */
    ssize_t got = read(errp[0], msg, msglen - 1);
    close(errp[0]);
    t[T_CLONE] = shared[T_CLONE];
    t[T_MOUNTS] = shared[T_MOUNTS];
    t[T_PIVOT] = shared[T_PIVOT];
    t[T_NET] = shared[T_NET];
    t[T_EXEC] = now();
    siginfo_t info;
    memset(&info, 0, sizeof info);
    while (waitid(P_PIDFD, pidfd, &info, WEXITED) < 0 && errno == EINTR) {}
    close(pidfd);
    t[T_WAIT] = now();
    if (got > 0) {
        msg[got] = 0;
        char ignored[512];
        teardown(l, ignored, sizeof ignored);
        return -1000;
    }
    return info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
}

/* The device program from a file of struct bpf_insn, loaded once. */
static int load_device_prog(const char *path) {
    static struct bpf_insn insns[4096];
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(insns, sizeof(struct bpf_insn), 4096, f);
    fclose(f);
    if (n == 0) return -1;
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)insns;
    a.insn_cnt = (uint32_t)n;
    a.license = (uint64_t)(uintptr_t)"Apache-2.0";
    a.expected_attach_type = BPF_CGROUP_DEVICE;
    return (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof a);
}

/* A seccomp filter from a file of struct sock_filter (read once, before any container). */
static int read_filter(const char *path) {
    if (nfilters == 8) return -1;
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    static struct sock_filter buf[8][4096];
    size_t n = fread(buf[nfilters], sizeof(struct sock_filter), 4096, f);
    fclose(f);
    if (n == 0) return -1;
    filters[nfilters].len = (unsigned short)n;
    filters[nfilters].filter = buf[nfilters];
    nfilters++;
    return 0;
}

int main(int argc, char **argv) {
    int i = 1, serve = 0;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--lower") && i + 1 < argc) lower = argv[++i];
        else if (!strcmp(argv[i], "--root") && i + 1 < argc) root = argv[++i];
        else if (!strcmp(argv[i], "--cgroup-v2") && i + 1 < argc) cg2 = argv[++i];
        else if (!strcmp(argv[i], "--cgroup-v1") && i + 1 < argc && ncg1 < 8) cg1[ncg1++] = argv[++i];
        else if (!strcmp(argv[i], "--mask") && i + 1 < argc && nmasks < 64) masks[nmasks++] = argv[++i];
        else if (!strcmp(argv[i], "--ro") && i + 1 < argc && nros < 64) ros[nros++] = argv[++i];
        else if (!strcmp(argv[i], "--caps") && i + 1 < argc) { caps_keep = strtoull(argv[++i], NULL, 16); caps_given = 1; }
        else if (!strcmp(argv[i], "--seccomp") && i + 1 < argc) {
            if (read_filter(argv[++i]) < 0) { fprintf(stderr, "floor: cannot read the filter %s\n", argv[i]); return 2; }
        }
        else if (!strcmp(argv[i], "--device-bpf") && i + 1 < argc) {
            if ((device_prog = load_device_prog(argv[++i])) < 0) {
                fprintf(stderr, "floor: cannot load the device program %s: %s\n", argv[i], strerror(errno)); return 2;
            }
        }
        else if (!strcmp(argv[i], "--reuse-netns")) reuse_netns = 0;
        else if (!strcmp(argv[i], "--hold-mnt")) hold_mnt = 1;
        else if (!strcmp(argv[i], "--serve")) { serve = 1; i++; break; }
        else if (!strcmp(argv[i], "--once")) { i++; break; }
        else { fprintf(stderr, "floor: bad argument %s\n", argv[i]); return 2; }
    }
    if (!lower || !root || (!serve && i >= argc)) {
        fprintf(stderr, "usage: floor --lower DIR --root DIR [--cgroup-v2 DIR] [--cgroup-v1 DIR]... (--serve | --once ARGV...)\n");
        return 2;
    }
    if (reuse_netns == 0) { /* one namespace with lo up, made now; we stay in ours */
        int ours = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        if (ours < 0 || unshare(CLONE_NEWNET) < 0) { perror("floor: unshare(CLONE_NEWNET)"); return 1; }
        reuse_netns = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
        int errfd = 2;
        lo_up(errfd);
        if (reuse_netns < 0 || setns(ours, CLONE_NEWNET) < 0) { perror("floor: setns back"); return 1; }
        close(ours);
    }
    shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) { perror("mmap"); return 1; }
    uint64_t t[T_N];
    char msg[512];
    struct left l;
    if (!serve) {
        int rc = one(0, argv + i, 0, t, msg, sizeof msg, &l);
        if (rc != -1000 && teardown(&l, msg, sizeof msg) < 0) rc = -1000;
        if (rc == -1000) { fprintf(stderr, "floor: %s\n", msg); return 125; }
        return rc < 0 ? 128 - rc : rc;
    }
    /* The answer goes as soon as the container is reaped; its teardown follows (while the
     * caller reads it), as fastcontain's teardown runs off the caller's path. Its time is
     * the next answer's "teardown" (the previous container's), its failure the next "err". */
    uint64_t last_teardown = 0;
    char teardown_err[512] = "";
    char line[4096];
    unsigned long n = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\n")] = 0;
        /* Lines are served in order, so by now the previous container's teardown is done:
         * "sync" lets a leak check wait for it. */
        if (!strcmp(line, "sync")) { printf("%s\n", teardown_err[0] ? teardown_err : "ok"); teardown_err[0] = 0; continue; }
        if (strncmp(line, "run ", 4)) { printf("err expected 'run ARGV0' or 'sync'\n"); continue; }
        char *cargv[] = {line + 4, NULL};
        if (teardown_err[0]) { printf("err teardown of the previous container: %s\n", teardown_err); teardown_err[0] = 0; continue; }
        msg[0] = 0;
        int rc = one(n++, cargv, 1, t, msg, sizeof msg, &l);
        if (rc == -1000) { printf("err %s\n", msg); continue; }
        printf("%d", rc);
        for (int k = 1; k < T_TEARDOWN; k++) printf(" %s=%llu", STEPS[k], (unsigned long long)(t[k] - t[k - 1]));
        printf(" teardown=%llu\n", (unsigned long long)last_teardown);
        uint64_t t0 = now();
        if (teardown(&l, teardown_err, sizeof teardown_err) < 0 && !teardown_err[0]) strcpy(teardown_err, "failed");
        last_teardown = now() - t0;
    }
    return 0;
}
