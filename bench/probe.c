/*
 * probe.c: per-connection cost of a per-connection server, without a network.
 *
 *   probe [-a] COUNT SIZE PROGRAM [ARGS...]
 *
 * COUNT times: a socketpair, fork, exec PROGRAM with the socket as stdin
 * and stdout (as inetd and tcpserver hand it over), time from just before
 * fork() to the first line of the greeting, then one whole session with a
 * SIZE-byte message (EHLO, MAIL, RCPT, DATA, the message, QUIT), and the
 * server's peak RSS (VmHWM) once the message is accepted. With -a the
 * socket is fd 3 and LISTEN_FDS=1, LISTEN_PID are set, as systemd's
 * Accept=yes and systemd-socket-activate pass it. One line per
 * session on stdout:
 * "greeting_us rss_kib ok", ok being 1 when the DATA got 250 and QUIT 221.
 * Only for benchmarks.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "measure.h"

static const char head[] =
    "EHLO probe.example\r\n"
    "MAIL FROM:<probe@probe.example>\r\n"
    "RCPT TO:<bench@bench.example>\r\n"
    "DATA\r\n";
static const char msg_head[] =
    "From: probe@probe.example\r\nTo: bench@bench.example\r\nSubject: probe\r\n\r\n";
static const char tail[] = ".\r\n";

static long long
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The whole client side of a session: head, a body of lines, tail. */
static char *
make_script(size_t size, size_t *len)
{
	size_t cap = sizeof(head) + sizeof(msg_head) + size + size / 70 * 2 + sizeof(tail) + 80;
	char *s = malloc(cap), *p;
	size_t body = 0;

	if (s == NULL)
		return NULL;
	p = s;
	memcpy(p, head, sizeof(head) - 1);
	p += sizeof(head) - 1;
	memcpy(p, msg_head, sizeof(msg_head) - 1);
	p += sizeof(msg_head) - 1;
	while (body < size) {
		size_t n = size - body < 76 ? size - body : 76;

		memset(p, 'x', n);
		p += n;
		*p++ = '\r';
		*p++ = '\n';
		body += n + 2;
	}
	memcpy(p, tail, sizeof(tail) - 1);
	p += sizeof(tail) - 1;
	*len = (size_t)(p - s);
	return s;
}

/*
 * One session; prints one line, returns 0 when it ran to the end. QUIT is
 * held back until the message's reply is in, so the peak is read while the
 * server still runs: wait4's ru_maxrss would count the pages the child
 * shared with this process before exec.
 */
static int
probe_once(const char *script, size_t len, char **argv, int activated)
{
	static const char quit[] = "QUIT\r\n";
	static char replies[65536];
	size_t got = 0, sent = 0, scanned = 0, qsent = 0;
	long long t0, greeting = -1;
	long long rss = -1;
	int sv[2], status, finals = 0, ok = 0;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == -1)
		return -1;
	t0 = now_us();
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		char lpid[32];

		if (activated) {
			snprintf(lpid, sizeof(lpid), "%ld", (long)getpid());
			if (dup2(sv[1], 3) == -1 || setenv("LISTEN_FDS", "1", 1) == -1 ||
			    setenv("LISTEN_PID", lpid, 1) == -1)
				_exit(127);
		} else if (dup2(sv[1], 0) == -1 || dup2(sv[1], 1) == -1) {
			_exit(127);
		}
		execv(argv[0], argv);
		_exit(127);
	}
	close(sv[1]);
	for (;;) {
		struct pollfd pfd = { .fd = sv[0], .events = POLLIN };
		const char *p = script + sent;
		size_t left = len - sent;
		ssize_t n;

		/* The session after the greeting; QUIT after the 6th final reply. */
		if (finals == 6 && rss < 0)
			rss = peak_rss(pid);
		if (sent == len && rss >= 0 && qsent < sizeof(quit) - 1) {
			p = quit + qsent;
			left = sizeof(quit) - 1 - qsent;
		}
		if (greeting >= 0 && left > 0 && (sent < len || rss >= 0))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 60000) <= 0)
			break;
		if (pfd.revents & POLLOUT) {
			n = send(sv[0], p, left, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n > 0 && p == quit + qsent)
				qsent += (size_t)n;
			else if (n > 0)
				sent += (size_t)n;
			else if (n == -1 && errno != EAGAIN)
				break;
		}
		if (pfd.revents & (POLLIN | POLLHUP)) {
			n = read(sv[0], replies + got, sizeof(replies) - 1 - got);
			if (n <= 0)
				break;
			got += (size_t)n;
			replies[got] = '\0';
			if (greeting < 0 && memchr(replies, '\n', got) != NULL)
				greeting = now_us() - t0;
			/* Count final reply lines ("250 ..." not "250-..."). */
			for (char *lf; (lf = memchr(replies + scanned, '\n', got - scanned)) != NULL;
			    scanned = (size_t)(lf - replies) + 1) {
				const char *line = replies + scanned;

				if (lf - line >= 4 && line[3] == ' ') {
					finals++;
					if (finals == 6)
						ok = strncmp(line, "250 ", 4) == 0;
					if (finals == 7)
						ok = ok && strncmp(line, "221 ", 4) == 0;
				}
			}
			if (got == sizeof(replies) - 1)
				break;
		}
	}
	close(sv[0]);
	if (waitpid(pid, &status, 0) == -1)
		return -1;
	ok = ok && finals == 7 && sent == len && WIFEXITED(status) && WEXITSTATUS(status) == 0;
	printf("%lld %lld %d\n", greeting, rss, ok);
	return 0;
}

int
main(int argc, char **argv)
{
	long count;
	size_t len;
	char *script;
	int activated = argc > 1 && strcmp(argv[1], "-a") == 0;

	argc -= activated;
	argv += activated;
	if (argc < 4) {
		fprintf(stderr, "usage: probe [-a] COUNT SIZE PROGRAM [ARGS...]\n");
		return 64;
	}
	count = atol(argv[1]);
	if ((script = make_script((size_t)atol(argv[2]), &len)) == NULL)
		return 1;
	for (long i = 0; i < count; i++)
		if (probe_once(script, len, argv + 3, activated) == -1) {
			perror("probe");
			return 1;
		}
	free(script);
	return 0;
}
