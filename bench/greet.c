/*
 * bench/greet.c: spawn-to-greeting time and peak memory of smtpd over a pipe.
 *
 *     bench/greet N ./smtpd -m DIR
 *
 * Runs the command N times (1..10000). Each run: posix_spawn with a pipe on
 * stdin and stdout, time until the greeting's CRLF arrives, then one small
 * transaction and a NOOP, then the child's peak RSS from VmHWM in
 * /proc/PID/status (not wait4's ru_maxrss: exec charges the spawning
 * process's memory to it), then QUIT and EOF. Prints the median, 90th
 * percentile and worst latency, and the median and worst peak RSS.
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "measure.h"

#define RUNS_MAX 10000

extern char **environ;

static const char transaction[] =
    "EHLO bench.example\r\nMAIL FROM:<a@bench.example>\r\n"
    "RCPT TO:<b@bench.example>\r\nDATA\r\nSubject: bench\r\n\r\nhello\r\n.\r\n"
    "NOOP\r\n";

/* Read until `end` has arrived; -1 on EOF first. */
static int
read_until(int fd, const char *end)
{
	static char buf[4096];
	size_t got = 1;		/* buf[0] is a LF: `end` may match the first line */
	ssize_t n;

	buf[0] = '\n';
	while ((n = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0) {
		got += (size_t)n;
		buf[got] = '\0';
		if (strstr(buf, end) != NULL)
			return 0;
		if (got == sizeof(buf) - 1)
			return -1;
	}
	return -1;
}

/* One run: latency in ns and peak RSS in KiB, or -1. */
static int
run_once(char **argv, long long *ns, long long *rss_kib)
{
	posix_spawn_file_actions_t fa;
	int to_child[2], from_child[2], status;
	char buf[512];
	size_t got = 0;
	long long t0;
	pid_t pid;
	ssize_t n;

	if (pipe(to_child) == -1 || pipe(from_child) == -1)
		return -1;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to_child[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from_child[1], 1);
	posix_spawn_file_actions_addclose(&fa, to_child[1]);
	posix_spawn_file_actions_addclose(&fa, from_child[0]);
	alarm(30);	/* a run that hangs is a failure, not a stuck benchmark */
	t0 = now_ns();
	if (posix_spawn(&pid, argv[0], &fa, NULL, argv, environ) != 0)
		return -1;
	posix_spawn_file_actions_destroy(&fa);
	close(to_child[0]);
	close(from_child[1]);
	*ns = -1;
	while (got < sizeof(buf) && (n = read(from_child[0], buf + got, sizeof(buf) - got)) > 0) {
		got += (size_t)n;
		if (memchr(buf, '\n', got) != NULL) {
			*ns = now_ns() - t0;
			break;
		}
	}
	if (*ns < 0 || strncmp(buf, "220 ", 4) != 0) {
		fprintf(stderr, "greet: no 220 greeting\n");
		return -1;
	}
	if (write(to_child[1], transaction, sizeof(transaction) - 1) !=
	    (ssize_t)sizeof(transaction) - 1 || read_until(from_child[0], "\n250 2.0.0 Ok\r\n") == -1) {
		fprintf(stderr, "greet: transaction failed\n");
		return -1;
	}
	*rss_kib = peak_rss(pid);
	if (write(to_child[1], "QUIT\r\n", 6) != 6)
		return -1;
	close(to_child[1]);
	while (read(from_child[0], buf, sizeof(buf)) > 0)
		;
	close(from_child[0]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return *rss_kib > 0 ? 0 : -1;
}

int
main(int argc, char **argv)
{
	static long long ns[RUNS_MAX], rss[RUNS_MAX];
	long runs;

	if (argc < 3 || (runs = strtol(argv[1], NULL, 10)) < 1 || runs > RUNS_MAX) {
		fprintf(stderr, "usage: greet N COMMAND [ARG...]\n");
		return 2;
	}
	for (long i = 0; i < runs; i++) {
		if (run_once(argv + 2, &ns[i], &rss[i]) == -1) {
			fprintf(stderr, "greet: run %ld failed: %s\n", i, strerror(errno));
			return 1;
		}
	}
	qsort(ns, (size_t)runs, sizeof(ns[0]), cmp_ll);
	qsort(rss, (size_t)runs, sizeof(rss[0]), cmp_ll);
	printf("runs=%ld greeting_us median=%lld p90=%lld max=%lld peak_rss_kib median=%lld max=%lld\n",
	    runs, ns[runs / 2] / 1000, ns[runs * 9 / 10] / 1000, ns[runs - 1] / 1000,
	    rss[runs / 2], rss[runs - 1]);
	return 0;
}
