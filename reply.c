/*
 * reply.c: formatting and delivering SMTP replies.
 *
 * Promises: replies leave in the order they were made; nothing is written
 * until the buffer fills or the session is about to wait for input
 * (RFC 2920 3.2, protocol.md 2.1), so a pipelined group gets its replies in
 * as few writes as possible; a flush never blocks longer than the timeout,
 * even when the client stops reading. Leaves to the session what to say and
 * when to flush.
 */
#define _GNU_SOURCE	/* ppoll */
#include "reply.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

_Static_assert(offsetof(struct reply, buf) + REPLY_BUFFER == sizeof(struct reply),
    "reply_init clears everything before buf, so buf stays last");

void
reply_init(struct reply *r, int fd, int timeout_ms)
{
	memset(r, 0, offsetof(struct reply, buf));	/* buf: only [0, len) is read */
	r->fd = fd;
	r->timeout_ms = timeout_ms;
	sigprocmask(SIG_SETMASK, NULL, &r->wait_mask);
}

static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * One write that cannot block: send(MSG_DONTWAIT) on a socket; on a pipe or
 * file at most PIPE_BUF bytes, which a pipe reported writable by poll takes
 * without blocking. Flags on the shared file description are never touched:
 * under inetd the same description is our stdin, and at a terminal it is
 * the user's shell's too.
 */
static ssize_t
write_some(struct reply *r, const char *p, size_t n)
{
	if (!r->not_socket) {
		ssize_t w = send(r->fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w >= 0 || errno != ENOTSOCK)
			return w;
		r->not_socket = true;
		errno = EAGAIN;		/* a pipe: wait before its first write */
		return -1;
	}
	return write(r->fd, p, n < PIPE_BUF ? n : PIPE_BUF);
}

/*
 * Wait until the client can take more; false (and failed) at the deadline
 * or on a stop signal, which ppoll lets in here as reader.c does: a client
 * that stops reading must not hold off SIGTERM for the whole timeout.
 */
static bool
wait_writable(struct reply *r, long long deadline)
{
	struct pollfd pfd = { .fd = r->fd, .events = POLLOUT };

	while (!r->failed) {
		long long left = deadline - now_ms();
		struct timespec ts = { .tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000 };
		int n;

		if (left <= 0 || (r->stop != NULL && *r->stop)) {
			r->failed = true;	/* the client stopped reading, or we stop */
			break;
		}
		n = ppoll(&pfd, 1, &ts, &r->wait_mask);
		if (n > 0)
			break;
		if (n == -1 && errno != EINTR)
			r->failed = true;
	}
	return !r->failed;
}

/*
 * A socket is written at once and waited for only when full; a pipe has no
 * per-call non-blocking write, so it is waited for before every write.
 */
int
reply_flush(struct reply *r)
{
	long long deadline = now_ms() + r->timeout_ms;
	size_t off = 0;

	while (off < r->len && !r->failed) {
		ssize_t w;

		if (r->not_socket && !wait_writable(r, deadline))
			break;
		w = write_some(r, r->buf + off, r->len - off);
		if (w > 0)
			off += (size_t)w;
		else if (w == 0 || (errno != EAGAIN && errno != EINTR))
			r->failed = true;
		else if (!r->not_socket)
			wait_writable(r, deadline);
	}
	r->len = 0;
	return r->failed ? -1 : 0;
}

/* Append one formatted line, cut to the RFC's reply line limit. */
static void
append_line(struct reply *r, const char *head, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

static void
append_line(struct reply *r, const char *head, const char *fmt, va_list ap)
{
	char line[SMTP_REPLY_MAX];
	int h = snprintf(line, sizeof(line), "%s", head);
	int t = vsnprintf(line + h, sizeof(line) - (size_t)h - 2, fmt, ap);
	size_t n = (size_t)h + (t < 0 ? 0 : (size_t)t);

	if (n > sizeof(line) - 3)
		n = sizeof(line) - 3;	/* vsnprintf cut it short */
	line[n++] = '\r';
	line[n++] = '\n';
	if (r->len + n > sizeof(r->buf))
		reply_flush(r);
	memcpy(r->buf + r->len, line, n);
	r->len += n;
}

void
reply_send(struct reply *r, int code, const char *ecode, const char *fmt, ...)
{
	char head[32];
	va_list ap;

	if (ecode != NULL)
		snprintf(head, sizeof(head), "%03d %s ", code, ecode);
	else
		snprintf(head, sizeof(head), "%03d ", code);
	va_start(ap, fmt);
	append_line(r, head, fmt, ap);
	va_end(ap);
}

void
reply_send_more(struct reply *r, int code, const char *fmt, ...)
{
	char head[8];
	va_list ap;

	snprintf(head, sizeof(head), "%03d-", code);
	va_start(ap, fmt);
	append_line(r, head, fmt, ap);
	va_end(ap);
}
