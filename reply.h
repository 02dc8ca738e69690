/* reply.h: SMTP replies, held in one buffer and flushed before we wait. */
#ifndef SMTPD_REPLY_H
#define SMTPD_REPLY_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>

#define SMTP_REPLY_MAX	512	/* RFC 5321 4.5.3.1.5, code and CRLF included */
#define REPLY_BUFFER	8192

struct reply {
	int	fd;
	int	timeout_ms;	/* a whole flush must finish within this */
	bool	failed;		/* a write failed or timed out: the peer is gone */
	bool	not_socket;	/* fd is a pipe or file: no send(2) */
	const volatile sig_atomic_t *stop;	/* set by a signal: give up waiting */
	sigset_t wait_mask;	/* signals that may interrupt a wait */
	size_t	len;
	char	buf[REPLY_BUFFER];
};

void reply_init(struct reply *r, int fd, int timeout_ms);

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

/* Write out everything held. -1 when the peer is gone or too slow. */
int reply_flush(struct reply *r);

#endif
