/* The escape attempts, one subcommand-free pass: run inside a container, it tries
 * each well-known way out and prints one line per attempt:
 *
 *     NAME ok                 the call succeeded (then undone where it changed anything)
 *     NAME errno ENAME        the call failed with that errno
 *     NAME masked|absent|confined|exposed|leaked N   for the attempts that are not one call
 *
 * It must be harmless to the host even in a privileged container: nothing here
 * reboots, sets the clock, loads a module or writes sysrq. Where a permitted call
 * would act, it gets invalid arguments that the kernel rejects only after its
 * permission checks (EINVAL, EFAULT, EBADF), so that "allowed" and "refused"
 * (EPERM, EACCES, ENOSYS, EROFS) can be told apart. Calls that change only the
 * caller (a namespace, a personality) run in a forked child.
 *
 * Usage: escape HOST_PID     (stdin: a descriptor of a host namespace, "leaked" on purpose)
 * Built static by the test: cc -static -O1 -o escape escape.c
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>

static const char *ename(int e) {
    switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case EROFS: return "EROFS";
    case ENOSYS: return "ENOSYS";
    case ENOEXEC: return "ENOEXEC";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENODEV: return "ENODEV";
    case E2BIG: return "E2BIG";
    case ENXIO: return "ENXIO";
    default: return "EOTHER";
    }
}

/* Report a syscall's result: r < 0 means failure with errno. */
static void report(const char *name, long r) {
    if (r < 0)
        printf("%s errno %s\n", name, ename(errno));
    else
        printf("%s ok\n", name);
    fflush(stdout);
}

/* Report a call that returns a descriptor, and close it. */
static void report_fd(const char *name, long fd) {
    report(name, fd);
    if (fd >= 0)
        close(fd);
}

/* Run fn in a forked child (it may change its own namespaces or root); report its result. */
static void in_child(const char *name, long (*fn)(void)) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long r = fn();
        _exit(r < 0 ? errno : 0);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
    if (e == 0)
        printf("%s ok\n", name);
    else
        printf("%s errno %s\n", name, ename(e));
    fflush(stdout);
}

static long do_unshare_user(void) { return unshare(CLONE_NEWUSER); }
static long do_unshare_mnt(void) { return unshare(CLONE_NEWNS); }
static long do_clone_user(void) {
    long r = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid(r, NULL, 0);
    return r < 0 ? -1 : 0;
}
static long do_setns_leaked(void) { return setns(0, 0); }
static long do_personality(void) {
    /* READ_IMPLIES_EXEC: not one of the personalities docker lets through */
    return syscall(SYS_personality, 0x0400000);
}

/* The chroot break-out: chroot into a subdirectory, keep a cwd outside it, climb. */
static struct stat root_before;
static long do_chroot_breakout(void) {
    mkdir("/tmp/fc-jail", 0700);
    if (chroot("/tmp/fc-jail") < 0)
        return -1;
    for (int i = 0; i < 64; i++)
        if (chdir("..") < 0)
            return -1;
    if (chroot(".") < 0)
        return -1;
    struct stat now;
    if (stat("/", &now) < 0)
        return -1;
    /* out of the jail; the container's root is as high as one gets */
    errno = 0;
    return (now.st_dev == root_before.st_dev && now.st_ino == root_before.st_ino) ? 0 : -2;
}

static void chroot_breakout(void) {
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        long r = do_chroot_breakout();
        _exit(r == 0 ? 0 : r == -2 ? 100 : errno);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    int e = WIFEXITED(st) ? WEXITSTATUS(st) : 255;
    if (e == 0)
        printf("chroot_breakout confined\n");
    else if (e == 100)
        printf("chroot_breakout exposed\n");
    else
        printf("chroot_breakout errno %s\n", ename(e));
    rmdir("/tmp/fc-jail");
}

/* A proc file hidden: absent, or replaced by /dev/null (a character device). */
static void masked(const char *name, const char *path) {
    struct stat st;
    if (stat(path, &st) < 0)
        printf("%s absent\n", name);
    else if (S_ISCHR(st.st_mode))
        printf("%s masked\n", name);
    else {
        int fd = open(path, O_RDONLY);
        if (fd < 0) {
            printf("%s errno %s\n", name, ename(errno));
            return;
        }
        char buf[256];
        long n = read(fd, buf, sizeof buf);
        close(fd);
        printf(n < 0 ? "%s errno %s\n" : "%s exposed\n", name, ename(errno));
    }
}

/* A masked directory is an empty tmpfs. */
static void masked_dir(const char *name, const char *path) {
    DIR *d = opendir(path);
    if (!d) {
        printf("%s absent\n", name);
        return;
    }
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            n++;
    closedir(d);
    printf(n ? "%s exposed\n" : "%s masked\n", name);
}

/* Open for writing only: nothing is ever written. */
static void open_write(const char *name, const char *path) {
    int fd = open(path, O_WRONLY);
    if (fd < 0 && errno == ENOENT) {
        printf("%s absent\n", name);
        return;
    }
    report(name, fd);
    if (fd >= 0)
        close(fd);
}

/* Make a device node in the container's /dev (a tmpfs without nodev) and open it for
 * reading (nothing is read): mknod is allowed as in docker, the devices cgroup refuses
 * the open (EPERM); where it is let through, a node without a driver gives ENXIO. */
static void mknod_and_open(const char *name, const char *path, mode_t type, dev_t dev) {
    long r = mknod(path, type | 0600, dev);
    if (r < 0) {
        report(name, r);
        return;
    }
    report_fd(name, open(path, O_RDONLY));
    unlink(path);
}

/* Descriptors beyond stdio the container was given (its own listing fd aside). */
static void leaked_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0, self = dirfd(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        int fd = atoi(e->d_name);
        if (e->d_name[0] != '.' && fd > 2 && fd != self)
            n++;
    }
    closedir(d);
    printf(n ? "leaked_fd leaked %d\n" : "leaked_fd confined\n", n);
}

static void proc1_root(void) {
    struct stat a, b;
    if (stat("/proc/1/root/", &a) < 0) {
        printf("proc1_root errno %s\n", ename(errno));
        return;
    }
    stat("/", &b);
    printf(a.st_dev == b.st_dev && a.st_ino == b.st_ino ? "proc1_root confined\n" : "proc1_root exposed\n");
}

static void raw_socket(void) {
    /* allowed with CAP_NET_RAW (in docker's default set): it reaches only the container's netns */
    int s = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
    if (s < 0) {
        printf("raw_socket errno %s\n", ename(errno));
        return;
    }
    close(s);
    DIR *d = opendir("/sys/class/net");
    int other = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && strcmp(e->d_name, "lo"))
            other++;
    if (d)
        closedir(d);
    printf(other ? "raw_socket exposed\n" : "raw_socket confined\n");
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: escape HOST_PID\n");
        return 2;
    }
    pid_t host_pid = atoi(argv[1]);
    stat("/", &root_before);
    setvbuf(stdout, NULL, _IOLBF, 0);

    mkdir("/tmp/fc-mnt", 0700);
    report("mount_tmpfs", mount("none", "/tmp/fc-mnt", "tmpfs", 0, "size=4k"));
    umount2("/tmp/fc-mnt", MNT_DETACH);
    rmdir("/tmp/fc-mnt");
    /* unmasking: umount what hides /proc/keys (EINVAL where nothing is mounted there) */
    report("umount_mask", umount2("/proc/keys", MNT_DETACH));
    report("remount_proc_sys_rw", mount(NULL, "/proc/sys", NULL, MS_REMOUNT | MS_BIND, NULL));
    report("pivot_root", syscall(SYS_pivot_root, "/nonexistent-fc-new", "/nonexistent-fc-old"));
    in_child("unshare_mount_ns", do_unshare_mnt);
    chroot_breakout();
    mknod_and_open("mknod_char_mem", "/dev/fc-mem", S_IFCHR, makedev(1, 1));
    mknod_and_open("mknod_block_disk", "/dev/fc-disk", S_IFBLK, makedev(8, 0));
    /* the host's /dev/kmsg, bound in by a volume without --device: opened, never read */
    report_fd("open_leaked_device", open("/fc/leaked-dev", O_RDONLY));
    masked("read_kcore", "/proc/kcore");
    masked("read_keys", "/proc/keys");
    masked("read_timer_list", "/proc/timer_list");
    masked_dir("read_sys_firmware", "/sys/firmware");
    open_write("write_sysrq_trigger", "/proc/sysrq-trigger");
    open_write("write_core_pattern", "/proc/sys/kernel/core_pattern");
    open_write("write_sys_power_state", "/sys/power/state");
    report("init_module", syscall(SYS_init_module, NULL, 0, ""));
    report("finit_module", syscall(SYS_finit_module, -1, "", 0));
    /* more segments than KEXEC_SEGMENT_MAX: EINVAL once past the CAP_SYS_BOOT check */
    report("kexec_load", syscall(SYS_kexec_load, 0, 1000, NULL, 0));
    report("ptrace_host_process", syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, host_pid, 0, 0));
    /* KEYCTL_GET_KEYRING_ID of the session keyring: a read */
    report("keyctl", syscall(SYS_keyctl, 0, -3, 0, 0, 0));
    report("add_key", syscall(SYS_add_key, "user", "fc-escape", NULL, 0, -2));
    /* BPF_MAP_CREATE with a zeroed attr: EINVAL once allowed */
    report_fd("bpf", syscall(SYS_bpf, 0, NULL, 0));
    report_fd("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
    in_child("unshare_user_ns", do_unshare_user);
    in_child("clone_user_ns", do_clone_user);
    report("clone3", syscall(SYS_clone3, NULL, 0));
    report_fd("open_by_handle_at", syscall(SYS_open_by_handle_at, AT_FDCWD, NULL, O_RDONLY));
    report("name_to_handle_at", syscall(SYS_name_to_handle_at, AT_FDCWD, "/", NULL, NULL, 0));
    raw_socket();
    report_fd("vsock_socket", socket(40 /* AF_VSOCK */, SOCK_STREAM, 0));
    report("sethostname", sethostname("fc-escape", 9));
    in_child("setns_leaked_fd", do_setns_leaked);
    leaked_fds();
    proc1_root();
    report_fd("write_readonly_bind", open("/ro/fc-written", O_WRONLY | O_CREAT, 0600));
    report("remount_readonly_bind_rw", mount(NULL, "/ro", NULL, MS_REMOUNT | MS_BIND, NULL));
    /* with both NULL, a permitted settimeofday changes nothing */
    report("settimeofday", syscall(SYS_settimeofday, NULL, NULL));
    report("clock_settime", syscall(SYS_clock_settime, CLOCK_REALTIME, NULL));
    /* a bad magic: EINVAL once past the CAP_SYS_BOOT check */
    report("reboot", syscall(SYS_reboot, 0, 0, 0, NULL));
    /* SWAP_FLAGS_VALID excludes bit 31: EINVAL once past the CAP_SYS_ADMIN check */
    report("swapon", syscall(SYS_swapon, "/nonexistent-fc", 0x80000000));
    /* SYSLOG_ACTION_SIZE_BUFFER: the size of the kernel log, a read */
    report("syslog", syscall(SYS_syslog, 10, NULL, 0));
    report_fd("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
    in_child("personality", do_personality);
    report_fd("userfaultfd", syscall(SYS_userfaultfd, 0));
    report("iopl", syscall(SYS_iopl, 4));
    return 0;
}
