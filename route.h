/* route.h: which Maildir an accepted recipient goes to. */
#ifndef SMTPD_ROUTE_H
#define SMTPD_ROUTE_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "address.h"

#define ROUTE_PATH_MAX	4096	/* a Maildir path with its folder, NUL included */
#define ROUTE_TAG_MAX	32	/* longest sub-address tag that can name a folder */
#define ROUTE_FOLDER_MAX	(ROUTE_TAG_MAX + 2)	/* ".TAG" and its NUL */
#define ROUTE_KEY_MAX	(SMTP_LOCAL_MAX + 1 + SMTP_DOMAIN_MAX + 1)

struct route_map;

struct mailbox {
	char	*key;		/* owned: "local@domain", "@domain", or an implied postmaster's */
	char	*maildir;	/* owned */
	unsigned line;		/* where the config file said it */
};

/* Every pointer here is owned by the routes and freed by routes_free, unless it says otherwise. */
struct routes {
	char	**domains;	/* `domain` lines, canonical, sorted */
	size_t	ndomains;
	struct mailbox *boxes;	/* `mailbox` lines and implied postmasters, sorted by key */
	size_t	nboxes;
	char	**box_domains;	/* domains named by mailbox lines, sorted, distinct; the
				 * strings are borrowed from boxes[].key */
	size_t	nbox_domains;
	char	*first_domain;	/* of the first domain line, else mailbox line: <postmaster> */
	char	*default_maildir;	/* routes_set_maildir: -m or `maildir`; may be NULL */
	char	*delimiters;	/* routes_set_delimiters: NULL is "+", "" turns tags off */
	bool	create_folders;	/* create-folders yes: read by the session when it delivers */
	struct route_map *map;	/* the compiled map (FILE.cdb) when one is open */
};

enum route_result {
	ROUTE_OK,
	ROUTE_UNKNOWN_USER,	/* 550 5.1.1: a domain we serve, no such mailbox */
	ROUTE_NOT_OURS,		/* 550 5.7.1: we never relay */
	ROUTE_TEMPFAIL,		/* 451 4.3.0: the compiled map could not be read */
};

/*
 * Where one recipient's copy goes. Routing never looks at the file system:
 * whether the folder is a real Maildir++ folder, or may be created, is
 * decided when the message is delivered (maildir_is_folder).
 */
struct route {
	char	maildir[ROUTE_PATH_MAX];	/* a configured Maildir */
	char	folder[ROUTE_FOLDER_MAX];	/* "" or ".TAG": the folder a safe tag names */
};

/*
 * Building, for the config reader: -1 with errno EINVAL for an address or
 * domain the SMTP grammar refuses, ENAMETOOLONG for a directory too long to
 * route to, ENOMEM when out of memory. Keys are canonical: local parts as
 * address.c writes them with ASCII folded to lower case, domains as
 * address_domain_key() writes them.
 */
int routes_add_domain(struct routes *rt, const char *domain);
int routes_add_mailbox(struct routes *rt, const char *address, const char *maildir, unsigned line);

#define ROUTES_NOMEM	UINT_MAX	/* routes_finish ran out of memory */

/*
 * Sort for look-ups; returns the config line of a duplicate address, 0
 * when there is none, or ROUTES_NOMEM.
 * Then, without a default Maildir, gives postmaster@ of every served
 * domain that has no mailbox line and no catch-all the Maildir of the
 * domain's first mailbox line (RFC 5321 4.5.1: postmaster is always
 * deliverable).
 */
unsigned routes_finish(struct routes *rt);

/*
 * The default Maildir (-m or `maildir`) and the recipient delimiters, each
 * copied into rt; a later call replaces (and frees) the earlier value, so
 * -m given after the file wins. NULL clears. -1 with errno EINVAL for an
 * empty Maildir name, ENAMETOOLONG for one too long to route to, ENOMEM.
 */
int routes_set_maildir(struct routes *rt, const char *dir);
int routes_set_delimiters(struct routes *rt, const char *chars);

/* Free everything rt owns (every pointer in it) and clear it. */
void routes_free(struct routes *rt);

/* Any destination at all? A config without one cannot accept mail. */
int routes_have_destination(const struct routes *rt);

/*
 * Route one recipient (RFC 5321 4.5.1: postmaster always has a home). A
 * sub-address user+tag routes like user and names the folder ".tag" in
 * r->folder when the tag is a safe name (1 to ROUTE_TAG_MAX ASCII letters,
 * digits, '-' and '_').
 */
enum route_result routes_lookup(const struct routes *rt, const struct address *a,
    struct route *r);

/*
 * The compiled map: every domain and mailbox line of the configuration in
 * one cdb, with the other lines of the file kept as settings text
 * ("LINE TEXT\n" each) for the config reader. routes_write_map writes it to
 * fd from finished routes; routes_open_map maps it read-only and points
 * *settings at that text (valid while the map is open). -1 with errno set
 * on failure; EPROTO for a file that is not such a map.
 */
int routes_write_map(const struct routes *rt, int fd, const char *settings, size_t len);
int routes_open_map(struct routes *rt, int fd, const char **settings, size_t *len);

#endif
