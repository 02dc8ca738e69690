/* reader.h: a bounded line reader with a per-line deadline. */
#ifndef SMTPD_READER_H
#define SMTPD_READER_H

#include <stdbool.h>
#include <stddef.h>

#include "stop.h"
#include "tls.h"

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

/* Everything a reader needs, given once to reader_init. */
struct reader_options {
	int	fd;
	int	line_timeout_ms;	/* each line complete within this */
	int	session_timeout_ms;	/* the whole session within this */
	size_t	read_limit;		/* bytes per read(2); 0 = fill the buffer (tests) */
	const struct stop_wait *stop;	/* a stop ends a wait; NULL: nothing does */
	int	(*before_wait)(void *);	/* flush replies; -1: the read is READ_ERROR */
	void	*before_wait_arg;
};

struct reader {
	struct reader_options opt;
	size_t	start, end;		/* unread bytes are buf[start..end) */
	long long line_deadline_ms;	/* monotonic; set when a line starts */
	long long session_deadline_ms;
	struct tls *tls;		/* after STARTTLS: every byte comes through it */
	bool	at_line_start;
	bool	discarding;		/* skipping the rest of an over-long line */
	bool	not_socket;		/* recv(2) said ENOTSOCK: poll, then read */
	bool	eof;			/* the client closed its side */
	unsigned reads_since_check;	/* see READER_STOP_CHECK */
	char	buf[READER_BUFFER];
};

void reader_init(struct reader *r, const struct reader_options *opt);

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

/*
 * Next counted octets of a BDAT chunk (RFC 3030): up to max bytes, at
 * least one, exactly as sent. They are bounded by the line deadline that
 * reader_restart_clock sets and by the session deadline.
 */
enum read_result reader_bytes(struct reader *r, struct line *out, size_t max);
void reader_restart_clock(struct reader *r);

/* A new line's deadline (CLOCK_MONOTONIC ms), within the session's: for a TLS handshake. */
long long reader_deadline(const struct reader *r);

/*
 * STARTTLS succeeded: from now on bytes come decrypted through t. What
 * the client sent in plain text after the STARTTLS line and we have
 * already read is thrown away, never answered (CVE-2011-0411, RFC 3207
 * 4.2); returns how many bytes that was.
 */
size_t reader_start_tls(struct reader *r, struct tls *t);

/* Has the client sent bytes not read as a line yet (held here or queued)? */
bool reader_pending(struct reader *r);

/*
 * Read and throw away input until the client closes, for at most ms
 * milliseconds and max bytes: a lingering close (see session.c).
 */
void reader_drain(struct reader *r, int ms, size_t max);

#endif
