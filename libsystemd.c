/*
 * libsystemd.c: libsystemd, loaded on first use.
 *
 * Promises: nothing is loaded until a caller needs systemd (a LISTEN_PID
 * for this process); the library is then opened once and its symbol
 * checked against the installed header at compile time. Journal entries
 * do not need it: log.c speaks the journal's native protocol itself.
 */
#include "libsystemd.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

typedef int listen_fds_fn(int);

/* The pointers we call through must match the headers: a mismatch is a build error. */
_Static_assert(_Generic(&sd_listen_fds, listen_fds_fn *: 1, default: 0),
    "sd_listen_fds changed type");

static listen_fds_fn *listen_fds;

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
	if (symbol(lib, "sd_listen_fds", sizeof(listen_fds), &listen_fds) == NULL) {
		listen_fds = NULL;
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
