/*
 * fuzz_proxy.c: libFuzzer harness for the PROXY header parser and the
 * proxy-from parser (proxy.c).
 *
 * The first byte picks the mode (low two bits: v1, v2, any, off) and,
 * when its top bit is set, feeds the rest to proxy_parse_net as text
 * instead. For a header, every prefix of the input is parsed in turn and
 * the answers must read NEED_MORE... then one final answer that longer
 * prefixes never change: MALFORMED with a reason, or OK with the same
 * length and fields, at most PROXY_HEADER_MAX octets and no more than was
 * given; NEED_MORE never past PROXY_HEADER_MAX. An accepted v1 line ends
 * in its only CR and LF; a TCP source names a client in printable ASCII.
 * A proxy-from entry that parses must match its own address. A breach
 * aborts, which libFuzzer reports as a crash.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const enum proxy_mode modes[4] = { PROXY_V1, PROXY_V2, PROXY_ANY, PROXY_OFF };

static bool
same_header(const struct proxy_header *a, const struct proxy_header *b)
{
	return a->len == b->len && a->version == b->version && a->command == b->command &&
	    a->family == b->family && a->what == b->what &&
	    memcmp(&a->source, &b->source, sizeof(a->source)) == 0 &&
	    memcmp(&a->destination, &b->destination, sizeof(a->destination)) == 0;
}

static void
check_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if (*s < 0x21 || *s > 0x7e)
			abort();
}

/* What an accepted header must look like. */
static void
check_accepted(const uint8_t *p, size_t n, enum proxy_mode mode, const struct proxy_header *h)
{
	char peer[PROXY_PEER_MAX], literal[PROXY_PEER_MAX];

	if (h->len == 0 || h->len > n || h->len > PROXY_HEADER_MAX || h->what == NULL)
		abort();
	if ((h->version == 1 && mode == PROXY_V2) || (h->version == 2 && mode == PROXY_V1) ||
	    mode == PROXY_OFF)
		abort();
	if (h->version == 1) {
		if (h->len > PROXY_V1_MAX || p[h->len - 2] != '\r' || p[h->len - 1] != '\n' ||
		    memchr(p, '\n', h->len - 1) != NULL || memchr(p, '\r', h->len - 2) != NULL)
			abort();
	}
	if (h->family == AF_UNSPEC)
		return;
	if ((h->family != AF_INET && h->family != AF_INET6) || h->command != PROXY_COMMAND_PROXY ||
	    h->source.ss_family != h->family || h->destination.ss_family != h->family)
		abort();
	if (!proxy_format_peer((const struct sockaddr *)&h->source, peer, sizeof(peer), literal,
	    sizeof(literal)))
		abort();
	check_printable(peer);
	check_printable(literal);
}

static void
fuzz_header(const uint8_t *p, size_t n, enum proxy_mode mode)
{
	struct proxy_header first, h;
	enum proxy_status final = PROXY_NEED_MORE, st;

	if (n > PROXY_HEADER_MAX + 16)
		n = PROXY_HEADER_MAX + 16;	/* nothing past the maximum is looked at */
	for (size_t k = 0; k <= n; k++) {
		st = proxy_parse(p, k, mode, &h);
		if (final == PROXY_NEED_MORE) {
			if (st == PROXY_NEED_MORE && k >= PROXY_HEADER_MAX)
				abort();
			if (st == PROXY_MALFORMED && h.reason == NULL)
				abort();
			if (st == PROXY_OK)
				check_accepted(p, k, mode, &h);
			final = st;
			first = h;
			continue;
		}
		if (st != final)
			abort();	/* more octets changed the answer */
		if (st == PROXY_OK && !same_header(&first, &h))
			abort();
		if (st == PROXY_MALFORMED && h.reason == NULL)
			abort();
	}
}

static void
fuzz_net(const uint8_t *p, size_t n)
{
	char text[128], error[256];
	struct proxy_net net;
	struct sockaddr_storage ss;

	if (n >= sizeof(text))
		n = sizeof(text) - 1;
	memcpy(text, p, n);
	text[n] = '\0';
	if (proxy_parse_net(text, &net, error, sizeof(error)) == -1) {
		if (memchr(error, '\0', sizeof(error)) == NULL || error[0] == '\0')
			abort();
		return;
	}
	if ((net.family != AF_INET || net.prefix > 32) && (net.family != AF_INET6 || net.prefix > 128))
		abort();
	memset(&ss, 0, sizeof(ss));
	if (net.family == AF_INET) {
		ss.ss_family = AF_INET;
		memcpy(&((struct sockaddr_in *)&ss)->sin_addr, net.addr, 4);
	} else {
		ss.ss_family = AF_INET6;
		memcpy(&((struct sockaddr_in6 *)&ss)->sin6_addr, net.addr, 16);
	}
	if (!proxy_match_net(&net, 1, (const struct sockaddr *)&ss))
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 0x80)
		fuzz_net(data + 1, size - 1);
	else
		fuzz_header(data + 1, size - 1, modes[data[0] & 3]);
	return 0;
}
