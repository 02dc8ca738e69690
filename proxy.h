/*
 * proxy.h: the PROXY protocol (haproxy.org proxy-protocol.txt, v1 and v2)
 * a load balancer sends before the client's first byte, and the list of
 * balancers allowed to send it (`proxy-from`).
 */
#ifndef SMTPD_PROXY_H
#define SMTPD_PROXY_H

#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define PROXY_V1_MAX		107	/* proxy-protocol.txt 2.1, CRLF included */
#define PROXY_V2_FIXED		16	/* signature, version/command, family, length */
#define PROXY_V2_UNIX_BLOCK	216	/* the largest address block: 2 * 108 */
#define PROXY_V2_TLV_MAX	512	/* our bound on TLVs after the addresses */
#define PROXY_HEADER_MAX	(PROXY_V2_FIXED + PROXY_V2_UNIX_BLOCK + PROXY_V2_TLV_MAX)
#define PROXY_TIMEOUT_MS	5000	/* the header's own deadline */
#define PROXY_PEER_MAX		(INET6_ADDRSTRLEN + 8)	/* "[IPv6:...]" and its NUL */

/* `proxy-protocol no|v1|v2|any`: which header versions are accepted. */
enum proxy_mode { PROXY_OFF, PROXY_V1, PROXY_V2, PROXY_ANY };

enum proxy_status { PROXY_NEED_MORE, PROXY_OK, PROXY_MALFORMED };

enum proxy_command {
	PROXY_COMMAND_PROXY,	/* v1 TCP4/TCP6, v2 PROXY: relayed for a client */
	PROXY_COMMAND_LOCAL,	/* v2 LOCAL: the balancer's own health check */
	PROXY_COMMAND_UNKNOWN,	/* v1 UNKNOWN: the balancer could not tell */
};

struct proxy_header {
	size_t	len;		/* octets of the whole header: CRLF, TLVs included */
	int	version;	/* 1 or 2 */
	enum proxy_command command;
	/*
	 * AF_INET or AF_INET6 for v1 TCP4/TCP6 and v2 PROXY over TCP; then
	 * source and destination hold the addresses and ports. AF_UNSPEC
	 * otherwise: LOCAL, UNKNOWN, or PROXY for another family (AF_UNIX,
	 * UDP, unspecified), where the connection's own peer stands.
	 */
	int	family;
	struct sockaddr_storage source, destination;
	const char *what;	/* for logs: "TCP4", "UDP6", "UNIX-STREAM", "LOCAL"... */
	const char *reason;	/* PROXY_MALFORMED, or proxy_read failing: why */
};

/*
 * Parse the first n bytes of a connection. PROXY_NEED_MORE when they are
 * a proper prefix of a header still possible (every one of those bytes
 * then belongs to the header, so a reader may consume them); PROXY_OK with
 * h->len <= n (bytes after it are the client's); PROXY_MALFORMED with
 * h->reason, for anything the spec does not allow or the mode excludes.
 * No answer changes when more bytes are appended, and the bytes examined
 * never exceed PROXY_HEADER_MAX.
 */
enum proxy_status proxy_parse(const unsigned char *p, size_t n, enum proxy_mode mode,
    struct proxy_header *h);

enum proxy_read_result {
	PROXY_READ_OK,
	PROXY_READ_MALFORMED,	/* h->reason says why */
	PROXY_READ_EOF,		/* end of file before any byte: a connect-only check */
	PROXY_READ_TRUNCATED,	/* end of file inside the header */
	PROXY_READ_TIMEOUT,
	PROXY_READ_ERROR,	/* not a socket, a signal, a read error: h->reason */
};

/*
 * Read the header from socket fd within timeout_ms, consuming exactly its
 * bytes: whatever the client sent after it (a pipelined EHLO in the same
 * segment) stays in the socket for the SMTP reader. While it waits, the
 * signal mask is wait_mask (NULL: the caller's): a caller that blocks its
 * stop signals and passes the mask without them gets a stop that arrived
 * at any moment before or during the wait, as PROXY_READ_ERROR
 * ("interrupted by a signal") or by the signal's default action.
 */
enum proxy_read_result proxy_read(int fd, enum proxy_mode mode, int timeout_ms,
    const sigset_t *wait_mask, struct proxy_header *h);

/* `proxy-protocol` value: "no", "v1", "v2" or "any"; -1 for anything else. */
int proxy_parse_mode(const char *text, enum proxy_mode *mode);

/* One `proxy-from` entry: a network, IPv4 or IPv6. */
struct proxy_net {
	int	family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];		/* network byte order, 4 used for AF_INET */
	unsigned prefix;		/* 0-32 or 0-128 */
};

/*
 * Parse ADDRESS[/PREFIX] strictly. On -1, error holds a sentence for the
 * configuration error message.
 */
int proxy_parse_net(const char *text, struct proxy_net *net, char *error, size_t size);

/* Is peer (IPv4, IPv6; IPv4-mapped IPv6 as IPv4) in one of the nets? */
bool proxy_match_net(const struct proxy_net *nets, size_t count, const struct sockaddr *peer);

/*
 * An address as smtpd names a client: peer is "192.0.2.1" or
 * "IPv6:2001:db8::1" (logs), literal "[192.0.2.1]" or "[IPv6:2001:db8::1]"
 * (Received, RFC 5321 4.1.3); an IPv4-mapped IPv6 address is shown as the
 * IPv4 it carries. Both buffers take PROXY_PEER_MAX. false when sa is
 * neither AF_INET nor AF_INET6 (nothing written), or a buffer is too
 * small (both left empty rather than cut short).
 */
bool proxy_format_peer(const struct sockaddr *sa, char *peer, size_t psize, char *literal,
    size_t lsize);

/* The same from a bare address (family AF_INET or AF_INET6). */
bool proxy_format_address(int family, const void *addr, char *peer, size_t psize,
    char *literal, size_t lsize);

#endif
