/* route.h: which Maildir an accepted recipient goes to. */
#ifndef SMTPD_ROUTE_H
#define SMTPD_ROUTE_H

#include <stddef.h>

#include "address.h"

struct mailbox {
	char	*key;		/* "local@domain" or "@domain", lower-cased */
	char	*maildir;
	unsigned line;		/* where the config file said it */
};

struct routes {
	char	**domains;	/* `domain` lines, lower-cased, sorted */
	size_t	ndomains;
	struct mailbox *boxes;	/* `mailbox` lines, sorted by key */
	size_t	nboxes;
	const char *default_maildir;	/* -m or `maildir`; may be NULL */
};

enum route_result {
	ROUTE_OK,
	ROUTE_UNKNOWN_USER,	/* 550 5.1.1: a domain we serve, no such mailbox */
	ROUTE_NOT_OURS,		/* 550 5.7.1: we never relay */
};

/* Building, for the config reader. -1 with errno set on failure. */
int routes_add_domain(struct routes *rt, const char *domain);
int routes_add_mailbox(struct routes *rt, const char *address, const char *maildir, unsigned line);

/* Sort for look-ups; returns the config line of a duplicate address, or 0. */
unsigned routes_finish(struct routes *rt);

/* Any destination at all? A config without one cannot accept mail. */
int routes_have_destination(const struct routes *rt);

/* Free what the add functions allocated (default_maildir is not owned). */
void routes_free(struct routes *rt);

/* Route one recipient (RFC 5321 4.5.1: postmaster always has a home). */
enum route_result routes_lookup(const struct routes *rt, const struct address *a,
    const char **maildir);

#endif
