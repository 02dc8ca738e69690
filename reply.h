/* reply.h: SMTP replies, held in one buffer and flushed before we wait. */
#ifndef SMTPD_REPLY_H
#define SMTPD_REPLY_H

#include <stdbool.h>
#include <stddef.h>

#include "stop.h"
#include "tls.h"

#define SMTP_REPLY_MAX	512	/* RFC 5321 4.5.3.1.5, code and CRLF included */
#define REPLY_BUFFER	8192
/*
 * After a stop, a client that does not read gets this much longer to take
 * our last reply: the stop ends the wait, not the attempt to write.
 */
#define REPLY_STOP_GRACE_MS	1000

/* Everything a reply needs, given once to reply_init. */
struct reply_options {
	int	fd;
	int	timeout_ms;		/* a whole flush must finish within this */
	int	session_timeout_ms;	/* and by the session's end; 0: no such end */
	const struct stop_wait *stop;	/* a stop shortens waits; NULL: nothing does */
};

struct reply {
	struct reply_options opt;
	long long session_deadline_ms;	/* monotonic; 0: none */
	long long stop_deadline_ms;	/* set when a stop is first seen */
	bool	failed;		/* a write failed or timed out: the peer is gone */
	bool	not_socket;	/* fd is a pipe or file: no send(2) */
	struct tls *tls;	/* after STARTTLS: every byte goes through it */
	size_t	len;
	char	buf[REPLY_BUFFER];
};

void reply_init(struct reply *r, const struct reply_options *opt);

/*
 * One complete reply line "code ecode text"; ecode is NULL only for the
 * greeting, HELO/EHLO and 354, which RFC 2034 leaves without one. Like
 * Postfix, codes are printed after HELO too: they are plain text to a
 * client that did not ask. Text comes from our own format strings.
 */
void reply_send(struct reply *r, int code, const char *ecode, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* One continuation line "code-text" of a multi-line reply (no enhanced code). */
void reply_send_more(struct reply *r, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Write out everything held: each write is tried before any wait, and the
 * waits end by min(now + timeout, the session's end), or a moment after a
 * stop. -1 when the peer is gone or too slow; every later flush is -1 too.
 */
int reply_flush(struct reply *r);

/* STARTTLS succeeded: from now on every reply goes through t. */
void reply_start_tls(struct reply *r, struct tls *t);

/*
 * After the last reply: no more output (shutdown(2) SHUT_WR, so the
 * client sees our FIN after the reply). -1 when fd is not a socket.
 */
int reply_shutdown(struct reply *r);

#endif
