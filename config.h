/* config.h: options, the configuration file, its compiled map, and who we run as. */
#ifndef SMTPD_CONFIG_H
#define SMTPD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

#include "proxy.h"
#include "route.h"
#include "session.h"

#define CONFIG_KEYS_MAX	32	/* rows of the key table in config.c, at most */

struct config {
	struct session_config session;	/* limits, hostname and routes for session_run */
	struct routes routes;		/* borrows maildir and delimiters below */
	const char *config_file;	/* -c FILE or -C FILE; NULL: none */
	bool	compile;		/* -C: write FILE.cdb and exit */
	const char *maildir_option;	/* -m wins over `maildir` */
	const char *hostname_option;	/* -h wins over `hostname` */
	char	*maildir;		/* `maildir`, owned */
	char	*delimiters;		/* `recipient-delimiter`, owned; NULL: "+" */
	char	*user;			/* `user`, owned: who to become when started as root */
	char	*tls_cert, *tls_key;	/* `tls-cert`, `tls-key`, owned: both or neither */
	char	*tls_ticket_keys;	/* `tls-ticket-keys`, owned; NULL: no tickets */
	const char *rotate_file;	/* -T FILE: rotate its ticket keys and exit */
	enum proxy_mode proxy_protocol;	/* `proxy-protocol`; PROXY_OFF by default */
	struct proxy_net *proxy_from;	/* `proxy-from` lines, owned */
	size_t	nproxy_from;
	char	**filter;		/* `filter`, owned: NULL-terminated argv; NULL: none */
	char	hostname[256];		/* `hostname`, -h or gethostname() */
	char	error[512];		/* why the configuration is refused */

	/* Private to config.c. */
	unsigned lineno;		/* of the line being applied */
	unsigned key_line[CONFIG_KEYS_MAX];	/* where each key was first given */
	char	*settings;		/* -C: the text kept in the map (config.c) */
	size_t	settings_len, settings_size;
};

/* The defaults, before options and file. */
void config_init(struct config *c);

/*
 * Each returns 0, or -1 with the reason in c->error: the caller answers
 * 421 4.3.0 with it (or, for -C, prints it) and exits 78.
 *  config_parse_options  the command line
 *  config_load           FILE (or FILE.cdb when it was compiled from this
 *                        very FILE), then the options, then the checks of
 *                        the whole (proxy-protocol needs proxy-from);
 *                        fills c->session.hostname and .routes
 *  config_compile        -C: check FILE as config_load does, and that the
 *                        filter program is an executable file; write FILE.cdb
 *  config_drop_privileges  become `user` (after the connection is set up,
 *                        before the first byte is read)
 */
int config_parse_options(struct config *c, int argc, char **argv);
int config_load(struct config *c);
int config_compile(struct config *c);
int config_drop_privileges(struct config *c);

/* Free what the configuration owns, routes included. */
void config_free(struct config *c);

#endif
