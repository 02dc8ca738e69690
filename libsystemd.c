/*
 * libsystemd.c: libsystemd, loaded on first use.
 *
 * Promises: nothing is loaded until a caller needs systemd (a LISTEN_PID
 * for this process, or a journal entry to send); the library is then
 * opened once and its symbols checked against the installed headers at
 * compile time. Decides nothing itself: smtpd.c and log.c choose when.
 */
#include "libsystemd.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

typedef int listen_fds_fn(int);
typedef int journal_sendv_fn(const struct iovec *, int);

/* The pointers we call through must match the headers: a mismatch is a build error. */
_Static_assert(_Generic(&sd_listen_fds, listen_fds_fn *: 1, default: 0),
    "sd_listen_fds changed type");
_Static_assert(_Generic(&sd_journal_sendv, journal_sendv_fn *: 1, default: 0),
    "sd_journal_sendv changed type");

static listen_fds_fn *listen_fds;
static journal_sendv_fn *journal_sendv;

/* ISO C has no cast from void * to a function pointer; POSIX guarantees the sizes. */
static void *
symbol(void *lib, const char *name, size_t size, void *fn)
{
	void *sym = dlsym(lib, name);

	if (sym != NULL && size == sizeof(sym))
		memcpy(fn, &sym, size);
	return sym;
}

static int
load(void)
{
	static int state;	/* 0 not tried, 1 loaded, -1 failed */
	void *lib;

	if (state != 0)
		return state;
	state = -1;
	if ((lib = dlopen("libsystemd.so.0", RTLD_NOW | RTLD_LOCAL)) == NULL)
		return state;
	if (symbol(lib, "sd_listen_fds", sizeof(listen_fds), &listen_fds) == NULL ||
	    symbol(lib, "sd_journal_sendv", sizeof(journal_sendv), &journal_sendv) == NULL) {
		listen_fds = NULL;
		journal_sendv = NULL;
		return state;
	}
	state = 1;
	return state;
}

int
libsystemd_listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID");
	char *end;

	/* sd_listen_fds(3): the fds are ours only when LISTEN_PID is our pid. */
	if (pid == NULL || strtol(pid, &end, 10) != (long)getpid() || *end != '\0')
		return 0;
	if (load() == -1)
		return -1;
	return listen_fds(1);
}

int
libsystemd_journal_sendv(const struct iovec *iov, int n)
{
	if (load() == -1)
		return -1;
	return journal_sendv(iov, n) < 0 ? -1 : 0;
}
