/*
 * check_activation.c: LISTEN_PID and LISTEN_FDS read as sd_listen_fds(3)
 * says. Each case runs in a child of its own: fds 3 and 4 are Check's
 * here, and the child makes them the passed sockets.
 */
#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "activation.h"
#include "harness.h"

struct outcome {
	int	n;		/* activation_listen_fds() */
	bool	env_gone;	/* LISTEN_PID, LISTEN_FDS, LISTEN_FDNAMES all removed */
	bool	cloexec[2];	/* on fd 3, fd 4 afterwards */
};

/*
 * In a child: fds 3 .. 3+open-1 open and inheritable, LISTEN_PID set to pid
 * ("$" for the child's own, NULL unset), LISTEN_FDS to fds (NULL unset).
 */
static struct outcome
activate(const char *pid, const char *fds, int open)
{
	struct outcome o = { 0 };
	pid_t child;
	int status;

	if ((child = fork()) == 0) {
		char mine[32];
		int code;

		for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + 2; fd++)
			close(fd);
		for (int fd = LISTEN_FDS_START; fd < LISTEN_FDS_START + open; fd++)
			if (dup2(STDERR_FILENO, fd) != fd || fcntl(fd, F_SETFD, 0) == -1)
				_exit(255);
		snprintf(mine, sizeof(mine), "%ld", (long)getpid());
		pid != NULL ? setenv("LISTEN_PID", strcmp(pid, "$") == 0 ? mine : pid, 1) :
		    unsetenv("LISTEN_PID");
		fds != NULL ? setenv("LISTEN_FDS", fds, 1) : unsetenv("LISTEN_FDS");
		setenv("LISTEN_FDNAMES", "connection", 1);
		code = activation_listen_fds() + 1;
		if (getenv("LISTEN_PID") == NULL && getenv("LISTEN_FDS") == NULL &&
		    getenv("LISTEN_FDNAMES") == NULL)
			code |= 8;
		for (int i = 0; i < 2; i++)
			if (fcntl(LISTEN_FDS_START + i, F_GETFD) > 0)	/* open, FD_CLOEXEC */
				code |= 16 << i;
		_exit(code);
	}
	ck_assert_int_ne(child, -1);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 255);
	o.n = (WEXITSTATUS(status) & 7) - 1;
	o.env_gone = WEXITSTATUS(status) & 8;
	o.cloexec[0] = WEXITSTATUS(status) & 16;
	o.cloexec[1] = WEXITSTATUS(status) & 32;
	return o;
}

START_TEST(sockets_for_this_process)
{
	struct outcome o = activate("$", "1", 2);

	ck_assert_int_eq(o.n, 1);
	ck_assert(o.env_gone);
	ck_assert(o.cloexec[0]);
	ck_assert(!o.cloexec[1]);	/* not passed: left alone */
	o = activate("$", "2", 2);
	ck_assert_int_eq(o.n, 2);
	ck_assert(o.env_gone && o.cloexec[0] && o.cloexec[1]);
}
END_TEST

START_TEST(not_for_this_process)
{
	const char *pids[] = { NULL, "1", "", "x", "-1", "0" };

	for (size_t i = 0; i < sizeof(pids) / sizeof(pids[0]); i++) {
		struct outcome o = activate(pids[i], "1", 1);

		/* Without LISTEN_PID there is nothing to remove: LISTEN_FDS alone means nothing. */
		ck_assert_msg(o.n == 0 && (o.env_gone || pids[i] == NULL) && !o.cloexec[0],
		    "LISTEN_PID %s", pids[i] != NULL ? pids[i] : "unset");
	}
	ck_assert_int_eq(activate("$", NULL, 1).n, 0);
}
END_TEST

START_TEST(bad_counts_and_closed_fds)
{
	const char *counts[] = { "0", "-1", "x", "1x", " 1", "", "99999999999999999999" };

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct outcome o = activate("$", counts[i], 1);

		ck_assert_msg(o.n == -1 && o.env_gone, "LISTEN_FDS %s", counts[i]);
	}
	ck_assert_int_eq(activate("$", "1", 0).n, -1);	/* fd 3 not open */
	ck_assert_int_eq(activate("$", "2", 1).n, -1);	/* fd 4 not open */
}
END_TEST

int
main(void)
{
	return harness_run_tests("activation", (const TTest *const[]){ sockets_for_this_process,
	    not_for_this_process, bad_counts_and_closed_fds, NULL });
}
