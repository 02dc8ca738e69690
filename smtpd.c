/*
 * smtpd.c: the process around one SMTP session.
 *
 * Promises: options and the config file (config.c) are read before the
 * first byte is sent; a bad configuration still speaks SMTP (421 4.3.0, a
 * log line, exit 78) rather than dropping the client; the connection is fd
 * 3 when systemd passed exactly one (activation.c), else stdin/stdout.
 * main() only wires: signals, activation, configuration, peer, the PROXY
 * header a load balancer sends (proxy.c), session.
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

#include "activation.h"
#include "config.h"
#include "log.h"
#include "proxy.h"
#include "reply.h"
#include "session.h"
#include "stop.h"
#include "tls.h"

#define EXIT_CONFIG	78	/* sysexits.h EX_CONFIG */

/* Who the client is, as logs and Received name it. */
struct client {
	char	peer[PROXY_PEER_MAX];		/* "192.0.2.1", "IPv6:2001:db8::1", "local" */
	char	literal[PROXY_PEER_MAX];	/* "[192.0.2.1]" (RFC 5321 4.1.3); "" on a pipe */
	char	proxy[PROXY_PEER_MAX];		/* session_config.proxy; "" without a header */
};

/*
 * What the launcher says when the connection is not a socket we can ask
 * (a pipe from a TLS wrapper, a peer already gone): REMOTE_ADDR from
 * systemd, TCPREMOTEIP from tcpserver.
 */
static bool
peer_from_environment(struct client *cl)
{
	static const char *const names[] = { "REMOTE_ADDR", "TCPREMOTEIP" };
	unsigned char addr[sizeof(struct in6_addr)];
	const char *env;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((env = getenv(names[i])) == NULL)
			continue;
		if (inet_pton(AF_INET, env, addr) == 1)
			return proxy_format_address(AF_INET, addr, cl->peer, sizeof(cl->peer),
			    cl->literal, sizeof(cl->literal));
		if (inet_pton(AF_INET6, env, addr) == 1)
			return proxy_format_address(AF_INET6, addr, cl->peer, sizeof(cl->peer),
			    cl->literal, sizeof(cl->literal));
	}
	return false;
}

/*
 * The connection's own peer: the socket's (IPv4 or IPv6), else the
 * launcher's word for it, else "local" with no address literal. Never
 * from DNS.
 */
static void
find_peer(int fd, struct client *cl)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(cl, 0, sizeof(*cl));
	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == 0 &&
	    proxy_format_peer((struct sockaddr *)&ss, cl->peer, sizeof(cl->peer),
	    cl->literal, sizeof(cl->literal)))
		return;
	if (peer_from_environment(cl))
		return;
	snprintf(cl->peer, sizeof(cl->peer), "local");
	cl->literal[0] = '\0';
}

/*
 * proxy_read with the stop signals blocked except inside its wait: a stop
 * ends the header's 5 s deadline at once, whether it came before the wait
 * began or during it (and, where the signal still has its default action,
 * ends the process).
 */
static enum proxy_read_result
read_proxy_header(int fd, enum proxy_mode mode, struct proxy_header *h)
{
	enum proxy_read_result r;
	sigset_t stops, old;

	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	sigaddset(&stops, SIGINT);
	sigaddset(&stops, SIGHUP);
	sigprocmask(SIG_BLOCK, &stops, &old);
	r = proxy_read(fd, mode, PROXY_TIMEOUT_MS, &old, h);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}

/*
 * A TCP client relayed by the balancer is named by the header's source, and
 * the balancer (the connection's peer) goes to the logs as proxy=. LOCAL
 * (a health check), UNKNOWN and other families (UNIX, UDP) keep the
 * connection's own peer; proxy= then names the kind of header.
 */
static void
name_client(const struct proxy_header *h, struct client *cl)
{
	struct client relayed;
	int n;

	memset(&relayed, 0, sizeof(relayed));
	if ((h->family == AF_INET || h->family == AF_INET6) &&
	    proxy_format_peer((const struct sockaddr *)&h->source, relayed.peer,
	    sizeof(relayed.peer), relayed.literal, sizeof(relayed.literal))) {
		memcpy(relayed.proxy, cl->peer, sizeof(relayed.proxy));
		*cl = relayed;
		return;
	}
	n = snprintf(cl->proxy, sizeof(cl->proxy), "%s", h->what);
	if (n < 0 || (size_t)n >= sizeof(cl->proxy))
		snprintf(cl->proxy, sizeof(cl->proxy), "other");
}

/*
 * proxy-protocol: before we say a word, the connection must come from a
 * proxy-from balancer and open with its header. Anything else is closed
 * without a reply (proxy-protocol.txt 2: the receiver must not guess), with
 * one log line. Returns -1 to go on with the session, else the exit
 * status: 0 when the peer closed before sending a byte (a TCP connect
 * check), 1 otherwise.
 */
static int
accept_proxy(int fd, const struct config *c, struct client *cl)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	enum proxy_read_result r;
	struct proxy_header h;

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1) {
		log_info("proxy-refused peer=%s reason=\"not a TCP connection\"", cl->peer);
		return 1;
	}
	if (!proxy_match_net(c->proxy_from, c->nproxy_from, (struct sockaddr *)&ss)) {
		log_info("proxy-refused peer=%s reason=\"not in proxy-from\"", cl->peer);
		return 1;
	}
	r = read_proxy_header(fd, c->proxy_protocol, &h);
	if (r != PROXY_READ_OK) {
		log_info("proxy-refused peer=%s reason=\"%s\"", cl->peer, h.reason);
		return r == PROXY_READ_EOF ? 0 : 1;
	}
	name_client(&h, cl);
	return -1;
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
	struct client cl;
	int in_fd = 0, out_fd = 1, status;

	log_open("smtpd");
	/*
	 * A vanished client is an error return, not a death by SIGPIPE. Stop
	 * signals keep their default action until the session (stop_catch):
	 * a stop while the configuration is read ends the process at once.
	 */
	signal(SIGPIPE, SIG_IGN);
	/* systemd Accept=yes without StandardInput=socket: fd 3 is the client. */
	switch (activation_listen_fds()) {
	case 0:
		break;
	case 1:
		in_fd = out_fd = LISTEN_FDS_START;
		break;
	case -1:
		log_error("LISTEN_PID is ours but LISTEN_FDS is not a count of open sockets; using stdin");
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
	find_peer(in_fd, &cl);
	if (config_drop_privileges(&st) == -1)
		return refuse_setup(out_fd, st.error);
	/* After the drop: the header is the client's first untrusted byte. */
	if (st.proxy_protocol != PROXY_OFF && (status = accept_proxy(in_fd, &st, &cl)) != -1)
		return status;
	st.session.peer = cl.peer;
	st.session.peer_literal = cl.literal[0] != '\0' ? cl.literal : NULL;
	st.session.proxy = cl.proxy[0] != '\0' ? cl.proxy : NULL;
	st.session.stop = stop_catch();
	return session_run(&st.session, in_fd, out_fd);
}
