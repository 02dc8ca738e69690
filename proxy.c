/*
 * proxy.c: the PROXY protocol header a load balancer (HAProxy) puts before
 * the client's bytes (haproxy.org proxy-protocol.txt, versions 1 and 2),
 * and the `proxy-from` list of balancers allowed to send one.
 *
 * Promises: a header is accepted only in exactly the form the spec writes
 * (section 2: the receiver must not guess; anything else is malformed);
 * the parser is pure, examines at most PROXY_HEADER_MAX bytes and never
 * changes its answer when more bytes arrive; proxy_read never consumes a
 * byte past the header, so the client's pipelined command survives, and
 * waits no longer than its deadline. Leaves to the caller which peers may
 * send a header, what to log, and closing the connection.
 */
#define _GNU_SOURCE	/* ppoll */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "clock.h"

#define V1_PREFIX	"PROXY "
#define V1_PREFIX_LEN	6
#define V2_SIGNATURE_LEN 12

/* Section 2.2: chosen to fail in HTTP, TLS, SMTP and friends; note the NUL. */
static const unsigned char v2_signature[V2_SIGNATURE_LEN] = {
	0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A
};

/* Section 2.2: the address block of each family, ports included. */
static const size_t v2_block[4] = { 0, 2 * 4 + 2 * 2, 2 * 16 + 2 * 2, PROXY_V2_UNIX_BLOCK };

/* For logs, by family nibble then transport nibble. */
static const char *const v2_names[4][3] = {
	{ "UNSPEC", "UNSPEC", "UNSPEC" }, { "INET", "TCP4", "UDP4" },
	{ "INET6", "TCP6", "UDP6" }, { "UNIX", "UNIX-STREAM", "UNIX-DGRAM" },
};

struct field {
	const unsigned char *p;
	size_t	n;
};

static enum proxy_status
malformed(struct proxy_header *h, const char *reason)
{
	h->reason = reason;
	return PROXY_MALFORMED;
}

/* Do the n bytes agree with as much of want[0..wlen) as they cover? */
static bool
prefix_matches(const unsigned char *p, size_t n, const void *want, size_t wlen)
{
	return memcmp(p, want, n < wlen ? n : wlen) == 0;
}

/*
 * Section 2.1: the line ends at the first CRLF within 107 octets; a CR or
 * LF alone is never an ending ("must not tolerate a single CR or LF").
 * On PROXY_OK, *end is the length of the line without its CRLF.
 */
static enum proxy_status
v1_find_end(const unsigned char *p, size_t n, size_t *end, struct proxy_header *h)
{
	size_t limit = n < PROXY_V1_MAX ? n : PROXY_V1_MAX;

	for (size_t i = 0; i < limit; i++) {
		if (p[i] == '\n')
			return malformed(h, "v1: a bare LF");
		if (p[i] != '\r')
			continue;
		if (i + 2 > PROXY_V1_MAX)
			return malformed(h, "v1: longer than 107 octets");
		if (i + 1 == n)
			return PROXY_NEED_MORE;
		if (p[i + 1] != '\n')
			return malformed(h, "v1: a bare CR");
		*end = i;
		return PROXY_OK;
	}
	if (n >= PROXY_V1_MAX)
		return malformed(h, "v1: longer than 107 octets");
	return PROXY_NEED_MORE;
}

/* Split line[0..len) at single spaces into exactly count non-empty fields. */
static bool
split_fields(const unsigned char *line, size_t len, struct field *f, size_t count)
{
	size_t start = 0, k = 0;

	for (size_t i = 0; i <= len; i++) {
		if (i < len && line[i] != ' ')
			continue;
		if (i == start || k == count)
			return false;	/* two spaces, an edge space, or too many */
		f[k].p = line + start;
		f[k].n = i - start;
		k++;
		start = i + 1;
	}
	return k == count;
}

/*
 * An address in the form inet_pton(3) takes, which is the spec's: four
 * decimal numbers without leading zeroes, or hex groups with one "::".
 * The bytes are checked first: inet_pton would stop at a NUL.
 */
static bool
v1_address(struct field f, int family, void *addr)
{
	char text[INET6_ADDRSTRLEN];

	if (f.n >= sizeof(text))
		return false;
	for (size_t i = 0; i < f.n; i++)
		if (strchr("0123456789abcdefABCDEF:.", f.p[i]) == NULL || f.p[i] == '\0')
			return false;
	memcpy(text, f.p, f.n);
	text[f.n] = '\0';
	return inet_pton(family, text, addr) == 1;
}

/*
 * n bytes of decimal, no sign, no leading zero, at most max (a port, a
 * prefix length: far below UINT_MAX / 10, so v * 10 + 9 cannot wrap).
 */
static bool
plain_number(const unsigned char *p, size_t n, unsigned max, unsigned *out)
{
	unsigned v = 0;

	if (n == 0 || (n > 1 && p[0] == '0'))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if ((v = v * 10 + (unsigned)(p[i] - '0')) > max)
			return false;
	}
	*out = v;
	return true;
}

/* Section 2.1: a port is 0 to 65535 in decimal, no sign, no leading zero. */
static bool
v1_port(struct field f, in_port_t *port)
{
	unsigned v;

	if (!plain_number(f.p, f.n, 65535, &v))
		return false;
	*port = htons((in_port_t)v);
	return true;
}

/* Store one endpoint of family in ss. */
static void
set_endpoint(struct sockaddr_storage *ss, int family, const void *addr, in_port_t port)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		memcpy(&sin->sin_addr, addr, 4);
		sin->sin_port = port;
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		memcpy(&sin6->sin6_addr, addr, 16);
		sin6->sin6_port = port;
	}
}

/* "SRC DST SPORT DPORT" of a TCP4 or TCP6 line. */
static enum proxy_status
v1_endpoints(const unsigned char *p, size_t n, int family, struct proxy_header *h)
{
	struct field f[4];
	unsigned char src[16], dst[16];
	in_port_t sport, dport;

	if (!split_fields(p, n, f, 4))
		return malformed(h, "v1: not four single-spaced fields after the protocol");
	if (!v1_address(f[0], family, src))
		return malformed(h, "v1: bad source address");
	if (!v1_address(f[1], family, dst))
		return malformed(h, "v1: bad destination address");
	if (!v1_port(f[2], &sport))
		return malformed(h, "v1: bad source port");
	if (!v1_port(f[3], &dport))
		return malformed(h, "v1: bad destination port");
	h->family = family;
	set_endpoint(&h->source, family, src, sport);
	set_endpoint(&h->destination, family, dst, dport);
	return PROXY_OK;
}

/* Section 2.1: "PROXY" SP ("TCP4" | "TCP6") SP SRC SP DST SP SPORT SP DPORT CRLF. */
static enum proxy_status
parse_v1(const unsigned char *p, size_t n, struct proxy_header *h)
{
	const unsigned char *line = p + V1_PREFIX_LEN;
	enum proxy_status st;
	size_t end, len, word;

	if (!prefix_matches(p, n, V1_PREFIX, V1_PREFIX_LEN))
		return malformed(h, "not a PROXY header");
	if ((st = v1_find_end(p, n, &end, h)) != PROXY_OK)
		return st;
	h->version = 1;
	h->len = end + 2;
	len = end - V1_PREFIX_LEN;
	for (word = 0; word < len && line[word] != ' '; word++)
		;
	/* "the receiver must ignore anything presented before the CRLF" */
	if (word == 7 && memcmp(line, "UNKNOWN", 7) == 0) {
		h->command = PROXY_COMMAND_UNKNOWN;
		h->what = "UNKNOWN";
		return PROXY_OK;
	}
	h->command = PROXY_COMMAND_PROXY;
	if (word == 4 && memcmp(line, "TCP4", 4) == 0 && word < len) {
		h->what = "TCP4";
		return v1_endpoints(line + 5, len - 5, AF_INET, h);
	}
	if (word == 4 && memcmp(line, "TCP6", 4) == 0 && word < len) {
		h->what = "TCP6";
		return v1_endpoints(line + 5, len - 5, AF_INET6, h);
	}
	return malformed(h, "v1: protocol is not TCP4, TCP6 or UNKNOWN");
}

/* A port as it travels: network byte order, the order sin_port keeps. */
static in_port_t
wire_port(const unsigned char *p)
{
	in_port_t port;

	memcpy(&port, p, sizeof(port));
	return port;
}

/* Section 2.2: TLVs (type, 16-bit length, value) must tile the rest exactly. */
static bool
v2_tlvs_fit(const unsigned char *p, size_t n)
{
	size_t i = 0, vlen;

	while (i < n) {
		if (n - i < 3)
			return false;
		vlen = (size_t)p[i + 1] << 8 | p[i + 2];
		if (vlen > n - i - 3)
			return false;
		i += 3 + vlen;
	}
	return true;
}

/* The address block and TLVs (p[0..n)) of a PROXY command. */
static enum proxy_status
v2_addresses(const unsigned char *p, size_t n, unsigned family, unsigned transport,
    struct proxy_header *h)
{
	h->what = v2_names[family][transport];
	/* Unspecified: "the receiver should ignore address information". */
	if (family == 0 || transport == 0)
		return PROXY_OK;
	if (n < v2_block[family])
		return malformed(h, "v2: address block cut short");
	/* Like HAProxy, TLVs we do not use must still be well formed. */
	if (!v2_tlvs_fit(p + v2_block[family], n - v2_block[family]))
		return malformed(h, "v2: TLVs do not fit the header");
	if (transport != 1 || family == 3)
		return PROXY_OK;	/* UDP, AF_UNIX: the connection's own peer */
	if (family == 1) {
		h->family = AF_INET;
		set_endpoint(&h->source, AF_INET, p, wire_port(p + 8));
		set_endpoint(&h->destination, AF_INET, p + 4, wire_port(p + 10));
	} else {
		h->family = AF_INET6;
		set_endpoint(&h->source, AF_INET6, p, wire_port(p + 32));
		set_endpoint(&h->destination, AF_INET6, p + 16, wire_port(p + 34));
	}
	return PROXY_OK;
}

/*
 * Section 2.2: signature, version 2 and a command in the 13th byte, the
 * family and transport nibbles in the 14th, then a 16-bit length. Each
 * fixed byte is judged as soon as it arrives.
 */
static enum proxy_status
parse_v2(const unsigned char *p, size_t n, struct proxy_header *h)
{
	unsigned family, transport;
	size_t length;

	if (!prefix_matches(p, n, v2_signature, V2_SIGNATURE_LEN))
		return malformed(h, "not a PROXY header");
	if (n > 12 && p[12] >> 4 != 2)
		return malformed(h, "v2: version is not 2");
	if (n > 12 && (p[12] & 0x0f) > 1)
		return malformed(h, "v2: command is neither LOCAL nor PROXY");
	if (n > 13 && p[13] >> 4 > 3)
		return malformed(h, "v2: unknown address family");
	if (n > 13 && (p[13] & 0x0f) > 2)
		return malformed(h, "v2: unknown transport");
	if (n < PROXY_V2_FIXED)
		return PROXY_NEED_MORE;
	family = p[13] >> 4;
	transport = p[13] & 0x0f;
	length = (size_t)p[14] << 8 | p[15];
	/* Our bound, not the spec's: a balancer sends a few TLVs at most. */
	if (length > v2_block[family] + PROXY_V2_TLV_MAX)
		return malformed(h, "v2: longer than its addresses and 512 octets of TLVs");
	if (n < PROXY_V2_FIXED + length)
		return PROXY_NEED_MORE;
	h->version = 2;
	h->len = PROXY_V2_FIXED + length;
	if ((p[12] & 0x0f) == 0) {
		/* LOCAL: "discard the protocol block including the family". */
		h->command = PROXY_COMMAND_LOCAL;
		h->what = "LOCAL";
		return PROXY_OK;
	}
	h->command = PROXY_COMMAND_PROXY;
	return v2_addresses(p + PROXY_V2_FIXED, length, family, transport, h);
}

enum proxy_status
proxy_parse(const unsigned char *p, size_t n, enum proxy_mode mode, struct proxy_header *h)
{
	bool v1 = mode == PROXY_V1 || mode == PROXY_ANY;
	bool v2 = mode == PROXY_V2 || mode == PROXY_ANY;

	memset(h, 0, sizeof(*h));
	h->family = AF_UNSPEC;
	if (n == 0)
		return PROXY_NEED_MORE;
	/* The first byte tells the versions apart: 'P' or CR. */
	if (p[0] == V1_PREFIX[0]) {
		if (!v1)
			return malformed(h, prefix_matches(p, n, V1_PREFIX, V1_PREFIX_LEN) ?
			    "a v1 header where only v2 is accepted" : "not a PROXY header");
		return parse_v1(p, n, h);
	}
	if (p[0] == v2_signature[0]) {
		if (!v2)
			return malformed(h, prefix_matches(p, n, v2_signature, V2_SIGNATURE_LEN) ?
			    "a v2 header where only v1 is accepted" : "not a PROXY header");
		return parse_v2(p, n, h);
	}
	return malformed(h, "not a PROXY header");
}

static enum proxy_read_result
read_failed(struct proxy_header *h, enum proxy_read_result res, const char *reason)
{
	h->reason = reason;
	return res;
}

/*
 * 1 when fd has bytes (or EOF) before the deadline, 0 at the deadline, -1 on
 * error. ppoll sets the wait mask and waits in one step, so a stop signal
 * the caller blocked cannot slip in just before the wait and be missed.
 */
static int
wait_readable(int fd, long long deadline_ms, const sigset_t *wait_mask)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };
	long long left = deadline_ms - now_ms();
	struct timespec ts;

	if (left <= 0)
		return 0;
	ts.tv_sec = (time_t)(left / 1000);
	ts.tv_nsec = (long)(left % 1000) * 1000000;
	return ppoll(&pfd, 1, &ts, wait_mask);
}

/* Take n bytes that a peek has shown are there. */
static bool
consume(int fd, unsigned char *p, size_t n)
{
	ssize_t got;

	while (n > 0) {
		got = recv(fd, p, n, 0);
		if (got == -1 && errno == EINTR)
			continue;
		if (got <= 0)
			return false;
		p += got;
		n -= (size_t)got;
	}
	return true;
}

/*
 * Peek at what has arrived and consume only what is surely header: a
 * prefix the parser wants more of is all header (proxy_parse's promise),
 * so the next wait is for new bytes, not for the ones already seen; a
 * complete header is consumed to its last byte and not one further.
 */
enum proxy_read_result
proxy_read(int fd, enum proxy_mode mode, int timeout_ms, const sigset_t *wait_mask,
    struct proxy_header *h)
{
	unsigned char buf[PROXY_HEADER_MAX];
	long long deadline = now_ms() + timeout_ms;
	size_t have = 0;
	struct stat st;
	ssize_t got;
	int ready;

	memset(h, 0, sizeof(*h));
	if (fstat(fd, &st) == -1 || !S_ISSOCK(st.st_mode))
		return read_failed(h, PROXY_READ_ERROR, "not a socket");
	for (;;) {
		if ((ready = wait_readable(fd, deadline, wait_mask)) == 0)
			return read_failed(h, PROXY_READ_TIMEOUT, "no complete header in time");
		if (ready == -1)
			return read_failed(h, PROXY_READ_ERROR, errno == EINTR ?
			    "interrupted by a signal" : "poll failed");
		got = recv(fd, buf + have, sizeof(buf) - have, MSG_PEEK);
		if (got == -1 && errno == EINTR)
			return read_failed(h, PROXY_READ_ERROR, "interrupted by a signal");
		if (got == -1)
			return read_failed(h, PROXY_READ_ERROR, "read failed");
		if (got == 0 && have == 0)
			return read_failed(h, PROXY_READ_EOF, "closed before the header");
		if (got == 0)
			return read_failed(h, PROXY_READ_TRUNCATED, "closed inside the header");
		switch (proxy_parse(buf, have + (size_t)got, mode, h)) {
		case PROXY_MALFORMED:
			return PROXY_READ_MALFORMED;
		case PROXY_OK:
			if (!consume(fd, buf + have, h->len - have))
				return read_failed(h, PROXY_READ_ERROR, "read failed");
			return PROXY_READ_OK;
		case PROXY_NEED_MORE:
			if (!consume(fd, buf + have, (size_t)got))
				return read_failed(h, PROXY_READ_ERROR, "read failed");
			have += (size_t)got;
			break;
		}
		if (have == sizeof(buf))	/* the parser never lets this happen */
			return read_failed(h, PROXY_READ_MALFORMED, "header too long");
	}
}

int
proxy_parse_mode(const char *text, enum proxy_mode *mode)
{
	static const struct { const char *name; enum proxy_mode mode; } modes[] = {
		{ "no", PROXY_OFF }, { "v1", PROXY_V1 }, { "v2", PROXY_V2 }, { "any", PROXY_ANY },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (strcmp(text, modes[i].name) == 0) {
			*mode = modes[i].mode;
			return 0;
		}
	}
	return -1;
}

/* ::ffff:a.b.c.d, compared bytewise: addr may be unaligned. */
static bool
v4_mapped(const unsigned char *a)
{
	static const unsigned char head[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, head, sizeof(head)) == 0;
}

/* Do a and b agree in their first bits bits? */
static bool
prefix_equal(const unsigned char *a, const unsigned char *b, unsigned bits)
{
	size_t whole = bits / 8;
	unsigned char mask = (unsigned char)(0xff << (8 - bits % 8));

	if (memcmp(a, b, whole) != 0)
		return false;
	return bits % 8 == 0 || (a[whole] & mask) == (b[whole] & mask);
}

/*
 * Postfix refuses "192.0.2.1/24" in its CIDR tables ("non-null host
 * address bits"): the writer meant a network or a host, and we cannot
 * tell which. Say which network it would be.
 */
static int
check_host_bits(const struct proxy_net *net, const char *text, char *error, size_t size)
{
	unsigned char masked[16] = { 0 };
	size_t len = net->family == AF_INET ? 4 : 16;
	char ip[INET6_ADDRSTRLEN];

	memcpy(masked, net->addr, net->prefix / 8);
	if (net->prefix % 8 != 0)
		masked[net->prefix / 8] = net->addr[net->prefix / 8] &
		    (unsigned char)(0xff << (8 - net->prefix % 8));
	if (memcmp(masked, net->addr, len) == 0)
		return 0;
	if (inet_ntop(net->family, masked, ip, sizeof(ip)) == NULL)
		ip[0] = '\0';
	snprintf(error, size, "proxy-from %.60s has bits set beyond its prefix (%s/%u?)",
	    text, ip, net->prefix);
	return -1;
}

int
proxy_parse_net(const char *text, struct proxy_net *net, char *error, size_t size)
{
	const char *slash = strchr(text, '/');
	size_t alen = slash != NULL ? (size_t)(slash - text) : strlen(text);
	char addr[INET6_ADDRSTRLEN];
	unsigned max;

	memset(net, 0, sizeof(*net));
	if (alen > 0 && alen < sizeof(addr)) {
		memcpy(addr, text, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET, addr, net->addr) == 1)
			net->family = AF_INET;
		else if (inet_pton(AF_INET6, addr, net->addr) == 1)
			net->family = AF_INET6;
	}
	if (net->family == 0) {
		snprintf(error, size, "proxy-from %.60s: not an IPv4 or IPv6 address", text);
		return -1;
	}
	max = net->prefix = net->family == AF_INET ? 32 : 128;
	if (slash != NULL && !plain_number((const unsigned char *)slash + 1, strlen(slash + 1), max,
	    &net->prefix)) {
		snprintf(error, size, "proxy-from %.60s: the prefix is a number from 0 to %u",
		    text, max);
		return -1;
	}
	if (check_host_bits(net, text, error, size) == -1)
		return -1;
	/* ::ffff:192.0.2.0/120 is 192.0.2.0/24: peers are matched as IPv4. */
	if (net->family == AF_INET6 && v4_mapped(net->addr) && net->prefix >= 96) {
		memmove(net->addr, net->addr + 12, 4);
		memset(net->addr + 4, 0, 12);
		net->family = AF_INET;
		net->prefix -= 96;
	}
	return 0;
}

/* The family and address bytes of a peer, IPv4-mapped IPv6 as IPv4. */
static bool
peer_address(const struct sockaddr *sa, int *family, const unsigned char **addr)
{
	if (sa->sa_family == AF_INET) {
		*family = AF_INET;
		*addr = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	*addr = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
	*family = AF_INET6;
	if (v4_mapped(*addr)) {
		*family = AF_INET;
		*addr += 12;
	}
	return true;
}

bool
proxy_match_net(const struct proxy_net *nets, size_t count, const struct sockaddr *peer)
{
	const unsigned char *addr;
	int family;

	if (!peer_address(peer, &family, &addr))
		return false;
	for (size_t i = 0; i < count; i++)
		if (nets[i].family == family && prefix_equal(nets[i].addr, addr, nets[i].prefix))
			return true;
	return false;
}

bool
proxy_format_address(int family, const void *addr, char *peer, size_t psize,
    char *literal, size_t lsize)
{
	const char *tag = family == AF_INET6 ? "IPv6:" : "";
	char ip[INET6_ADDRSTRLEN];
	int n, m;

	if (family == AF_INET6 && v4_mapped(addr)) {
		family = AF_INET;
		addr = (const unsigned char *)addr + 12;
		tag = "";
	}
	if ((family != AF_INET && family != AF_INET6) ||
	    inet_ntop(family, addr, ip, sizeof(ip)) == NULL)
		return false;
	n = snprintf(peer, psize, "%s%s", tag, ip);
	m = snprintf(literal, lsize, "[%s%s]", tag, ip);
	if (n < 0 || (size_t)n >= psize || m < 0 || (size_t)m >= lsize) {
		if (psize > 0)
			peer[0] = '\0';	/* cut short, it would name another host */
		if (lsize > 0)
			literal[0] = '\0';
		return false;
	}
	return true;
}

bool
proxy_format_peer(const struct sockaddr *sa, char *peer, size_t psize, char *literal,
    size_t lsize)
{
	const unsigned char *addr;
	int family;

	if (!peer_address(sa, &family, &addr))
		return false;
	return proxy_format_address(family, addr, peer, psize, literal, lsize);
}
