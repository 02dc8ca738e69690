/*
 * reader.c: bounded reading of lines from the client.
 *
 * Promises: memory is one fixed buffer whatever the client sends; a line is
 * reported with how it ended (LF or CRLF), so the session can insist on CRLF
 * where RFC 5321 does; each line must be complete within the line timeout
 * (a deadline, not a per-read limit, so one byte per second does not keep
 * a connection alive), and the whole session within its own limit.
 * Leaves to the session what a line means and when to flush replies.
 */
#include "reader.h"

#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

_Static_assert(offsetof(struct reader, buf) + READER_BUFFER == sizeof(struct reader),
    "reader_init clears everything before buf, so buf stays last");

void
reader_init(struct reader *r, const struct reader_options *opt)
{
	memset(r, 0, offsetof(struct reader, buf));	/* buf: only [start, end) is read */
	r->opt = *opt;
	r->session_deadline_ms = now_ms() + opt->session_timeout_ms;
	r->at_line_start = true;
}

static const char *
find_lf(const struct reader *r, size_t max)
{
	size_t avail = r->end - r->start;

	return memchr(r->buf + r->start, '\n', avail < max ? avail : max);
}

static long long
deadline_left(const struct reader *r)
{
	long long deadline = r->line_deadline_ms < r->session_deadline_ms ?
	    r->line_deadline_ms : r->session_deadline_ms;

	return deadline - now_ms();
}

/*
 * On a socket, take what has already arrived without waiting (MSG_DONTWAIT
 * is per call: the file's flags, shared with inetd's stdin, stay as they
 * are), so bulk DATA costs one recv(2) per buffer instead of poll, ppoll
 * and read. 1 when bytes came, 0 at EOF, -1 when we would block or cannot
 * tell (a pipe), -2 on an error.
 */
static int
read_quick(struct reader *r, size_t room, bool *would_block)
{
	ssize_t n;

	*would_block = false;
	if (r->not_socket)
		return -1;
	n = recv(r->opt.fd, r->buf + r->end, room, MSG_DONTWAIT);
	if (n > 0) {
		r->end += (size_t)n;
		return 1;
	}
	if (n == 0)
		return 0;
	if (errno == ENOTSOCK)
		r->not_socket = true;
	else if (errno == EAGAIN || errno == EWOULDBLOCK)
		*would_block = true;
	else if (errno != EINTR)
		return -2;
	return -1;
}

/* Wait for pfd (the client sends more), the deadline or a stop. */
static enum read_result
wait_readable(struct reader *r, struct pollfd pfd)
{
	long long left;

	for (;;) {
		if (stop_requested(r->opt.stop))
			return READ_STOPPED;
		if ((left = deadline_left(r)) <= 0)
			return READ_TIMEOUT;
		/* A stop signal blocked elsewhere is taken only here. */
		switch (stop_poll(r->opt.stop, &pfd, left)) {
		case -1:
			if (errno == EINTR)
				continue;
			return READ_ERROR;
		case 0:
			continue;
		}
		return READ_LINE;
	}
}

/*
 * Inside TLS: decrypted bytes, waiting for whatever the record layer needs
 * (it may have to write to read). The descriptor is never read in plain
 * text again (a plain byte after TLS is an error, not a command).
 */
static enum read_result
fill_tls(struct reader *r, size_t room)
{
	enum read_result res;
	ssize_t n;

	for (;;) {
		if ((n = tls_read(r->tls, r->buf + r->end, room)) > 0) {
			r->end += (size_t)n;
			return READ_LINE;
		}
		if (n == 0) {
			r->eof = true;
			return READ_EOF;
		}
		if (errno != EAGAIN)
			return READ_ERROR;
		if (r->opt.before_wait != NULL && r->opt.before_wait(r->opt.before_wait_arg) == -1)
			return READ_ERROR;
		if ((res = wait_readable(r, tls_pollfd(r->tls))) != READ_LINE)
			return res;
	}
}

/* Wait for and read more bytes. */
static enum read_result
fill(struct reader *r)
{
	struct pollfd pfd = { .fd = r->opt.fd, .events = POLLIN };
	enum read_result res;
	bool would_block;
	size_t room;
	ssize_t n;

	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	room = sizeof(r->buf) - r->end;
	if (r->opt.read_limit > 0 && room > r->opt.read_limit)
		room = r->opt.read_limit;
	if (++r->reads_since_check > READER_STOP_CHECK) {
		r->reads_since_check = 0;
		stop_let_in(r->opt.stop);
	}
	if (stop_requested(r->opt.stop))
		return READ_STOPPED;
	if (deadline_left(r) <= 0)
		return READ_TIMEOUT;
	if (r->tls != NULL)
		return fill_tls(r, room);
	switch (read_quick(r, room, &would_block)) {
	case 1:
		return READ_LINE;
	case 0:
		r->eof = true;
		return READ_EOF;
	case -2:
		return READ_ERROR;
	}
	/*
	 * RFC 2920 3.2: flush pending replies only when we would block. A
	 * failed flush is READ_ERROR; the session finds why in its reply.
	 */
	if (r->opt.before_wait != NULL && (would_block || stop_poll(NULL, &pfd, 0) == 0) &&
	    r->opt.before_wait(r->opt.before_wait_arg) == -1)
		return READ_ERROR;
	for (;;) {
		if ((res = wait_readable(r, pfd)) != READ_LINE)
			return res;
		n = read(r->opt.fd, r->buf + r->end, room);
		if (n > 0) {
			r->end += (size_t)n;
			return READ_LINE;
		}
		if (n == 0) {
			r->eof = true;
			return READ_EOF;
		}
		if (errno != EINTR && errno != EAGAIN)
			return READ_ERROR;
	}
}

/* Hand out n bytes as a line or piece; len excludes the ending. */
static void
take(struct reader *r, struct line *out, size_t n, bool complete)
{
	const char *p = r->buf + r->start;

	out->bytes = p;
	out->complete = complete;
	out->crlf = complete && n >= 2 && p[n - 2] == '\r';
	out->len = complete ? n - 1 - out->crlf : n;
	r->start += n;
	r->at_line_start = complete;
}

static void
start_line_clock(struct reader *r)
{
	if (r->at_line_start) {
		r->line_deadline_ms = now_ms() + r->opt.line_timeout_ms;
		r->at_line_start = false;
	}
}

enum read_result
reader_next(struct reader *r, struct line *out, size_t max)
{
	enum read_result res;

	/* Over max: dropped a piece at a time through its LF, then READ_TOO_LONG. */
	while ((res = reader_piece(r, out, max)) == READ_LINE && !out->complete)
		r->discarding = true;
	if (res == READ_LINE && r->discarding) {
		r->discarding = false;
		return READ_TOO_LONG;
	}
	return res;
}

enum read_result
reader_piece(struct reader *r, struct line *out, size_t max)
{
	enum read_result res;
	const char *lf;

	start_line_clock(r);
	for (;;) {
		lf = find_lf(r, max);
		if (lf != NULL) {
			take(r, out, (size_t)(lf - (r->buf + r->start)) + 1, true);
			return READ_LINE;
		}
		if (r->end - r->start >= max) {
			size_t n = max;

			/* A CR at the cut may be half of CRLF: leave it for the next piece. */
			if (r->buf[r->start + n - 1] == '\r')
				n--;
			take(r, out, n, false);
			return READ_LINE;
		}
		if ((res = fill(r)) != READ_LINE)
			return res;
	}
}

/*
 * Counted octets (RFC 3030 BDAT): whatever has arrived, up to max, at
 * least one. No line rules apply and no clock starts here: the caller
 * restarts it as the chunk advances. The next command starts its own.
 */
enum read_result
reader_bytes(struct reader *r, struct line *out, size_t max)
{
	enum read_result res;
	size_t n;

	while (r->end == r->start)
		if ((res = fill(r)) != READ_LINE)
			return res;
	n = r->end - r->start;
	take(r, out, n < max ? n : max, false);
	r->at_line_start = true;
	return READ_LINE;
}

size_t
reader_start_tls(struct reader *r, struct tls *t)
{
	size_t dropped = r->end - r->start;

	r->start = r->end = 0;
	r->discarding = false;
	r->at_line_start = true;
	r->tls = t;
	return dropped;
}

long long
reader_deadline(const struct reader *r)
{
	return now_ms() + r->opt.line_timeout_ms < r->session_deadline_ms ?
	    now_ms() + r->opt.line_timeout_ms : r->session_deadline_ms;
}

void
reader_restart_clock(struct reader *r)
{
	r->line_deadline_ms = now_ms() + r->opt.line_timeout_ms;
}

bool
reader_pending(struct reader *r)
{
	struct pollfd pfd = { .fd = r->opt.fd, .events = POLLIN };

	if (r->tls != NULL && tls_pending(r->tls) > 0)
		return true;
	return r->end > r->start || (!r->eof && stop_poll(NULL, &pfd, 0) == 1);
}

/*
 * Signals stay blocked here: the session has ended, and the wait is short
 * and bounded anyway.
 */
void
reader_drain(struct reader *r, int ms, size_t max)
{
	struct pollfd pfd = { .fd = r->opt.fd, .events = POLLIN };
	long long deadline = now_ms() + ms, left;
	size_t total = 0;
	ssize_t n;

	r->start = r->end = 0;
	while (!r->eof && total < max && (left = deadline - now_ms()) > 0) {
		n = stop_poll(NULL, &pfd, left);
		if (n == -1 && errno == EINTR)
			continue;
		if (n != 1)
			break;
		n = read(r->opt.fd, r->buf, max - total < sizeof(r->buf) ? max - total : sizeof(r->buf));
		if (n > 0)
			total += (size_t)n;
		else if (n == 0)
			r->eof = true;
		else if (errno != EINTR && errno != EAGAIN)
			break;
	}
}
