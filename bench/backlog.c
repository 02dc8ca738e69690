/*
 * backlog.c: LD_PRELOAD shim that raises a server's listen(2) backlog to
 * BACKLOG (default SOMAXCONN), for comparing OpenSMTPD with its hard-coded
 * backlog of 5 and with a fair one. Only for benchmarks.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/socket.h>

int
listen(int fd, int backlog)
{
	static int (*real_listen)(int, int);
	const char *env = getenv("BACKLOG");
	int want = env != NULL ? atoi(env) : SOMAXCONN;

	if (real_listen == NULL)
		*(void **)&real_listen = dlsym(RTLD_NEXT, "listen");	/* POSIX dlsym idiom */
	if (real_listen == NULL)
		return -1;
	return real_listen(fd, backlog < want ? want : backlog);
}
