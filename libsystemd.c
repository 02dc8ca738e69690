/*
 * libsystemd.c: libsystemd, loaded on first use.
 *
 * Promises: nothing is loaded until a caller needs systemd (a LISTEN_PID
 * for this process); the library is then opened once (dynlib.c) and its
 * symbol checked against the installed header at compile time. Journal entries
 * do not need it: log.c speaks the journal's native protocol itself.
 */
#include "libsystemd.h"

#include <stdlib.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "dynlib.h"

typedef int listen_fds_fn(int);

/* The pointers we call through must match the headers: a mismatch is a build error. */
_Static_assert(_Generic(&sd_listen_fds, listen_fds_fn *: 1, default: 0),
    "sd_listen_fds changed type");

static listen_fds_fn *listen_fds;

static int
load(void)
{
	static int state;	/* dynlib_load: 0 not tried, 1 loaded, -1 failed */
	static const struct dynlib_symbol syms[] = {
		{ "sd_listen_fds", &listen_fds, sizeof(listen_fds) },
	};

	return dynlib_load(&state, "libsystemd.so.0", syms, 1);
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
