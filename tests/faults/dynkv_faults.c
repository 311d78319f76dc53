/*
 * dynkv_faults.c: an LD_PRELOAD layer that lets the test harness
 * (tests/src/faults.rs) emulate a power cut, a full disk and a skewed clock
 * for one `dynkv` process. The harness compiles it with `cc` at run time and
 * starts a node with
 *
 *   LD_PRELOAD=libdynkv_faults.so
 *   DYNKV_FAULTS_DATA=<the node's data dir, canonical>
 *   DYNKV_FAULTS_MANIFEST=<append-only file of sync points>
 *   DYNKV_FAULTS_CONTROL=<4 KiB control page the harness writes>
 *
 * Power cut. Every successful fsync/fdatasync of a regular file under the
 * data dir appends "S <dev> <ino> <size>\n" to the manifest, where size is
 * the file's length taken *before* the call (everything written before the
 * call is durable once it returns). Every successful unlink/rename that
 * removes the last name of a regular file appends "D <dev> <ino>\n" (so a
 * reused inode number starts as never synced). After SIGKILL, the harness
 * truncates every file of the data dir to its last synced length (0 if it
 * was never synced): what a power cut takes from append-only files (RocksDB
 * WAL, MANIFEST, SST, OPTIONS) when nothing unsynced reached the disk.
 * sync_file_range is not a sync point (it makes no metadata durable);
 * directory fsyncs are ignored (the namespace is treated as durable at
 * once). The manifest lives in the page cache: the harness reads it after
 * the kill, nothing real loses power.
 *
 * Disk full. While control->disk_full is non-zero, write, pwrite, writev,
 * pwritev(2) and fallocate (not hole punching) of a non-empty range on a file
 * under the data dir fail with ENOSPC, as on a full ext4 (delayed
 * allocation reserves blocks at write time). Reads, renames, unlinks and
 * file creation go through. Clearing the flag makes space return.
 *
 * Clock skew. control->clock_offset_ns is added to every read of the wall
 * clock (clock_gettime of CLOCK_REALTIME, _COARSE and CLOCK_TAI,
 * gettimeofday, time) and taken off absolute CLOCK_REALTIME deadlines
 * (pthread_cond_timedwait on a realtime condvar, pthread_cond_clockwait,
 * clock_nanosleep with TIMER_ABSTIME), so waits keep their length as on a
 * machine whose clock is off. Monotonic clocks are untouched (they are
 * per-machine anyway). The offset can change while the process runs: a
 * change is a step of the wall clock, as an NTP step would be.
 *
 * The control page is mapped shared and read on each call: no syscalls
 * are added to the write path unless a fault is on.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define CONTROL_MAGIC 0x46564b44u /* "DKVF" little-endian */

struct control {
    uint32_t magic;
    uint32_t disk_full;
    int64_t clock_offset_ns;
};

static volatile struct control *ctl;
static int manifest_fd = -1;
static char data_dir[PATH_MAX];
static size_t data_dir_len;

#define REAL(name)                                                             \
    static __typeof__(name) *real_##name;                                      \
    if (!real_##name)                                                          \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

__attribute__((constructor)) static void dynkv_faults_init(void) {
    const char *c = getenv("DYNKV_FAULTS_CONTROL");
    if (c) {
        int fd = open(c, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            void *p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED && ((struct control *)p)->magic == CONTROL_MAGIC)
                ctl = (volatile struct control *)p;
            close(fd);
        }
    }
    const char *m = getenv("DYNKV_FAULTS_MANIFEST");
    if (m)
        manifest_fd = open(m, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    const char *d = getenv("DYNKV_FAULTS_DATA");
    if (d && strlen(d) + 2 < sizeof data_dir) {
        strcpy(data_dir, d);
        data_dir_len = strlen(data_dir);
        while (data_dir_len > 1 && data_dir[data_dir_len - 1] == '/')
            data_dir[--data_dir_len] = 0;
    }
}

static int disk_full(void) { return ctl && __atomic_load_n(&ctl->disk_full, __ATOMIC_RELAXED); }

static int64_t clock_offset(void) {
    return ctl ? __atomic_load_n(&ctl->clock_offset_ns, __ATOMIC_RELAXED) : 0;
}

/* Whether `path` is the data dir or lies under it. */
static int path_in_data(const char *path) {
    if (!data_dir_len || strncmp(path, data_dir, data_dir_len) != 0)
        return 0;
    return path[data_dir_len] == 0 || path[data_dir_len] == '/';
}

/* Whether fd is a file under the data dir (one readlink: only called when a
 * fault is on or at a sync point). */
static int fd_in_data(int fd) {
    char link[64], target[PATH_MAX];
    if (!data_dir_len)
        return 0;
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n <= 0)
        return 0;
    target[n] = 0;
    return path_in_data(target);
}

static char *put_u64(char *p, uint64_t v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static void manifest_line(char kind, const struct stat *st, int with_size) {
    if (manifest_fd < 0)
        return;
    char buf[96], *p = buf;
    *p++ = kind;
    *p++ = ' ';
    p = put_u64(p, (uint64_t)st->st_dev);
    *p++ = ' ';
    p = put_u64(p, (uint64_t)st->st_ino);
    if (with_size) {
        *p++ = ' ';
        p = put_u64(p, (uint64_t)st->st_size);
    }
    *p++ = '\n';
    int saved = errno;
    /* One small O_APPEND write: never interleaved with another thread's. */
    ssize_t r = syscall(SYS_write, manifest_fd, buf, (size_t)(p - buf));
    (void)r;
    errno = saved;
}

static int full_for(int fd, size_t len) {
    if (len == 0 || !disk_full() || !fd_in_data(fd))
        return 0;
    errno = ENOSPC;
    return 1;
}

static size_t iov_len(const struct iovec *iov, int cnt) {
    size_t n = 0;
    for (int i = 0; i < cnt; i++)
        n += iov[i].iov_len;
    return n;
}

/* ---- writes: ENOSPC while the disk is full ---- */

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    if (full_for(fd, n))
        return -1;
    return real_write(fd, buf, n);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(pwrite);
    if (full_for(fd, n))
        return -1;
    return real_pwrite(fd, buf, n, off);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    REAL(pwrite64);
    if (full_for(fd, n))
        return -1;
    return real_pwrite64(fd, buf, n, off);
}

ssize_t writev(int fd, const struct iovec *iov, int cnt) {
    REAL(writev);
    if (full_for(fd, iov_len(iov, cnt)))
        return -1;
    return real_writev(fd, iov, cnt);
}

ssize_t pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    REAL(pwritev);
    if (full_for(fd, iov_len(iov, cnt)))
        return -1;
    return real_pwritev(fd, iov, cnt, off);
}

ssize_t pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off) {
    REAL(pwritev64);
    if (full_for(fd, iov_len(iov, cnt)))
        return -1;
    return real_pwritev64(fd, iov, cnt, off);
}

ssize_t pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
    REAL(pwritev2);
    if (full_for(fd, iov_len(iov, cnt)))
        return -1;
    return real_pwritev2(fd, iov, cnt, off, flags);
}

ssize_t pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags) {
    REAL(pwritev64v2);
    if (full_for(fd, iov_len(iov, cnt)))
        return -1;
    return real_pwritev64v2(fd, iov, cnt, off, flags);
}

#ifndef FALLOC_FL_PUNCH_HOLE
#define FALLOC_FL_PUNCH_HOLE 0x02
#endif

int fallocate(int fd, int mode, off_t off, off_t len) {
    REAL(fallocate);
    if (!(mode & FALLOC_FL_PUNCH_HOLE) && full_for(fd, (size_t)len))
        return -1;
    return real_fallocate(fd, mode, off, len);
}

int fallocate64(int fd, int mode, off64_t off, off64_t len) {
    REAL(fallocate64);
    if (!(mode & FALLOC_FL_PUNCH_HOLE) && full_for(fd, (size_t)len))
        return -1;
    return real_fallocate64(fd, mode, off, len);
}

int posix_fallocate(int fd, off_t off, off_t len) {
    REAL(posix_fallocate);
    if (full_for(fd, (size_t)len))
        return ENOSPC;
    return real_posix_fallocate(fd, off, len);
}

int posix_fallocate64(int fd, off64_t off, off64_t len) {
    REAL(posix_fallocate64);
    if (full_for(fd, (size_t)len))
        return ENOSPC;
    return real_posix_fallocate64(fd, off, len);
}

/* ---- sync points ---- */

static int synced(int fd, int (*real)(int)) {
    struct stat st;
    int have = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
    int r = real(fd);
    if (r == 0 && have && fd_in_data(fd))
        manifest_line('S', &st, 1);
    return r;
}

int fsync(int fd) {
    REAL(fsync);
    return synced(fd, real_fsync);
}

int fdatasync(int fd) {
    REAL(fdatasync);
    return synced(fd, real_fdatasync);
}

/* ---- names that go away ---- */

static int last_name_of_file(int dirfd, const char *path, struct stat *st) {
    return fstatat(dirfd, path, st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st->st_mode);
}

int unlink(const char *path) {
    REAL(unlink);
    struct stat st;
    int known = last_name_of_file(AT_FDCWD, path, &st) && st.st_nlink == 1;
    int r = real_unlink(path);
    if (r == 0 && known)
        manifest_line('D', &st, 0);
    return r;
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat);
    struct stat st;
    int known = !(flags & AT_REMOVEDIR) && last_name_of_file(dirfd, path, &st) && st.st_nlink == 1;
    int r = real_unlinkat(dirfd, path, flags);
    if (r == 0 && known)
        manifest_line('D', &st, 0);
    return r;
}

int rename(const char *from, const char *to) {
    REAL(rename);
    struct stat st;
    int known = last_name_of_file(AT_FDCWD, to, &st) && st.st_nlink == 1;
    int r = real_rename(from, to);
    if (r == 0 && known)
        manifest_line('D', &st, 0);
    return r;
}

int renameat(int fd1, const char *from, int fd2, const char *to) {
    REAL(renameat);
    struct stat st;
    int known = last_name_of_file(fd2, to, &st) && st.st_nlink == 1;
    int r = real_renameat(fd1, from, fd2, to);
    if (r == 0 && known)
        manifest_line('D', &st, 0);
    return r;
}

int renameat2(int fd1, const char *from, int fd2, const char *to, unsigned int flags) {
    REAL(renameat2);
    struct stat st;
    /* RENAME_EXCHANGE (2) keeps both files. */
    int known = !(flags & 2) && last_name_of_file(fd2, to, &st) && st.st_nlink == 1;
    int r = real_renameat2(fd1, from, fd2, to, flags);
    if (r == 0 && known)
        manifest_line('D', &st, 0);
    return r;
}

/* ---- the wall clock ---- */

static void shift(struct timespec *ts, int64_t ns) {
    int64_t total = (int64_t)ts->tv_nsec + ns % 1000000000LL;
    ts->tv_sec += (time_t)(ns / 1000000000LL);
    if (total < 0) {
        total += 1000000000LL;
        ts->tv_sec -= 1;
    } else if (total >= 1000000000LL) {
        total -= 1000000000LL;
        ts->tv_sec += 1;
    }
    ts->tv_nsec = (long)total;
}

static int is_wall(clockid_t c) {
    return c == CLOCK_REALTIME || c == CLOCK_REALTIME_COARSE || c == CLOCK_TAI;
}

int clock_gettime(clockid_t c, struct timespec *ts) {
    REAL(clock_gettime);
    int r = real_clock_gettime(c, ts);
    int64_t off;
    if (r == 0 && is_wall(c) && (off = clock_offset()) != 0)
        shift(ts, off);
    return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    REAL(gettimeofday);
    int r = real_gettimeofday(tv, tz);
    int64_t off;
    if (r == 0 && (off = clock_offset()) != 0) {
        struct timespec ts = {tv->tv_sec, tv->tv_usec * 1000};
        shift(&ts, off);
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }
    return r;
}

time_t time(time_t *t) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0)
        return (time_t)-1;
    if (t)
        *t = ts.tv_sec;
    return ts.tv_sec;
}

/* An absolute CLOCK_REALTIME deadline the program computed from its skewed
 * clock, back on the real one. */
static const struct timespec *unskew(const struct timespec *abs, struct timespec *out) {
    int64_t off = clock_offset();
    if (!abs || off == 0)
        return abs;
    *out = *abs;
    shift(out, -off);
    return out;
}

int pthread_cond_timedwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                           const struct timespec *restrict abs) {
    REAL(pthread_cond_timedwait);
    struct timespec tmp;
    /* glibc >= 2.25: bit 1 of __wrefs is the condvar's clock (1 = monotonic). */
    if (!(cond->__data.__wrefs & 2))
        abs = unskew(abs, &tmp);
    return real_pthread_cond_timedwait(cond, mutex, abs);
}

int pthread_cond_clockwait(pthread_cond_t *restrict cond, pthread_mutex_t *restrict mutex,
                           clockid_t c, const struct timespec *restrict abs) {
    REAL(pthread_cond_clockwait);
    struct timespec tmp;
    if (is_wall(c))
        abs = unskew(abs, &tmp);
    return real_pthread_cond_clockwait(cond, mutex, c, abs);
}

int clock_nanosleep(clockid_t c, int flags, const struct timespec *req, struct timespec *rem) {
    REAL(clock_nanosleep);
    struct timespec tmp;
    if ((flags & TIMER_ABSTIME) && is_wall(c))
        req = unskew(req, &tmp);
    return real_clock_nanosleep(c, flags, req, rem);
}
