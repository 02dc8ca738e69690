/* check_proxy.c: PROXY headers v1 and v2, read from sockets; proxy-from. */
#define _GNU_SOURCE	/* SIOCOUTQ */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "proxy.h"

#define SIG "\r\n\r\n\0\r\nQUIT\n"
#define EHLO "EHLO x\r\n"

static const enum proxy_mode modes[] = { PROXY_V1, PROXY_V2, PROXY_ANY };

/* ---- building v2 headers ------------------------------------------------ */

/* 192.0.2.1:56324 -> 198.51.100.2:25 and 2001:db8::1:56324 -> 2001:db8::2:25 */
static const unsigned char inet_block[12] = {
	192, 0, 2, 1, 198, 51, 100, 2, 0xdc, 0x04, 0x00, 0x19
};
static const unsigned char inet6_block[36] = {
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
	0xdc, 0x04, 0x00, 0x19
};

/* NOOP, ALPN "smtp", AUTHORITY "mx.example", UNIQUE_ID of 0 octets */
static const unsigned char some_tlvs[] = {
	0x04, 0x00, 0x02, 'x', 'x', 0x01, 0x00, 0x04, 's', 'm', 't', 'p',
	0x02, 0x00, 0x0a, 'm', 'x', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x05, 0x00, 0x00
};

/*
 * A v2 header: ver_cmd, fam, then addr_len octets of address block (the
 * test blocks above for 0x11/0x21, else filler), then tlvs; the length
 * field says addr_len + tlv_len unless declared is not -1.
 */
static size_t
v2(unsigned char *buf, unsigned char ver_cmd, unsigned char fam, size_t addr_len,
    const unsigned char *tlvs, size_t tlv_len, long declared)
{
	size_t len = declared >= 0 ? (size_t)declared : addr_len + tlv_len;

	memcpy(buf, SIG, 12);
	buf[12] = ver_cmd;
	buf[13] = fam;
	buf[14] = (unsigned char)(len >> 8);
	buf[15] = (unsigned char)len;
	memset(buf + 16, 'u', addr_len);
	if ((fam >> 4) == 1 && addr_len >= sizeof(inet_block))
		memcpy(buf + 16, inet_block, sizeof(inet_block));
	if ((fam >> 4) == 2 && addr_len >= sizeof(inet6_block))
		memcpy(buf + 16, inet6_block, sizeof(inet6_block));
	if (tlv_len > 0)
		memcpy(buf + 16 + addr_len, tlvs, tlv_len);
	return 16 + addr_len + tlv_len;
}

/* One NOOP TLV of exactly n octets (n >= 3) in buf. */
static const unsigned char *
noop_tlv(unsigned char *buf, size_t n)
{
	buf[0] = 0x04;
	buf[1] = (unsigned char)((n - 3) >> 8);
	buf[2] = (unsigned char)(n - 3);
	memset(buf + 3, 'n', n - 3);
	return buf;
}

/* ---- what a parse says --------------------------------------------------- */

static void
endpoint_text(const struct sockaddr_storage *ss, char *text, size_t size, unsigned *port)
{
	const void *addr;

	if (ss->ss_family == AF_INET) {
		addr = &((const struct sockaddr_in *)ss)->sin_addr;
		*port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	} else {
		addr = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		*port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	}
	ck_assert_ptr_nonnull(inet_ntop(ss->ss_family, addr, text, (socklen_t)size));
}

struct expect {
	int	version;
	enum proxy_command command;
	int	family;
	const char *what;
	const char *src, *dst;	/* for AF_INET / AF_INET6 */
	unsigned sport, dport;
};

static void
check_header(const struct proxy_header *h, size_t len, const struct expect *e)
{
	char text[INET6_ADDRSTRLEN];
	unsigned port;

	ck_assert_uint_eq(h->len, len);
	ck_assert_int_eq(h->version, e->version);
	ck_assert_int_eq(h->command, e->command);
	ck_assert_int_eq(h->family, e->family);
	ck_assert_str_eq(h->what, e->what);
	if (e->family == AF_UNSPEC)
		return;
	ck_assert_int_eq(h->source.ss_family, e->family);
	endpoint_text(&h->source, text, sizeof(text), &port);
	ck_assert_str_eq(text, e->src);
	ck_assert_uint_eq(port, e->sport);
	endpoint_text(&h->destination, text, sizeof(text), &port);
	ck_assert_str_eq(text, e->dst);
	ck_assert_uint_eq(port, e->dport);
}

/*
 * A valid header: every proper prefix wants more (in every mode that
 * takes its version), the whole parses as expected, and so it does with
 * the client's EHLO after it, which is not part of it.
 */
static void
check_valid(const unsigned char *p, size_t len, const struct expect *e)
{
	unsigned char buf[PROXY_HEADER_MAX + 64];
	struct proxy_header h;

	ck_assert_uint_le(len, PROXY_HEADER_MAX);
	memcpy(buf, p, len);
	memcpy(buf + len, EHLO, strlen(EHLO));
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		if ((modes[m] == PROXY_V1 && e->version != 1) ||
		    (modes[m] == PROXY_V2 && e->version != 2))
			continue;
		for (size_t k = 0; k < len; k++)
			ck_assert_msg(proxy_parse(buf, k, modes[m], &h) == PROXY_NEED_MORE,
			    "prefix of %zu of %zu octets: %s", k, len, h.reason);
		ck_assert_msg(proxy_parse(buf, len, modes[m], &h) == PROXY_OK, "%s", h.reason);
		check_header(&h, len, e);
		ck_assert_int_eq(proxy_parse(buf, len + strlen(EHLO), modes[m], &h), PROXY_OK);
		check_header(&h, len, e);
	}
}

/*
 * A malformed header: MALFORMED with a reason, with or without bytes after
 * it, and no prefix of it is ever OK.
 */
static void
check_malformed(const unsigned char *p, size_t len, enum proxy_mode mode, const char *reason)
{
	unsigned char buf[2048];
	struct proxy_header h;
	enum proxy_status st;

	ck_assert_uint_le(len + strlen(EHLO), sizeof(buf));
	memcpy(buf, p, len);
	memcpy(buf + len, EHLO, strlen(EHLO));
	for (size_t k = 0; k < len; k++) {
		st = proxy_parse(buf, k, mode, &h);
		ck_assert_msg(st != PROXY_OK, "prefix of %zu of %zu octets is OK", k, len);
	}
	ck_assert_int_eq(proxy_parse(buf, len, mode, &h), PROXY_MALFORMED);
	ck_assert_ptr_nonnull(h.reason);
	if (reason != NULL)
		ck_assert_str_eq(h.reason, reason);
	ck_assert_int_eq(proxy_parse(buf, len + strlen(EHLO), mode, &h), PROXY_MALFORMED);
}

static void
check_malformed_text(const char *text, enum proxy_mode mode, const char *reason)
{
	check_malformed((const unsigned char *)text, strlen(text), mode, reason);
}

/* ---- v1 ---------------------------------------------------------------- */

static const struct v1_valid {
	const char *line;
	struct expect e;
} v1_valid[] = {
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET, "TCP4", "192.0.2.1", "198.51.100.2", 56324, 25 } },
	{ "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET, "TCP4", "255.255.255.255", "255.255.255.255",
	    65535, 65535 } },
	{ "PROXY TCP4 0.0.0.0 10.0.0.1 0 1\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET, "TCP4", "0.0.0.0", "10.0.0.1", 0, 1 } },
	{ "PROXY TCP6 2001:db8::1 2001:DB8::2 1024 587\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET6, "TCP6", "2001:db8::1", "2001:db8::2", 1024, 587 } },
	{ "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET6, "TCP6", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	    "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, 65535 } },
	/* HAProxy writes a mixed pair this way. */
	{ "PROXY TCP6 ::ffff:192.0.2.1 ::1 40000 25\r\n",
	  { 1, PROXY_COMMAND_PROXY, AF_INET6, "TCP6", "::ffff:192.0.2.1", "::1", 40000, 25 } },
	{ "PROXY UNKNOWN\r\n", { 1, PROXY_COMMAND_UNKNOWN, AF_UNSPEC, "UNKNOWN", 0, 0, 0, 0 } },
	/* The spec's worst case: 107 octets, the rest of UNKNOWN ignored. */
	{ "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
	  { 1, PROXY_COMMAND_UNKNOWN, AF_UNSPEC, "UNKNOWN", 0, 0, 0, 0 } },
	{ "PROXY UNKNOWN whatever \x01\xff\r\n",
	  { 1, PROXY_COMMAND_UNKNOWN, AF_UNSPEC, "UNKNOWN", 0, 0, 0, 0 } },
};

START_TEST(v1_valid_headers)
{
	const struct v1_valid *v = &v1_valid[_i];

	check_valid((const unsigned char *)v->line, strlen(v->line), &v->e);
}
END_TEST

START_TEST(v1_longest_line_is_107_octets)
{
	ck_assert_uint_eq(strlen(v1_valid[7].line), 107);
}
END_TEST

static const struct v1_bad {
	const char *line;
	const char *reason;
} v1_bad[] = {
	{ "PROXY UNKNOWN\n", "v1: a bare LF" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "v1: a bare LF" },
	{ "PROXY TCP4 192.0.2.1\n198.51.100.2 1 2\r\n", "v1: a bare LF" },
	{ "PROXY UNKNOWN\rx\r\n", "v1: a bare CR" },
	{ "PROXY UNKNOWN\r\r\n", "v1: a bare CR" },
	{ "PROXY TCP4 01.2.3.4 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 1.2.3 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 1.2.3.4.5 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 256.1.1.1 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 2001:db8::1 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 0x7f.0.0.1 198.51.100.2 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.x 1 2\r\n", "v1: bad destination address" },
	{ "PROXY TCP6 192.0.2.1 ::1 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP6 ::1 2001:db8::1%eth0 1 2\r\n", "v1: bad destination address" },
	{ "PROXY TCP6 00001:: ::1 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP6 1::2::3 ::1 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP6 [::1] ::1 1 2\r\n", "v1: bad source address" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 65536 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 99999 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 123456 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 +1 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 -1 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 025 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 0x19 25\r\n", "v1: bad source port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 25 65536\r\n", "v1: bad destination port" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 25 00\r\n", "v1: bad destination port" },
	{ "PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
	  "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
	  "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
	  "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
	  "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4 192.0.2.1\t198.51.100.2 1 2\r\n", "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4 \r\n", "v1: not four single-spaced fields after the protocol" },
	{ "PROXY TCP4\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY TCP5 192.0.2.1 198.51.100.2 1 2\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY UNKNOWNX\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY \r\n", "v1: protocol is not TCP4, TCP6 or UNKNOWN" },
	{ "PROXY\r\n", "not a PROXY header" },
	{ "PROXYTCP4\r\n", "not a PROXY header" },
	{ "proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n", "not a PROXY header" },
	{ "PRoXY UNKNOWN\r\n", "not a PROXY header" },
	{ "EHLO client.example\r\n", "not a PROXY header" },
	{ "GET / HTTP/1.0\r\n", "not a PROXY header" },
	{ " PROXY UNKNOWN\r\n", "not a PROXY header" },
};

START_TEST(v1_malformed_headers)
{
	check_malformed_text(v1_bad[_i].line, PROXY_V1, v1_bad[_i].reason);
	check_malformed_text(v1_bad[_i].line, PROXY_ANY, v1_bad[_i].reason);
}
END_TEST

START_TEST(v1_nul_in_an_address_is_malformed)
{
	static const char line[] = "PROXY TCP4 192.0.2.1\0 198.51.100.2 1 2\r\n";

	check_malformed((const unsigned char *)line, sizeof(line) - 1, PROXY_ANY,
	    "v1: bad source address");
}
END_TEST

/* 108 octets: the CRLF would end past the 107th. */
START_TEST(v1_over_107_octets_is_malformed)
{
	char line[200];
	struct proxy_header h;

	memcpy(line, "PROXY UNKNOWN ", 14);
	memset(line + 14, 'f', 92);
	memcpy(line + 106, "\r\n", 3);
	ck_assert_uint_eq(strlen(line), 108);
	check_malformed_text(line, PROXY_ANY, "v1: longer than 107 octets");
	/* One octet shorter is the longest line allowed. */
	memcpy(line + 105, "\r\n", 3);
	ck_assert_int_eq(proxy_parse((unsigned char *)line, 107, PROXY_ANY, &h), PROXY_OK);
	ck_assert_uint_eq(h.len, 107);
	/* No CR at all: malformed once 107 octets are in, not before. */
	memset(line + 14, 'f', 150);
	ck_assert_int_eq(proxy_parse((unsigned char *)line, 106, PROXY_ANY, &h), PROXY_NEED_MORE);
	ck_assert_int_eq(proxy_parse((unsigned char *)line, 107, PROXY_ANY, &h), PROXY_MALFORMED);
	ck_assert_str_eq(h.reason, "v1: longer than 107 octets");
}
END_TEST

START_TEST(v1_where_v2_is_expected)
{
	check_malformed_text("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n", PROXY_V2,
	    "a v1 header where only v2 is accepted");
	check_malformed_text("PROXY UNKNOWN\r\n", PROXY_V2, "a v1 header where only v2 is accepted");
	check_malformed_text("PROXY UNKNOWN\r\n", PROXY_OFF, NULL);
}
END_TEST

/* ---- v2 ---------------------------------------------------------------- */

static const struct v2_valid {
	const char *name;
	unsigned char ver_cmd, fam;
	size_t	addr_len;
	size_t	tlvs;		/* 0: none; 1: some_tlvs; otherwise one NOOP of this size */
	struct expect e;
} v2_valid[] = {
	{ "PROXY TCP4", 0x21, 0x11, 12, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_INET, "TCP4", "192.0.2.1", "198.51.100.2", 56324, 25 } },
	{ "PROXY TCP6", 0x21, 0x21, 36, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_INET6, "TCP6", "2001:db8::1", "2001:db8::2", 56324, 25 } },
	{ "PROXY TCP4 with TLVs", 0x21, 0x11, 12, 1,
	  { 2, PROXY_COMMAND_PROXY, AF_INET, "TCP4", "192.0.2.1", "198.51.100.2", 56324, 25 } },
	{ "PROXY TCP6 with 512 octets of TLVs", 0x21, 0x21, 36, 512,
	  { 2, PROXY_COMMAND_PROXY, AF_INET6, "TCP6", "2001:db8::1", "2001:db8::2", 56324, 25 } },
	{ "LOCAL", 0x20, 0x00, 0, 0, { 2, PROXY_COMMAND_LOCAL, AF_UNSPEC, "LOCAL", 0, 0, 0, 0 } },
	/* LOCAL: "must not assume zero is presented", and the family is ignored. */
	{ "LOCAL with addresses", 0x20, 0x11, 12, 0,
	  { 2, PROXY_COMMAND_LOCAL, AF_UNSPEC, "LOCAL", 0, 0, 0, 0 } },
	{ "LOCAL with TLVs", 0x20, 0x00, 0, 1,
	  { 2, PROXY_COMMAND_LOCAL, AF_UNSPEC, "LOCAL", 0, 0, 0, 0 } },
	{ "PROXY UNSPEC", 0x21, 0x00, 0, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UNSPEC", 0, 0, 0, 0 } },
	{ "PROXY UNSPEC with 512 octets", 0x21, 0x00, 0, 512,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UNSPEC", 0, 0, 0, 0 } },
	{ "PROXY INET, transport unspecified", 0x21, 0x10, 7, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "INET", 0, 0, 0, 0 } },
	{ "PROXY UDP4", 0x21, 0x12, 12, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UDP4", 0, 0, 0, 0 } },
	{ "PROXY UDP6", 0x21, 0x22, 36, 1,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UDP6", 0, 0, 0, 0 } },
	{ "PROXY UNIX stream", 0x21, 0x31, 216, 0,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UNIX-STREAM", 0, 0, 0, 0 } },
	{ "PROXY UNIX datagram, the longest header", 0x21, 0x32, 216, 512,
	  { 2, PROXY_COMMAND_PROXY, AF_UNSPEC, "UNIX-DGRAM", 0, 0, 0, 0 } },
};

static size_t
build_valid(unsigned char *buf, const struct v2_valid *v)
{
	unsigned char tlv[PROXY_V2_TLV_MAX];

	if (v->tlvs == 0)
		return v2(buf, v->ver_cmd, v->fam, v->addr_len, NULL, 0, -1);
	if (v->tlvs == 1)
		return v2(buf, v->ver_cmd, v->fam, v->addr_len, some_tlvs, sizeof(some_tlvs), -1);
	return v2(buf, v->ver_cmd, v->fam, v->addr_len, noop_tlv(tlv, v->tlvs), v->tlvs, -1);
}

START_TEST(v2_valid_headers)
{
	unsigned char buf[PROXY_HEADER_MAX];
	size_t len = build_valid(buf, &v2_valid[_i]);

	check_valid(buf, len, &v2_valid[_i].e);
}
END_TEST

START_TEST(v2_longest_header_is_the_maximum)
{
	unsigned char buf[PROXY_HEADER_MAX];

	ck_assert_uint_eq(build_valid(buf, &v2_valid[13]), PROXY_HEADER_MAX);
}
END_TEST

static const struct v2_bad {
	const char *name;
	unsigned char ver_cmd, fam;
	size_t	addr_len;
	long	declared;	/* -1: the real length */
	const char *tlvs;	/* NULL: none */
	size_t	tlv_len;
	const char *reason;
} v2_bad[] = {
	{ "version 1", 0x11, 0x11, 12, -1, NULL, 0, "v2: version is not 2" },
	{ "version 3", 0x31, 0x11, 12, -1, NULL, 0, "v2: version is not 2" },
	{ "version 0", 0x01, 0x11, 12, -1, NULL, 0, "v2: version is not 2" },
	{ "command 2", 0x22, 0x11, 12, -1, NULL, 0, "v2: command is neither LOCAL nor PROXY" },
	{ "command 15", 0x2f, 0x11, 12, -1, NULL, 0, "v2: command is neither LOCAL nor PROXY" },
	{ "family 4", 0x21, 0x41, 12, -1, NULL, 0, "v2: unknown address family" },
	{ "family 15", 0x21, 0xf1, 12, -1, NULL, 0, "v2: unknown address family" },
	{ "family 4 in LOCAL", 0x20, 0x40, 0, -1, NULL, 0, "v2: unknown address family" },
	{ "transport 3", 0x21, 0x13, 12, -1, NULL, 0, "v2: unknown transport" },
	{ "transport 15", 0x21, 0x2f, 36, -1, NULL, 0, "v2: unknown transport" },
	{ "UNSPEC over 512", 0x21, 0x00, 513, -1, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "LOCAL over 512", 0x20, 0x00, 513, -1, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "TCP4 over 12 + 512", 0x21, 0x11, 12 + 513, -1, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "TCP6 over 36 + 512", 0x21, 0x21, 36 + 513, -1, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "UNIX over 216 + 512", 0x21, 0x31, 216 + 513, -1, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "length 65535", 0x21, 0x11, 12, 65535, NULL, 0,
	  "v2: longer than its addresses and 512 octets of TLVs" },
	{ "TCP4 block cut short", 0x21, 0x11, 11, -1, NULL, 0, "v2: address block cut short" },
	{ "TCP4 without addresses", 0x21, 0x11, 0, -1, NULL, 0, "v2: address block cut short" },
	{ "TCP6 block cut short", 0x21, 0x21, 35, -1, NULL, 0, "v2: address block cut short" },
	{ "TCP6 with a TCP4 block", 0x21, 0x21, 12, -1, NULL, 0, "v2: address block cut short" },
	{ "UNIX block cut short", 0x21, 0x31, 215, -1, NULL, 0, "v2: address block cut short" },
	{ "a TLV past the end", 0x21, 0x11, 12, -1, "\x04\x00\x05xxxx", 7,
	  "v2: TLVs do not fit the header" },
	{ "one stray octet", 0x21, 0x11, 12, -1, "\x04", 1, "v2: TLVs do not fit the header" },
	{ "half a TLV header", 0x21, 0x21, 36, -1, "\x04\x00\x00\x01\x00", 5,
	  "v2: TLVs do not fit the header" },
};

START_TEST(v2_malformed_headers)
{
	const struct v2_bad *b = &v2_bad[_i];
	unsigned char buf[1024];
	size_t len;

	len = v2(buf, b->ver_cmd, b->fam, b->addr_len, (const unsigned char *)b->tlvs,
	    b->tlv_len, b->declared);
	check_malformed(buf, len, PROXY_V2, b->reason);
	check_malformed(buf, len, PROXY_ANY, b->reason);
}
END_TEST

/* A wrong octet anywhere in the signature is not a PROXY header. */
START_TEST(v2_every_signature_octet_counts)
{
	unsigned char buf[64];
	size_t len = v2(buf, 0x21, 0x11, 12, NULL, 0, -1);

	buf[_i] ^= 0x40;
	check_malformed(buf, len, PROXY_ANY, "not a PROXY header");
}
END_TEST

START_TEST(v2_where_v1_is_expected)
{
	unsigned char buf[64];
	size_t len = v2(buf, 0x21, 0x11, 12, NULL, 0, -1);

	check_malformed(buf, len, PROXY_V1, "a v2 header where only v1 is accepted");
	len = v2(buf, 0x20, 0x00, 0, NULL, 0, -1);
	check_malformed(buf, len, PROXY_V1, "a v2 header where only v1 is accepted");
	check_malformed(buf, len, PROXY_OFF, NULL);
}
END_TEST

/* Declared lengths right at the bound parse; one more is malformed. */
START_TEST(v2_length_bound_is_exact)
{
	static const unsigned char fams[] = { 0x00, 0x11, 0x21, 0x31 };
	static const size_t blocks[] = { 0, 12, 36, 216 };
	unsigned char buf[PROXY_HEADER_MAX + 8], tlv[PROXY_V2_TLV_MAX];
	struct proxy_header h;
	size_t len;

	for (size_t i = 0; i < 4; i++) {
		len = v2(buf, 0x21, fams[i], blocks[i], noop_tlv(tlv, 512), 512, -1);
		ck_assert_int_eq(proxy_parse(buf, len, PROXY_V2, &h), PROXY_OK);
		ck_assert_uint_eq(h.len, 16 + blocks[i] + 512);
		buf[14] = (unsigned char)((blocks[i] + 513) >> 8);
		buf[15] = (unsigned char)(blocks[i] + 513);
		/* Judged from the 16 fixed octets alone: nothing more is awaited. */
		ck_assert_int_eq(proxy_parse(buf, 16, PROXY_V2, &h), PROXY_MALFORMED);
	}
}
END_TEST

START_TEST(nothing_yet_wants_more)
{
	struct proxy_header h;

	ck_assert_int_eq(proxy_parse((const unsigned char *)"", 0, PROXY_ANY, &h),
	    PROXY_NEED_MORE);
	ck_assert_int_eq(proxy_parse((const unsigned char *)"P", 1, PROXY_V1, &h),
	    PROXY_NEED_MORE);
	ck_assert_int_eq(proxy_parse((const unsigned char *)"\r", 1, PROXY_V2, &h),
	    PROXY_NEED_MORE);
	/* An SMTP client speaking first is refused at its first octet. */
	ck_assert_int_eq(proxy_parse((const unsigned char *)"E", 1, PROXY_ANY, &h),
	    PROXY_MALFORMED);
}
END_TEST

/* ---- reading from a socket ----------------------------------------------- */

static void
tcp_pair(int fds[2])
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(l, 1), 0);
	ck_assert_int_eq(getsockname(l, (struct sockaddr *)&sin, &len), 0);
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_eq(connect(fds[1], (struct sockaddr *)&sin, sizeof(sin)), 0);
	fds[0] = accept(l, NULL, NULL);
	ck_assert_int_ge(fds[0], 0);
	close(l);
}

/* fds[0] is ours to read, fds[1] the balancer's; _i & 1: loopback TCP. */
static void
open_pair(int fds[2], int tcp)
{
	if (tcp)
		tcp_pair(fds);
	else
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
}

static void
send_all(int fd, const void *p, size_t n)
{
	ck_assert_int_eq(send(fd, p, n, 0), (ssize_t)n);
}

/* Everything left in the socket after the header, up to EOF. */
static void
expect_rest(int fd, const char *want)
{
	char buf[256];
	size_t have = 0;
	ssize_t got;

	while ((got = read(fd, buf + have, sizeof(buf) - have)) > 0)
		have += (size_t)got;
	ck_assert_int_eq(got, 0);
	ck_assert_uint_eq(have, strlen(want));
	ck_assert_int_eq(memcmp(buf, want, have), 0);
}

static const char v1_tcp4[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";

/* The header and the client's EHLO in one write: the EHLO stays unread. */
static void
read_one_write(int tcp, const unsigned char *p, size_t len, const struct expect *e)
{
	unsigned char buf[PROXY_HEADER_MAX + 16];
	struct proxy_header h;
	int fds[2];

	open_pair(fds, tcp);
	memcpy(buf, p, len);
	memcpy(buf + len, EHLO, strlen(EHLO));
	send_all(fds[1], buf, len + strlen(EHLO));
	shutdown(fds[1], SHUT_WR);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_OK);
	check_header(&h, len, e);
	expect_rest(fds[0], EHLO);
	close(fds[0]);
	close(fds[1]);
}

START_TEST(read_keeps_the_pipelined_ehlo)
{
	unsigned char buf[PROXY_HEADER_MAX];
	size_t len;

	read_one_write(_i, (const unsigned char *)v1_tcp4, strlen(v1_tcp4), &v1_valid[0].e);
	read_one_write(_i, (const unsigned char *)v1_valid[7].line, strlen(v1_valid[7].line),
	    &v1_valid[7].e);
	for (size_t i = 0; i < sizeof(v2_valid) / sizeof(v2_valid[0]); i++) {
		len = build_valid(buf, &v2_valid[i]);
		read_one_write(_i, buf, len, &v2_valid[i].e);
	}
}
END_TEST

/*
 * The balancer's side, in a child: the header's first split octets, then
 * (once we have taken them, which SIOCOUTQ shows on a Unix socket) the
 * rest with the EHLO. The wait is bounded; past it the outcome expected
 * is the same, only the split is not proven.
 */
static void
send_split(int fd, const unsigned char *p, size_t len, size_t split)
{
	struct timespec ms = { 0, 1000000 };
	int queued = 1;

	if (send(fd, p, split, 0) != (ssize_t)split)
		_exit(1);
	for (int i = 0; i < 10000 && queued > 0; i++) {
		if (ioctl(fd, SIOCOUTQ, &queued) == -1)
			break;
		if (queued > 0)
			nanosleep(&ms, NULL);
	}
	if (send(fd, p + split, len - split, 0) != (ssize_t)(len - split))
		_exit(1);
	_exit(0);
}

static void
read_split_at_every_octet(const unsigned char *p, size_t hlen, const struct expect *e)
{
	unsigned char buf[PROXY_HEADER_MAX + 16];
	struct proxy_header h;
	int fds[2], status;
	pid_t pid;

	memcpy(buf, p, hlen);
	memcpy(buf + hlen, EHLO, strlen(EHLO));
	for (size_t split = 1; split < hlen; split++) {
		ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
		if ((pid = fork()) == 0) {
			close(fds[0]);
			send_split(fds[1], buf, hlen + strlen(EHLO), split);
		}
		close(fds[1]);
		ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_OK);
		check_header(&h, hlen, e);
		expect_rest(fds[0], EHLO);
		close(fds[0]);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
}

START_TEST(read_a_header_split_across_writes)
{
	unsigned char buf[PROXY_HEADER_MAX];
	size_t len = build_valid(buf, &v2_valid[1]);

	read_split_at_every_octet((const unsigned char *)v1_tcp4, strlen(v1_tcp4),
	    &v1_valid[0].e);
	read_split_at_every_octet(buf, len, &v2_valid[1].e);
}
END_TEST

/* One octet per write, as fast as it goes: whatever the reads see, one header. */
START_TEST(read_a_header_one_octet_per_write)
{
	struct proxy_header h;
	int fds[2], status;
	pid_t pid;

	open_pair(fds, _i & 1);
	if ((pid = fork()) == 0) {
		close(fds[0]);
		for (size_t i = 0; i < strlen(v1_tcp4); i++)
			if (send(fds[1], v1_tcp4 + i, 1, 0) != 1)
				_exit(1);
		_exit(send(fds[1], EHLO, strlen(EHLO), 0) == (ssize_t)strlen(EHLO) ? 0 : 1);
	}
	close(fds[1]);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_V1, 5000, NULL, &h), PROXY_READ_OK);
	check_header(&h, strlen(v1_tcp4), &v1_valid[0].e);
	expect_rest(fds[0], EHLO);
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}
END_TEST

START_TEST(read_a_truncated_header_then_eof)
{
	struct proxy_header h;
	int fds[2];

	open_pair(fds, _i & 1);
	send_all(fds[1], v1_tcp4, 20);
	shutdown(fds[1], SHUT_WR);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_TRUNCATED);
	ck_assert_str_eq(h.reason, "closed inside the header");
	close(fds[0]);
	close(fds[1]);
	open_pair(fds, _i & 1);
	shutdown(fds[1], SHUT_WR);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_EOF);
	ck_assert_str_eq(h.reason, "closed before the header");
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* A balancer that stops halfway (or never starts) meets the deadline. */
START_TEST(read_gives_up_at_the_deadline)
{
	struct proxy_header h;
	int fds[2];

	open_pair(fds, _i & 1);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 50, NULL, &h), PROXY_READ_TIMEOUT);
	send_all(fds[1], SIG, 12);
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 50, NULL, &h), PROXY_READ_TIMEOUT);
	ck_assert_str_eq(h.reason, "no complete header in time");
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(read_refuses_a_client_speaking_first)
{
	struct proxy_header h;
	int fds[2];

	open_pair(fds, _i & 1);
	send_all(fds[1], EHLO, strlen(EHLO));
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_MALFORMED);
	ck_assert_str_eq(h.reason, "not a PROXY header");
	close(fds[0]);
	close(fds[1]);
	open_pair(fds, _i & 1);
	send_all(fds[1], "PROXY UNKNOWN\n" EHLO, 14 + strlen(EHLO));
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_MALFORMED);
	ck_assert_str_eq(h.reason, "v1: a bare LF");
	close(fds[0]);
	close(fds[1]);
}
END_TEST

static volatile sig_atomic_t stopped;

static void
on_stop(int sig)
{
	(void)sig;
	stopped = 1;
}

/*
 * A stop that came while it was blocked, before the wait began, is taken
 * by the wait itself (ppoll's mask), not left pending for the whole
 * deadline: smtpd blocks its stop signals around proxy_read.
 */
START_TEST(read_takes_a_stop_pending_before_the_wait)
{
	struct sigaction sa;
	struct proxy_header h;
	sigset_t stops, old;
	int fds[2];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;	/* no SA_RESTART, as smtpd's */
	sigemptyset(&sa.sa_mask);
	ck_assert_int_eq(sigaction(SIGTERM, &sa, NULL), 0);
	sigemptyset(&stops);
	sigaddset(&stops, SIGTERM);
	ck_assert_int_eq(sigprocmask(SIG_BLOCK, &stops, &old), 0);
	open_pair(fds, _i & 1);
	ck_assert_int_eq(raise(SIGTERM), 0);
	ck_assert_int_eq(stopped, 0);
	/* Far past the test's own timeout: only the signal can end this wait. */
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 600000, &old, &h), PROXY_READ_ERROR);
	ck_assert_str_eq(h.reason, "interrupted by a signal");
	ck_assert_int_eq(stopped, 1);
	close(fds[0]);
	close(fds[1]);
}
END_TEST

START_TEST(read_says_a_pipe_is_not_a_socket)
{
	struct proxy_header h;
	int fds[2];

	ck_assert_int_eq(pipe(fds), 0);
	ck_assert_int_eq(write(fds[1], v1_tcp4, strlen(v1_tcp4)), (ssize_t)strlen(v1_tcp4));
	ck_assert_int_eq(proxy_read(fds[0], PROXY_ANY, 5000, NULL, &h), PROXY_READ_ERROR);
	ck_assert_str_eq(h.reason, "not a socket");
	close(fds[0]);
	close(fds[1]);
}
END_TEST

/* ---- proxy-protocol and proxy-from ----------------------------------------- */

START_TEST(modes_parse)
{
	enum proxy_mode m;

	ck_assert_int_eq(proxy_parse_mode("no", &m), 0);
	ck_assert_int_eq(m, PROXY_OFF);
	ck_assert_int_eq(proxy_parse_mode("v1", &m), 0);
	ck_assert_int_eq(m, PROXY_V1);
	ck_assert_int_eq(proxy_parse_mode("v2", &m), 0);
	ck_assert_int_eq(m, PROXY_V2);
	ck_assert_int_eq(proxy_parse_mode("any", &m), 0);
	ck_assert_int_eq(m, PROXY_ANY);
	ck_assert_int_eq(proxy_parse_mode("V1", &m), -1);
	ck_assert_int_eq(proxy_parse_mode("yes", &m), -1);
	ck_assert_int_eq(proxy_parse_mode("", &m), -1);
	ck_assert_int_eq(proxy_parse_mode("v3", &m), -1);
}
END_TEST

static const struct net_valid {
	const char *text;
	int	family;
	const char *addr;
	unsigned prefix;
} net_valid[] = {
	{ "192.0.2.1", AF_INET, "192.0.2.1", 32 },
	{ "192.0.2.0/24", AF_INET, "192.0.2.0", 24 },
	{ "192.0.2.128/25", AF_INET, "192.0.2.128", 25 },
	{ "10.0.0.0/8", AF_INET, "10.0.0.0", 8 },
	{ "0.0.0.0/0", AF_INET, "0.0.0.0", 0 },
	{ "192.0.2.7/32", AF_INET, "192.0.2.7", 32 },
	{ "2001:db8::/32", AF_INET6, "2001:db8::", 32 },
	{ "2001:DB8::1", AF_INET6, "2001:db8::1", 128 },
	{ "2001:db8:8000::/33", AF_INET6, "2001:db8:8000::", 33 },
	{ "::/0", AF_INET6, "::", 0 },
	{ "::1/128", AF_INET6, "::1", 128 },
	/* An IPv4-mapped network is the IPv4 one. */
	{ "::ffff:192.0.2.0/120", AF_INET, "192.0.2.0", 24 },
	{ "::ffff:192.0.2.9", AF_INET, "192.0.2.9", 32 },
	{ "::ffff:0:0/96", AF_INET, "0.0.0.0", 0 },
};

START_TEST(proxy_from_valid)
{
	const struct net_valid *v = &net_valid[_i];
	char error[256] = "", text[INET6_ADDRSTRLEN];
	struct proxy_net net;

	ck_assert_msg(proxy_parse_net(v->text, &net, error, sizeof(error)) == 0, "%s", error);
	ck_assert_int_eq(net.family, v->family);
	ck_assert_uint_eq(net.prefix, v->prefix);
	ck_assert_ptr_nonnull(inet_ntop(net.family, net.addr, text, sizeof(text)));
	ck_assert_str_eq(text, v->addr);
}
END_TEST

static const struct net_bad {
	const char *text;
	const char *error;
} net_bad[] = {
	{ "", "proxy-from : not an IPv4 or IPv6 address" },
	{ "/24", "proxy-from /24: not an IPv4 or IPv6 address" },
	{ "192.0.2", "proxy-from 192.0.2: not an IPv4 or IPv6 address" },
	{ "192.0.2.256", "proxy-from 192.0.2.256: not an IPv4 or IPv6 address" },
	{ "01.2.3.4", "proxy-from 01.2.3.4: not an IPv4 or IPv6 address" },
	{ "mx.example", "proxy-from mx.example: not an IPv4 or IPv6 address" },
	{ "[::1]", "proxy-from [::1]: not an IPv4 or IPv6 address" },
	{ "fe80::1%eth0", "proxy-from fe80::1%eth0: not an IPv4 or IPv6 address" },
	{ " 192.0.2.1", "proxy-from  192.0.2.1: not an IPv4 or IPv6 address" },
	{ "192.0.2.1 ", "proxy-from 192.0.2.1 : not an IPv4 or IPv6 address" },
	{ "192.0.2.0/33", "proxy-from 192.0.2.0/33: the prefix is a number from 0 to 32" },
	{ "2001:db8::/129", "proxy-from 2001:db8::/129: the prefix is a number from 0 to 128" },
	{ "192.0.2.0/", "proxy-from 192.0.2.0/: the prefix is a number from 0 to 32" },
	{ "192.0.2.0/024", "proxy-from 192.0.2.0/024: the prefix is a number from 0 to 32" },
	{ "192.0.2.0/+24", "proxy-from 192.0.2.0/+24: the prefix is a number from 0 to 32" },
	{ "192.0.2.0/-1", "proxy-from 192.0.2.0/-1: the prefix is a number from 0 to 32" },
	{ "192.0.2.0/24/8", "proxy-from 192.0.2.0/24/8: the prefix is a number from 0 to 32" },
	{ "192.0.2.0/24 ", "proxy-from 192.0.2.0/24 : the prefix is a number from 0 to 32" },
	{ "192.0.2.0/1000", "proxy-from 192.0.2.0/1000: the prefix is a number from 0 to 32" },
	{ "192.0.2.1/24", "proxy-from 192.0.2.1/24 has bits set beyond its prefix (192.0.2.0/24?)" },
	{ "192.0.2.129/25",
	  "proxy-from 192.0.2.129/25 has bits set beyond its prefix (192.0.2.128/25?)" },
	{ "2001:db8::1/64",
	  "proxy-from 2001:db8::1/64 has bits set beyond its prefix (2001:db8::/64?)" },
	{ "1.2.3.4/0", "proxy-from 1.2.3.4/0 has bits set beyond its prefix (0.0.0.0/0?)" },
};

START_TEST(proxy_from_malformed)
{
	char error[256] = "";
	struct proxy_net net;

	ck_assert_int_eq(proxy_parse_net(net_bad[_i].text, &net, error, sizeof(error)), -1);
	ck_assert_str_eq(error, net_bad[_i].error);
}
END_TEST

static struct sockaddr_storage
peer_of(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else
		ck_abort_msg("bad test address %s", text);
	return ss;
}

static const struct net_match {
	const char *nets;	/* space-separated */
	const char *peer;
	bool	match;
} net_match[] = {
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "192.0.2.9", true },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "192.0.3.9", false },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "::ffff:192.0.2.9", true },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "2001:db8:1::5", true },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "2001:db9::5", false },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "198.51.100.7", true },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "198.51.100.8", false },
	{ "192.0.2.0/24 2001:db8::/32 198.51.100.7", "::ffff:198.51.100.7", true },
	{ "192.0.2.128/25", "192.0.2.200", true },
	{ "192.0.2.128/25", "192.0.2.100", false },
	{ "2001:db8:8000::/33", "2001:db8:ffff::1", true },
	{ "2001:db8:8000::/33", "2001:db8:7fff::1", false },
	{ "0.0.0.0/0", "203.0.113.1", true },
	{ "0.0.0.0/0", "::ffff:203.0.113.1", true },
	{ "0.0.0.0/0", "::1", false },
	{ "::/0", "::1", true },
	{ "::/0", "127.0.0.1", false },
	{ "::/0", "::ffff:127.0.0.1", false },
	{ "::ffff:127.0.0.0/104", "127.0.0.2", true },
	{ "::ffff:127.0.0.0/104", "::ffff:127.0.0.2", true },
	{ "127.0.0.1", "127.0.0.2", false },
	{ "::1", "127.0.0.1", false },
	{ "", "127.0.0.1", false },
};

START_TEST(proxy_from_matches)
{
	const struct net_match *t = &net_match[_i];
	struct proxy_net nets[8];
	struct sockaddr_storage peer = peer_of(t->peer);
	char copy[256], error[256] = "", *word, *save = NULL;
	size_t count = 0;

	snprintf(copy, sizeof(copy), "%s", t->nets);
	for (word = strtok_r(copy, " ", &save); word != NULL; word = strtok_r(NULL, " ", &save)) {
		ck_assert_msg(proxy_parse_net(word, &nets[count], error, sizeof(error)) == 0,
		    "%s", error);
		count++;
	}
	ck_assert_int_eq(proxy_match_net(nets, count, (struct sockaddr *)&peer), t->match);
}
END_TEST

START_TEST(proxy_from_never_matches_a_unix_peer)
{
	struct proxy_net net;
	struct sockaddr_un sun;
	char error[256];

	ck_assert_int_eq(proxy_parse_net("0.0.0.0/0", &net, error, sizeof(error)), 0);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert(!proxy_match_net(&net, 1, (struct sockaddr *)&sun));
}
END_TEST

/* ---- naming the client ------------------------------------------------------ */

static const struct format_case {
	const char *addr;
	const char *peer, *literal;
} format_cases[] = {
	{ "192.0.2.1", "192.0.2.1", "[192.0.2.1]" },
	{ "2001:db8::1", "IPv6:2001:db8::1", "[IPv6:2001:db8::1]" },
	{ "::ffff:192.0.2.1", "192.0.2.1", "[192.0.2.1]" },
	{ "::1", "IPv6:::1", "[IPv6:::1]" },
	{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "IPv6:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
	  "[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]" },
};

START_TEST(peers_are_named_as_smtpd_names_them)
{
	const struct format_case *c = &format_cases[_i];
	struct sockaddr_storage ss = peer_of(c->addr);
	char peer[PROXY_PEER_MAX], literal[PROXY_PEER_MAX];

	ck_assert(proxy_format_peer((struct sockaddr *)&ss, peer, sizeof(peer), literal,
	    sizeof(literal)));
	ck_assert_str_eq(peer, c->peer);
	ck_assert_str_eq(literal, c->literal);
}
END_TEST

START_TEST(a_header_source_is_named_too)
{
	static const char line[] = "PROXY TCP6 ::ffff:192.0.2.1 ::1 40000 25\r\n";
	char peer[PROXY_PEER_MAX], literal[PROXY_PEER_MAX];
	struct proxy_header h;

	ck_assert_int_eq(proxy_parse((const unsigned char *)line, strlen(line), PROXY_V1, &h),
	    PROXY_OK);
	ck_assert(proxy_format_peer((struct sockaddr *)&h.source, peer, sizeof(peer), literal,
	    sizeof(literal)));
	ck_assert_str_eq(peer, "192.0.2.1");
	ck_assert_str_eq(literal, "[192.0.2.1]");
}
END_TEST

START_TEST(unnameable_peers_are_refused)
{
	struct sockaddr_storage ss = peer_of("2001:db8::1");
	char peer[PROXY_PEER_MAX] = "x", literal[PROXY_PEER_MAX] = "x", small[12] = "x";
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	ck_assert(!proxy_format_peer((struct sockaddr *)&sun, peer, sizeof(peer), literal,
	    sizeof(literal)));
	ck_assert(!proxy_format_peer((struct sockaddr *)&ss, peer, sizeof(peer), small,
	    sizeof(small)));
	ck_assert_str_eq(small, "");
	ck_assert_str_eq(peer, "");
}
END_TEST

#define COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
proxy_suite(void)
{
	Suite *s = suite_create("proxy");
	TCase *parse = tcase_create("parse"), *rd = tcase_create("read"),
	    *from = tcase_create("from");

	tcase_add_loop_test(parse, v1_valid_headers, 0, COUNT(v1_valid));
	tcase_add_test(parse, v1_longest_line_is_107_octets);
	tcase_add_loop_test(parse, v1_malformed_headers, 0, COUNT(v1_bad));
	tcase_add_test(parse, v1_nul_in_an_address_is_malformed);
	tcase_add_test(parse, v1_over_107_octets_is_malformed);
	tcase_add_test(parse, v1_where_v2_is_expected);
	tcase_add_loop_test(parse, v2_valid_headers, 0, COUNT(v2_valid));
	tcase_add_test(parse, v2_longest_header_is_the_maximum);
	tcase_add_loop_test(parse, v2_malformed_headers, 0, COUNT(v2_bad));
	tcase_add_loop_test(parse, v2_every_signature_octet_counts, 0, 12);
	tcase_add_test(parse, v2_where_v1_is_expected);
	tcase_add_test(parse, v2_length_bound_is_exact);
	tcase_add_test(parse, nothing_yet_wants_more);
	suite_add_tcase(s, parse);
	/* _i: 0 on a Unix socketpair, 1 over loopback TCP. */
	tcase_add_loop_test(rd, read_keeps_the_pipelined_ehlo, 0, 2);
	tcase_add_test(rd, read_a_header_split_across_writes);
	tcase_add_loop_test(rd, read_a_header_one_octet_per_write, 0, 2);
	tcase_add_loop_test(rd, read_a_truncated_header_then_eof, 0, 2);
	tcase_add_loop_test(rd, read_gives_up_at_the_deadline, 0, 2);
	tcase_add_loop_test(rd, read_refuses_a_client_speaking_first, 0, 2);
	tcase_add_loop_test(rd, read_takes_a_stop_pending_before_the_wait, 0, 2);
	tcase_add_test(rd, read_says_a_pipe_is_not_a_socket);
	tcase_set_timeout(rd, 60);
	suite_add_tcase(s, rd);
	tcase_add_test(from, modes_parse);
	tcase_add_loop_test(from, proxy_from_valid, 0, COUNT(net_valid));
	tcase_add_loop_test(from, proxy_from_malformed, 0, COUNT(net_bad));
	tcase_add_loop_test(from, proxy_from_matches, 0, COUNT(net_match));
	tcase_add_test(from, proxy_from_never_matches_a_unix_peer);
	tcase_add_loop_test(from, peers_are_named_as_smtpd_names_them, 0, COUNT(format_cases));
	tcase_add_test(from, a_header_source_is_named_too);
	tcase_add_test(from, unnameable_peers_are_refused);
	suite_add_tcase(s, from);
	return s;
}

int
main(void)
{
	return harness_run_suite(proxy_suite());
}
