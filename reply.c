/*
 * reply.c: formatting and delivering SMTP replies.
 *
 * Promises: replies leave in the order they were made; nothing is written
 * until the buffer fills or the session is about to wait for input
 * (RFC 2920 3.2), so a pipelined group gets its replies in as few writes
 * as possible; a flush never blocks longer than the timeout nor past the
 * session's end, even when the client stops reading; every write is tried
 * before any wait, so a stop never keeps the last reply from a client that
 * can take it. Leaves to the session what to say and when to flush.
 */
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

#include "clock.h"

_Static_assert(offsetof(struct reply, buf) + REPLY_BUFFER == sizeof(struct reply),
    "reply_init clears everything before buf, so buf stays last");

void
reply_init(struct reply *r, const struct reply_options *opt)
{
	memset(r, 0, offsetof(struct reply, buf));	/* buf: only [0, len) is read */
	r->opt = *opt;
	if (opt->session_timeout_ms > 0)
		r->session_deadline_ms = now_ms() + opt->session_timeout_ms;
}

/*
 * One write that cannot block: send(MSG_DONTWAIT) on a socket; on a pipe or
 * file, when poll says it is writable now, at most PIPE_BUF bytes, which
 * such a pipe takes without blocking. Flags on the shared file description
 * are never touched: under inetd the same description is our stdin, and at
 * a terminal it is the user's shell's too. -1 with EAGAIN when full.
 */
static ssize_t
write_some(struct reply *r, const char *p, size_t n)
{
	struct pollfd pfd = { .fd = r->opt.fd, .events = POLLOUT };

	if (r->tls != NULL)
		return tls_write(r->tls, p, n);
	if (!r->not_socket) {
		ssize_t w = send(r->opt.fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (w >= 0 || errno != ENOTSOCK)
			return w;
		r->not_socket = true;
	}
	if (stop_poll(NULL, &pfd, 0) != 1) {
		errno = EAGAIN;		/* full (or cannot tell): wait_writable decides */
		return -1;
	}
	return write(r->opt.fd, p, n < PIPE_BUF ? n : PIPE_BUF);
}

/* The end of this flush's waits: the flush timeout, the session's end, a stop. */
static long long
cap_deadline(struct reply *r, long long deadline, long long now)
{
	if (r->session_deadline_ms != 0 && r->session_deadline_ms < deadline)
		deadline = r->session_deadline_ms;
	if (stop_requested(r->opt.stop)) {
		if (r->stop_deadline_ms == 0)
			r->stop_deadline_ms = now + REPLY_STOP_GRACE_MS;
		if (r->stop_deadline_ms < deadline)
			deadline = r->stop_deadline_ms;
	}
	return deadline;
}

/*
 * Wait until the client can take more; false at the deadline. Stop signals
 * are let in here, as in reader.c: a client that stopped reading must not
 * hold off SIGTERM for the whole timeout, so a stop shortens the wait.
 */
static bool
wait_writable(struct reply *r, long long *deadline)
{
	/* TLS may need to read to write: it says what to wait for. */
	struct pollfd pfd = r->tls != NULL ? tls_pollfd(r->tls) :
	    (struct pollfd){ .fd = r->opt.fd, .events = POLLOUT };

	for (;;) {
		long long now = now_ms(), left;
		int n;

		*deadline = cap_deadline(r, *deadline, now);
		if ((left = *deadline - now) <= 0)
			return false;
		n = stop_poll(r->opt.stop, &pfd, left);
		if (n > 0)
			return true;
		if (n == -1 && errno != EINTR)
			return false;
	}
}

int
reply_flush(struct reply *r)
{
	long long now = now_ms(), deadline = cap_deadline(r, now + r->opt.timeout_ms, now);
	size_t off = 0;

	while (off < r->len && !r->failed) {
		ssize_t w = write_some(r, r->buf + off, r->len - off);

		if (w > 0)
			off += (size_t)w;
		else if (w == 0 || (errno != EAGAIN && errno != EINTR))
			r->failed = true;
		else if (errno == EAGAIN && !wait_writable(r, &deadline))
			r->failed = true;	/* the client stopped reading, or we stop */
	}
	r->len = 0;
	return r->failed ? -1 : 0;
}

void
reply_start_tls(struct reply *r, struct tls *t)
{
	r->tls = t;
}

int
reply_shutdown(struct reply *r)
{
	return shutdown(r->opt.fd, SHUT_WR);
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
