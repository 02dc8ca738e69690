/*
 * fault.c: an LD_PRELOAD shim that makes chosen system calls on the
 * delivery path fail, for tests/fault/run-faults.
 *
 * Only calls on paths under $FAULT_PATH count: opens of files and
 * directories there, and write/fsync/close on the descriptors those opens
 * returned, link/rename/mkdir of names there (the *at forms too, a name
 * relative to a directory descriptor placed through /proc/self/fd); and,
 * as "reply", write(2) to
 * standard output (the replies on a pipe). Logs and the config file are
 * never touched. $FAULTS is a comma-separated list of rules
 * "CALL:NTH:WHAT":
 *   CALL  open diropen write fsync dirfsync close dirclose link rename mkdir
 *         reply
 *   NTH   fail the NTH such call (from 1), or "*" for every one
 *   WHAT  an errno name (EIO ENOSPC EDQUOT EINTR EPERM EEXIST EMFILE), or
 *         "short": a real write of at most half the bytes (at least one)
 * Each time a rule fires, one line "CALL NTH WHAT" is appended to
 * $FAULT_LOG, so the driver knows whether its fault was reached.
 * A close() that fails still closes the descriptor, as Linux does.
 * "dirclose" counts only directories that were fsync'ed: closing one that
 * was only walked through (openat of what is inside) promises nothing.
 *
 * The real calls are made with syscall(2), not looked up with dlsym: under
 * ASan the runtime may call open() while it starts, before dlsym can be
 * used, and the settings are read again until they are there.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

enum call { C_OPEN, C_DIROPEN, C_WRITE, C_FSYNC, C_DIRFSYNC, C_CLOSE, C_DIRCLOSE,
	C_LINK, C_RENAME, C_MKDIR, C_REPLY, C_NCALLS };

static const char *const call_names[C_NCALLS] = {
	"open", "diropen", "write", "fsync", "dirfsync", "close", "dirclose",
	"link", "rename", "mkdir", "reply",
};

#define MAX_RULES	8
#define MAX_FDS		1024

struct rule {
	enum call call;
	unsigned long nth;	/* 0: every call */
	int	err;		/* 0: short write */
};

static struct rule rules[MAX_RULES];
static size_t nrules;
static unsigned long counts[C_NCALLS];
static char tracked[MAX_FDS];	/* 0 untracked, 1 file, 2 directory, 3 synced directory */
static const char *prefix;
static size_t prefix_len;
static bool ready;

static int
real_open(const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
}

static int
real_openat(int dirfd, const char *path, int flags, mode_t mode)
{
	return (int)syscall(SYS_openat, dirfd, path, flags, mode);
}

static ssize_t
real_write(int fd, const void *p, size_t n)
{
	return (ssize_t)syscall(SYS_write, fd, p, n);
}

static int
real_fsync(int fd)
{
	return (int)syscall(SYS_fsync, fd);
}

static int
real_fdatasync(int fd)
{
	return (int)syscall(SYS_fdatasync, fd);
}

static int
real_close(int fd)
{
	return (int)syscall(SYS_close, fd);
}

static int
real_link(const char *from, const char *to)
{
	return (int)syscall(SYS_linkat, AT_FDCWD, from, AT_FDCWD, to, 0);
}

static int
real_rename(const char *from, const char *to)
{
	return (int)syscall(SYS_renameat, AT_FDCWD, from, AT_FDCWD, to);
}

static int
real_mkdirat(int dirfd, const char *path, mode_t mode)
{
	return (int)syscall(SYS_mkdirat, dirfd, path, mode);
}

static int
real_linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
	return (int)syscall(SYS_linkat, fromfd, from, tofd, to, flags);
}

static int
real_renameat(int fromfd, const char *from, int tofd, const char *to)
{
	return (int)syscall(SYS_renameat, fromfd, from, tofd, to);
}

static int
errno_named(const char *s)
{
	static const struct { const char *name; int err; } names[] = {
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EDQUOT", EDQUOT },
		{ "EINTR", EINTR }, { "EPERM", EPERM }, { "EEXIST", EEXIST },
		{ "EMFILE", EMFILE }, { "EACCES", EACCES },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i].name) == 0)
			return names[i].err;
	return -1;
}

static void
parse_rules(const char *spec)
{
	char buf[512], *save = NULL;

	if (snprintf(buf, sizeof(buf), "%s", spec) >= (int)sizeof(buf))
		abort();
	for (char *r = strtok_r(buf, ",", &save); r != NULL; r = strtok_r(NULL, ",", &save)) {
		char *nth = strchr(r, ':'), *what;
		size_t c;

		if (nth == NULL || (what = strchr(nth + 1, ':')) == NULL || nrules == MAX_RULES)
			abort();
		*nth++ = '\0';
		*what++ = '\0';
		for (c = 0; c < C_NCALLS && strcmp(r, call_names[c]) != 0; c++)
			;
		if (c == C_NCALLS)
			abort();
		rules[nrules].call = (enum call)c;
		rules[nrules].nth = strcmp(nth, "*") == 0 ? 0 : strtoul(nth, NULL, 10);
		if (strcmp(what, "short") == 0)
			rules[nrules].err = 0;
		else if ((rules[nrules].err = errno_named(what)) == -1)
			abort();
		nrules++;
	}
}

static void
init(void)
{
	const char *spec;

	if (ready || (prefix = getenv("FAULT_PATH")) == NULL)
		return;
	prefix_len = strlen(prefix);
	if ((spec = getenv("FAULTS")) != NULL && *spec != '\0')
		parse_rules(spec);
	ready = true;
}

static bool
ours(const char *path)
{
	return ready && prefix_len > 0 && path != NULL && strncmp(path, prefix, prefix_len) == 0;
}

/* Is path, relative to dirfd, under $FAULT_PATH? */
static bool
ours_at(int dirfd, const char *path)
{
	char link[64], full[4096];
	ssize_t n;

	if (dirfd == AT_FDCWD || path == NULL || path[0] == '/')
		return ours(path);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
	if ((n = readlink(link, full, sizeof(full) - 1)) <= 0)
		return false;
	full[n] = '\0';
	if (snprintf(full + n, sizeof(full) - (size_t)n, "/%s", path) >= (int)(sizeof(full) - (size_t)n))
		return false;
	return ours(full);
}

static void
note(enum call c, unsigned long n, const struct rule *r)
{
	const char *log = getenv("FAULT_LOG");
	char line[128];
	int len, fd;

	if (log == NULL)
		return;
	len = snprintf(line, sizeof(line), "%s %lu %d\n", call_names[c], n, r->err);
	fd = real_open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
	if (fd == -1)
		return;
	if (len > 0 && real_write(fd, line, (size_t)len) < 0)
		len = 0;
	real_close(fd);
}

/* Count one call of kind c; the rule that fires for it, or NULL. */
static const struct rule *
count(enum call c)
{
	unsigned long n = ++counts[c];

	for (size_t i = 0; i < nrules; i++) {
		if (rules[i].call == c && (rules[i].nth == 0 || rules[i].nth == n)) {
			note(c, n, &rules[i]);
			return &rules[i];
		}
	}
	return NULL;
}

static int
fail(const struct rule *r)
{
	errno = r->err;
	return -1;
}

static int
track(int fd, int flags)
{
	if (fd >= 0 && fd < MAX_FDS)
		tracked[fd] = (flags & O_DIRECTORY) ? 2 : 1;
	return fd;
}

static int
do_open(int dirfd, const char *path, int flags, mode_t mode)
{
	const struct rule *r;

	bool mine;

	init();
	mine = ours_at(dirfd, path);
	if (mine && (r = count((flags & O_DIRECTORY) ? C_DIROPEN : C_OPEN)) != NULL &&
	    r->err != 0)
		return fail(r);
	if (dirfd == AT_FDCWD)
		return mine ? track(real_open(path, flags, mode), flags) :
		    real_open(path, flags, mode);
	return mine ? track(real_openat(dirfd, path, flags, mode), flags) :
	    real_openat(dirfd, path, flags, mode);
}

static mode_t
mode_arg(int flags, va_list ap)
{
	return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int
open(const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

int
openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	mode_t mode;

	va_start(ap, flags);
	mode = mode_arg(flags, ap);
	va_end(ap);
	return do_open(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

ssize_t
write(int fd, const void *p, size_t n)
{
	const struct rule *r;

	init();
	if (ready && ((fd >= 0 && fd < MAX_FDS && tracked[fd] == 1 && (r = count(C_WRITE)) != NULL) ||
	    (fd == STDOUT_FILENO && (r = count(C_REPLY)) != NULL))) {
		if (r->err != 0)
			return fail(r);
		if (n > 1)
			n /= 2;	/* a real short write: the caller must write the rest */
	}
	return real_write(fd, p, n);
}

static int
do_fsync(int fd, int (*real)(int))
{
	const struct rule *r;

	init();
	if (fd >= 0 && fd < MAX_FDS && tracked[fd] != 0 &&
	    (r = count(tracked[fd] >= 2 ? C_DIRFSYNC : C_FSYNC)) != NULL && r->err != 0)
		return fail(r);
	if (fd >= 0 && fd < MAX_FDS && tracked[fd] == 2)
		tracked[fd] = 3;
	return real(fd);
}

int
fsync(int fd)
{
	return do_fsync(fd, real_fsync);
}

int
fdatasync(int fd)
{
	return do_fsync(fd, real_fdatasync);
}

int
close(int fd)
{
	const struct rule *r = NULL;
	int kind = 0, rc;

	init();
	if (fd >= 0 && fd < MAX_FDS && (kind = tracked[fd]) != 0) {
		tracked[fd] = 0;
		if (kind != 2)
			r = count(kind == 3 ? C_DIRCLOSE : C_CLOSE);
	}
	rc = real_close(fd);
	if (r != NULL && r->err != 0)
		return fail(r);
	return rc;
}

/* The rule that makes this call on path (relative to dirfd) fail, or NULL. */
static const struct rule *
path_fault(int dirfd, const char *path, enum call c)
{
	const struct rule *r;

	init();
	if (!ours_at(dirfd, path) || (r = count(c)) == NULL || r->err == 0)
		return NULL;
	return r;
}

int
link(const char *from, const char *to)
{
	const struct rule *r = path_fault(AT_FDCWD, to, C_LINK);

	return r != NULL ? fail(r) : real_link(from, to);
}

int
linkat(int fromfd, const char *from, int tofd, const char *to, int flags)
{
	const struct rule *r = path_fault(tofd, to, C_LINK);

	return r != NULL ? fail(r) : real_linkat(fromfd, from, tofd, to, flags);
}

int
rename(const char *from, const char *to)
{
	const struct rule *r = path_fault(AT_FDCWD, to, C_RENAME);

	return r != NULL ? fail(r) : real_rename(from, to);
}

int
renameat(int fromfd, const char *from, int tofd, const char *to)
{
	const struct rule *r = path_fault(tofd, to, C_RENAME);

	return r != NULL ? fail(r) : real_renameat(fromfd, from, tofd, to);
}

int
mkdir(const char *path, mode_t mode)
{
	const struct rule *r = path_fault(AT_FDCWD, path, C_MKDIR);

	return r != NULL ? fail(r) : real_mkdirat(AT_FDCWD, path, mode);
}

int
mkdirat(int dirfd, const char *path, mode_t mode)
{
	const struct rule *r = path_fault(dirfd, path, C_MKDIR);

	return r != NULL ? fail(r) : real_mkdirat(dirfd, path, mode);
}
