/*
 * activation.c: the socket-activation protocol of sd_listen_fds(3):
 * LISTEN_PID names the process the sockets are for, LISTEN_FDS how many
 * there are, starting at fd 3.
 */
#include "activation.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>

/* A whole decimal number from 1 to max, or -1. */
static long
count(const char *s, long max)
{
	char *end;
	long v;

	if (s == NULL || *s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	return errno != 0 || *end != '\0' || v < 1 || v > max ? -1 : v;
}

static int
passed_fds(const char *pid)
{
	const char *fds = getenv("LISTEN_FDS");
	long n;

	if (count(pid, LONG_MAX) != (long)getpid() || fds == NULL)
		return 0;
	if ((n = count(fds, INT_MAX - LISTEN_FDS_START)) == -1)
		return -1;
	for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + (int)n; fd++) {
		int flags = fcntl(fd, F_GETFD);

		if (flags == -1 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == -1)
			return -1;
	}
	return (int)n;
}

int
activation_listen_fds(void)
{
	const char *pid = getenv("LISTEN_PID");
	int n;

	/* Without LISTEN_PID nothing was passed: LISTEN_FDS alone names no one. */
	if (pid == NULL)
		return 0;
	n = passed_fds(pid);
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	return n;
}
