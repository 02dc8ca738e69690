/*
 * smtpd.c: the process around one SMTP session.
 *
 * Promises: options and the config file (config.c) are read before the
 * first byte is sent; a bad configuration still speaks SMTP (421 4.3.0, a
 * log line, exit 78) rather than dropping the client; the connection is fd
 * 3 when systemd passed exactly one (sd_listen_fds), else stdin/stdout.
 * main() only wires: signals, activation, configuration, peer, session.
 * Knows no SMTP grammar: session.c does.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>	/* SD_LISTEN_FDS_START only: nothing is linked */

#include "config.h"
#include "libsystemd.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "session.h"
#include "tls.h"
#include "stop.h"

#define EXIT_CONFIG	78	/* sysexits.h EX_CONFIG */

/* The connection's own peer, when it is a TCP socket. */
static bool
peer_from_socket(int fd, char *peer, size_t size, char *literal, size_t lsize)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
		return false;
	return proxy_format_peer((struct sockaddr *)&ss, peer, size, literal, lsize);
}

/*
 * What the launcher says when the connection is not a socket we can ask
 * (a pipe from a TLS wrapper, a peer already gone): REMOTE_ADDR from
 * systemd (systemd.socket(5), Accept=yes), TCPREMOTEIP from ucspi-tcp's
 * tcpserver and s6-tcpserver.
 */
static bool
peer_from_environment(char *peer, size_t size, char *literal, size_t lsize)
{
	static const char *const names[] = { "REMOTE_ADDR", "TCPREMOTEIP" };
	unsigned char addr[sizeof(struct in6_addr)];
	const char *env;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((env = getenv(names[i])) == NULL)
			continue;
		if (inet_pton(AF_INET, env, addr) == 1)
			return proxy_format_address(AF_INET, addr, peer, size, literal, lsize);
		if (inet_pton(AF_INET6, env, addr) == 1)
			return proxy_format_address(AF_INET6, addr, peer, size, literal, lsize);
	}
	return false;
}

/*
 * The client's address for logs ("192.0.2.1", "IPv6:2001:db8::1", or
 * "local" on a pipe) and for Received (RFC 5321 4.1.3 address literal,
 * empty on a pipe), named as proxy_format_peer names it. Never from DNS.
 */
static void
find_peer(int fd, char *peer, size_t size, char *literal, size_t lsize)
{
	if (peer_from_socket(fd, peer, size, literal, lsize) ||
	    peer_from_environment(peer, size, literal, lsize))
		return;
	snprintf(peer, size, "local");
	literal[0] = '\0';
}

/* Setup faults still speak SMTP: 421 4.3.0, one log line, exit 78. */
static int
refuse_setup(int out_fd, const char *reason)
{
	struct reply out;

	log_error("configuration error: %s", reason);
	reply_init(&out, &(struct reply_options){ .fd = out_fd, .timeout_ms = 10000 });
	reply_send(&out, 421, "4.3.0", "%s", reason);
	reply_flush(&out);
	return EXIT_CONFIG;
}

/* -T FILE: a new session ticket key first, the previous two kept (tls.h). */
static int
rotate_ticket_keys(const char *path)
{
	char why[256];

	if (tls_rotate_ticket_keys(path, why, sizeof(why)) == 0)
		return 0;
	log_error("cannot rotate ticket keys in %s: %s", path, why);
	fprintf(stderr, "smtpd: %s: %s\n", path, why);
	return EXIT_CONFIG;
}

int
main(int argc, char **argv)
{
	static struct config st;
	char peer[PROXY_PEER_MAX], literal[PROXY_PEER_MAX];
	int in_fd = 0, out_fd = 1;

	log_open("smtpd");
	/*
	 * A vanished client is an error return, not a death by SIGPIPE. Stop
	 * signals keep their default action until the session (stop_catch):
	 * a stop while the configuration is read ends the process at once.
	 */
	signal(SIGPIPE, SIG_IGN);
	/* systemd Accept=yes without StandardInput=socket: fd 3 is the client. */
	switch (libsystemd_listen_fds()) {
	case 0:
		break;
	case 1:
		in_fd = out_fd = SD_LISTEN_FDS_START;
		break;
	case -1:
		log_error("LISTEN_PID is ours but libsystemd.so.0 cannot be loaded; using stdin");
		break;
	default:
		log_error("systemd passed several sockets; using stdin (Accept=yes passes one)");
		break;
	}
	config_init(&st);
	if (config_parse_options(&st, argc, argv) == -1)
		return refuse_setup(out_fd, st.error);
	if (st.rotate_file != NULL)
		return rotate_ticket_keys(st.rotate_file);
	if (st.compile) {
		if (config_compile(&st) == -1) {
			log_error("configuration error: %s", st.error);
			fprintf(stderr, "smtpd: %s\n", st.error);
			return EXIT_CONFIG;
		}
		return 0;
	}
	if (config_load(&st) == -1)
		return refuse_setup(out_fd, st.error);
	find_peer(in_fd, peer, sizeof(peer), literal, sizeof(literal));
	if (config_drop_privileges(&st) == -1)
		return refuse_setup(out_fd, st.error);
	st.session.peer = peer;
	st.session.peer_literal = literal[0] != '\0' ? literal : NULL;
	st.session.stop = stop_catch();
	return session_run(&st.session, in_fd, out_fd);
}
