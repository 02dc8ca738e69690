/* session.h: one SMTP session, from greeting to close. */
#ifndef SMTPD_SESSION_H
#define SMTPD_SESSION_H

#include <stdbool.h>
#include <stddef.h>

#include "route.h"
#include "stop.h"
#include "tls.h"

#define SMTP_COMMAND_MAX	512	/* RFC 5321 4.5.3.1.4, CRLF included */

struct session_config {
	const char *hostname;		/* greeting, EHLO and Received */
	unsigned long long max_message_size;
	unsigned max_recipients;
	unsigned timeout;		/* seconds to send each complete line */
	unsigned session_timeout;	/* seconds for the whole session */
	const struct routes *routes;
	const char *peer;		/* for logs: "192.0.2.1", "IPv6:..." or "local" */
	const char *peer_literal;	/* for Received: "[192.0.2.1]"; NULL on a pipe */
	const char *proxy;		/* for logs: the balancer that sent a PROXY header
					 * naming peer, or the header's kind ("LOCAL")
					 * when it named none; NULL without a header */
	size_t	read_limit;		/* tests: bytes per read(2); 0 = no limit */
	const struct stop_wait *stop;	/* from stop_catch; NULL: nothing stops a wait */
	struct tls_config tls;		/* STARTTLS offered when cert_file is set */
	bool	require_tls;		/* MAIL before STARTTLS is 530 (RFC 3207 4) */
	char *const *filter;		/* content filter argv (filter.h); NULL: none */
	unsigned filter_timeout;	/* seconds the filter has, at least 1 */
};

/*
 * Speak SMTP on in_fd/out_fd until QUIT, client EOF, a timeout or a stop.
 * Returns the exit status: 0 after QUIT or EOF, 1 after a 421 or when the
 * client stopped reading.
 */
int session_run(const struct session_config *cfg, int in_fd, int out_fd);

#endif
