/* text.h: the client's message text as it is stored, from DATA or BDAT. */
#ifndef SMTPD_TEXT_H
#define SMTPD_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#include "maildir.h"

struct text {
	struct delivery *d;		/* borrowed: where the text goes */
	unsigned long long size;	/* octets counted against max-message-size (the caller's) */
	unsigned hops;			/* Received fields in the client's header */
	bool	too_big;		/* past max-message-size: nothing more is stored */
	bool	started;		/* a line has begun: the next is not the first */
	bool	line_start, in_header;
	bool	cr_held;		/* BDAT: a chunk ended in CR, maybe half of CRLF */
	size_t	held;			/* BDAT: head[0..held) starts a header line */
	char	head[9];		/* strlen("Received:") */
};

/* After our trace lines: the client's text starts, header first. */
void text_begin(struct text *t, struct delivery *d);

/*
 * DATA: one line (stored with LF when complete) or a piece of a longer
 * one, the caller having removed the ending and undone dot-stuffing.
 */
void text_line(struct text *t, const char *p, size_t n, bool complete);

/*
 * BDAT: octets as sent (RFC 3030 2), stored by DATA's rules: CRLF and bare
 * LF end a stored line, a bare CR is kept, a CR ending one chunk and an LF
 * starting the next are one CRLF. text_end after the last chunk.
 */
void text_octets(struct text *t, const char *p, size_t n);
void text_end(struct text *t);

/* Past max-message-size: nothing more is stored, and the staged copies go now. */
void text_too_big(struct text *t);

#endif
