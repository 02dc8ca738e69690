/* reader.h: a bounded line reader with a per-line deadline. */
#ifndef SMTPD_READER_H
#define SMTPD_READER_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define READER_BUFFER	8192
/*
 * Stop signals are blocked except while the reader waits, and ppoll takes
 * one only when it has to wait: a client that never pauses would hold a
 * stop off for as long as it sends. So every READER_STOP_CHECK reads that
 * did not wait, pending stop signals are let in: a stop waits behind at
 * most 64 KiB of input.
 */
#define READER_STOP_CHECK	8

/* One line, or one piece of a line longer than the caller's limit. */
struct line {
	const char *bytes;	/* points into the reader; valid until the next call */
	size_t	len;		/* line ending removed; may contain NUL: never strlen() it */
	bool	complete;	/* ended in LF (else a piece of a longer line) */
	bool	crlf;		/* ended in CRLF, the only line ending RFC 5321 2.3.8 knows */
};

enum read_result {
	READ_LINE, READ_TOO_LONG, READ_EOF, READ_TIMEOUT, READ_ERROR, READ_STOPPED
};

struct reader {
	int	fd;
	size_t	start, end;		/* unread bytes are buf[start..end) */
	size_t	read_limit;		/* bytes per read(2); 0 = fill the buffer */
	long long line_deadline_ms;	/* monotonic; set when a line starts */
	long long session_deadline_ms;
	int	line_timeout_ms;
	bool	at_line_start;
	bool	discarding;		/* skipping the rest of an over-long line */
	const volatile sig_atomic_t *stop;	/* set by a signal: give up waiting */
	sigset_t wait_mask;		/* signals that may interrupt a wait */
	int	(*before_wait)(void *);	/* flush replies; -1 ends the session */
	void	*before_wait_arg;
	bool	not_socket;		/* recv(2) said ENOTSOCK: poll, then read */
	unsigned reads_since_check;	/* see READER_STOP_CHECK */
	char	buf[READER_BUFFER];
};

void reader_init(struct reader *r, int fd, int line_timeout_ms, int session_timeout_ms);

/*
 * Next command line of at most max bytes, line ending included. A longer
 * line is discarded through its LF and reported as READ_TOO_LONG, so the
 * session stays in step.
 */
enum read_result reader_next(struct reader *r, struct line *out, size_t max);

/*
 * Next piece of message data: a whole line when it fits in max bytes,
 * otherwise max bytes of it (never splitting a CR from its LF).
 */
enum read_result reader_piece(struct reader *r, struct line *out, size_t max);

#endif
