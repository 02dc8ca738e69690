/*
 * address.c: the RFC 5321 4.1.2 path grammar, with the RFC 6531 additions.
 *
 * Promises: only syntactically valid paths come out, within the RFC's
 * length limits; equivalent quoted local parts come out in one canonical
 * form, so "joe"@x and joe@x compare equal (RFC 5321 4.1.2). Knows nothing
 * of routing or Maildirs.
 */
#include "address.h"

#include <idn2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dynlib.h"

struct cursor {
	const char *p;
	size_t	n, i;
	bool	saw_utf8;
};

static int
peek(const struct cursor *c)
{
	return c->i < c->n ? (unsigned char)c->p[c->i] : -1;
}

/* Length of one valid UTF-8 sequence at p, or 0 (RFC 3629 4). */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	size_t len;
	unsigned cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf) { len = 2; cp = p[0] & 0x1f; }
	else if (p[0] >= 0xe0 && p[0] <= 0xef) { len = 3; cp = p[0] & 0x0f; }
	else if (p[0] >= 0xf0 && p[0] <= 0xf4) { len = 4; cp = p[0] & 0x07; }
	else return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (p[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

bool
address_valid_utf8(const char *p, size_t n)
{
	for (size_t i = 0; i < n; ) {
		size_t k = utf8_seq((const unsigned char *)p + i, n - i);

		if (k == 0)
			return false;
		i += k;
	}
	return true;
}

/* Consume one UTF8-non-ascii character (RFC 6531 3.3); false if none. */
static bool
take_utf8(struct cursor *c)
{
	size_t k;

	if (peek(c) < 0x80)
		return false;
	k = utf8_seq((const unsigned char *)c->p + c->i, c->n - c->i);
	if (k == 0)
		return false;
	c->i += k;
	c->saw_utf8 = true;
	return true;
}

static bool
is_atext(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
	    (ch >= '0' && ch <= '9') || (ch > 0 && strchr("!#$%&'*+-/=?^_`{|}~", ch) != NULL);
}

static bool
is_letdig(int ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
}

/* Atom = 1*atext, with UTF-8 allowed anywhere (RFC 6531 3.3). */
static bool
take_atom(struct cursor *c)
{
	size_t start = c->i;

	for (;;) {
		if (is_atext(peek(c)))
			c->i++;
		else if (!take_utf8(c))
			break;
	}
	return c->i > start;
}

/* sub-domain = Let-dig [Ldh-str], or a U-label; at most 63 octets. */
static bool
take_label(struct cursor *c)
{
	size_t start = c->i;
	int last = -1;

	for (;;) {
		int ch = peek(c);

		if (is_letdig(ch) || (ch == '-' && c->i > start))
			c->i++;
		else if (!take_utf8(c))
			break;
		last = ch;
	}
	return c->i > start && last != '-' && c->i - start <= 63;
}

/* take *("." take): Dot-string from Atoms, Domain from sub-domains (RFC 5321 4.1.2). */
static bool
take_dotted(struct cursor *c, bool (*take)(struct cursor *))
{
	if (!take(c))
		return false;
	while (peek(c) == '.') {
		c->i++;
		if (!take(c))
			return false;
	}
	return true;
}

static bool
take_domain(struct cursor *c)
{
	return take_dotted(c, take_label);
}

/* RFC 5321 4.1.3: Snum = 1*3DIGIT representing 0-255, four of them. */
static bool
valid_ipv4(const char *p, size_t n)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		if (part > 0 && (i >= n || p[i++] != '.'))
			return false;
		while (i < n && p[i] >= '0' && p[i] <= '9' && digits < 4) {
			v = v * 10 + (unsigned)(p[i++] - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255)
			return false;
	}
	return i == n;
}

static bool
is_hex(int ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * One side of an IPv6 literal: IPv6-hex *(":" IPv6-hex), where the last
 * piece may be an IPv4-address-literal when v4_ok. Counts the hex groups;
 * an empty side is allowed only next to "::" (the caller says).
 */
static bool
ipv6_groups(const char *p, size_t n, bool v4_ok, bool empty_ok, unsigned *groups, bool *v4)
{
	size_t i = 0;

	*groups = 0;
	*v4 = false;
	if (n == 0)
		return empty_ok;
	for (;;) {
		size_t start = i;

		while (i < n && is_hex(p[i]) && i - start < 5)
			i++;
		if (i < n && p[i] == '.' && v4_ok) {
			*v4 = true;
			return valid_ipv4(p + start, n - start);
		}
		if (i == start || i - start > 4)
			return false;	/* IPv6-hex = 1*4HEXDIG */
		(*groups)++;
		if (i == n)
			return true;
		if (p[i++] != ':' || i == n)
			return false;
	}
}

/*
 * RFC 5321 4.1.3, all four forms: IPv6-full (8 groups), IPv6-comp ("::"
 * stands for at least two groups, so at most 6 others), IPv6v4-full
 * (6 groups and an IPv4 address), IPv6v4-comp (at most 4 groups besides
 * the "::" and the IPv4 address). Stricter than inet_pton(3), which takes
 * "::" for a single group and refuses leading zeros in the IPv4 part.
 */
static bool
valid_ipv6(const char *p, size_t n)
{
	const char *dc = NULL;
	unsigned left, right;
	bool v4l, v4r;

	for (size_t i = 0; i + 1 < n; i++) {
		if (p[i] == ':' && p[i + 1] == ':') {
			if (dc != NULL)
				return false;	/* one "::" at most */
			dc = p + i;
			i++;
		}
	}
	if (dc == NULL) {
		if (!ipv6_groups(p, n, true, false, &left, &v4l))
			return false;
		return v4l ? left == 6 : left == 8;
	}
	if (!ipv6_groups(p, (size_t)(dc - p), false, true, &left, &v4l) ||
	    !ipv6_groups(dc + 2, n - (size_t)(dc - p) - 2, true, true, &right, &v4r))
		return false;
	if ((dc > p && dc[-1] == ':') || (dc + 2 < p + n && dc[2] == ':'))
		return false;	/* ":::" */
	return v4r ? left + right <= 4 : left + right <= 6;
}

/* General-address-literal = Standardized-tag ":" 1*dcontent. */
static bool
valid_general_literal(const char *p, size_t n)
{
	size_t i = 0;

	while (i < n && (is_letdig(p[i]) || (p[i] == '-' && i > 0)))
		i++;
	if (i == 0 || i >= n || p[i] != ':' || p[i - 1] == '-' || i + 1 == n)
		return false;
	for (i++; i < n; i++)
		if (p[i] < 33 || p[i] > 126 || (p[i] >= 91 && p[i] <= 93))
			return false;
	return true;
}

static bool
take_address_literal(struct cursor *c)
{
	const char *end, *s = c->p + c->i + 1;
	size_t len;

	end = memchr(s, ']', c->n - c->i - 1);
	if (end == NULL)
		return false;
	len = (size_t)(end - s);
	if (!(valid_ipv4(s, len) ||
	    (len > 5 && strncasecmp(s, "IPv6:", 5) == 0 && valid_ipv6(s + 5, len - 5)) ||
	    (!(len > 5 && strncasecmp(s, "IPv6:", 5) == 0) && valid_general_literal(s, len))))
		return false;
	c->i += len + 2;
	return true;
}

bool
address_valid_domain(const char *p, size_t n, bool utf8)
{
	struct cursor c = { .p = p, .n = n };

	return take_domain(&c) && c.i == n && (utf8 || !c.saw_utf8);
}

/*
 * Quoted-string: decode into out (canonical form chosen by the caller).
 * Past out_size the string is still read to its end, so the caller can
 * tell a long local part (501 too long) from a malformed one.
 */
static bool
take_quoted(struct cursor *c, char *out, size_t *out_len, size_t out_size)
{
	size_t o = 0;

	c->i++;	/* opening DQUOTE */
	for (;;) {
		int ch = peek(c);
		size_t start = c->i;

		if (ch == '"') {
			c->i++;
			*out_len = o;
			return true;
		}
		if (ch == '\\') {
			c->i++;
			ch = peek(c);
			if (ch < 32 || ch > 126)
				return false;	/* quoted-pairSMTP = "\" %d32-126 */
			start = c->i++;
		} else if (ch >= 32 && ch <= 126) {
			c->i++;
		} else if (!take_utf8(c)) {
			return false;	/* CTLs, NUL, bad UTF-8, or the end */
		}
		if (o + (c->i - start) <= out_size)
			memcpy(out + o, c->p + start, c->i - start);
		o += c->i - start;
	}
}

/* Is the decoded local part a Dot-string, so it needs no quotes? */
static bool
is_dot_string(const char *p, size_t n)
{
	struct cursor c = { .p = p, .n = n };

	return take_dotted(&c, take_atom) && c.i == n;
}

/* Local-part = Dot-string / Quoted-string, stored canonically. */
static enum address_result
take_local(struct cursor *c, struct address *a)
{
	char decoded[SMTP_LOCAL_MAX * 2];
	size_t len = 0, start = c->i;

	if (peek(c) == '"') {
		if (!take_quoted(c, decoded, &len, sizeof(decoded)))
			return ADDRESS_SYNTAX;
	} else {
		if (!take_dotted(c, take_atom))
			return ADDRESS_SYNTAX;
		len = c->i - start;
		if (len > SMTP_LOCAL_MAX)
			return ADDRESS_TOO_LONG;
		memcpy(decoded, c->p + start, len);
	}
	if (c->i - start > SMTP_LOCAL_MAX)
		return ADDRESS_TOO_LONG;
	if (is_dot_string(decoded, len)) {
		memcpy(a->local, decoded, len);
		a->local_len = len;
	} else {
		/* Re-quote: the escaped form is never longer than what was sent. */
		size_t o = 0;

		a->local[o++] = '"';
		for (size_t i = 0; i < len; i++) {
			if (decoded[i] == '"' || decoded[i] == '\\')
				a->local[o++] = '\\';
			a->local[o++] = decoded[i];
		}
		a->local[o++] = '"';
		a->local_len = o;
	}
	a->local[a->local_len] = '\0';
	return ADDRESS_OK;
}

/* A-d-l = At-domain *( "," At-domain ) ":" -- accepted, then ignored. */
static bool
skip_source_route(struct cursor *c)
{
	do {
		if (peek(c) != '@')
			return false;
		c->i++;
		if (!take_domain(c))
			return false;
	} while (peek(c) == ',' && ++c->i);
	if (peek(c) != ':')
		return false;
	c->i++;
	return true;
}

static bool idn_invalid(const char *p, size_t n);

static enum address_result
take_mailbox(struct cursor *c, struct address *a)
{
	enum address_result res;
	size_t start;

	if ((res = take_local(c, a)) != ADDRESS_OK)
		return res;
	if (peek(c) != '@')
		return ADDRESS_SYNTAX;
	c->i++;
	start = c->i;
	if (peek(c) == '[' ? !take_address_literal(c) : !take_domain(c))
		return ADDRESS_SYNTAX;
	if (c->i - start > SMTP_DOMAIN_MAX)
		return ADDRESS_TOO_LONG;
	if (idn_invalid(c->p + start, c->i - start))
		return ADDRESS_SYNTAX;
	memcpy(a->domain, c->p + start, c->i - start);
	a->domain_len = c->i - start;
	a->domain[a->domain_len] = '\0';
	return ADDRESS_OK;
}

enum address_result
address_parse_path(const char *p, size_t n, enum path_kind kind, bool smtputf8,
    struct address *a, size_t *used)
{
	struct cursor c = { .p = p, .n = n };
	enum address_result res;
	const char *close = memchr(p, '>', n);

	memset(a, 0, sizeof(*a));
	if (n < 2 || p[0] != '<')
		return ADDRESS_SYNTAX;
	if (close != NULL && (size_t)(close - p) + 1 > SMTP_PATH_MAX)
		return ADDRESS_TOO_LONG;
	c.i = 1;
	if (kind == PATH_REVERSE && peek(&c) == '>') {
		a->null = true;
	} else if (kind == PATH_FORWARD && n >= 12 && strncasecmp(p, "<postmaster>", 12) == 0) {
		memcpy(a->local, p + 1, 10);
		a->local_len = 10;
		a->bare = true;
		c.i = 11;
	} else {
		if (peek(&c) == '@' && !skip_source_route(&c))
			return ADDRESS_SYNTAX;
		if ((res = take_mailbox(&c, a)) != ADDRESS_OK)
			return res;
	}
	if (peek(&c) != '>')
		return ADDRESS_SYNTAX;
	c.i++;
	if (c.i > SMTP_PATH_MAX)
		return ADDRESS_TOO_LONG;
	a->utf8 = c.saw_utf8;
	if (a->utf8 && !smtputf8)
		return ADDRESS_NEEDS_UTF8;
	*used = c.i;
	return ADDRESS_OK;
}

size_t
address_format(const struct address *a, char *buf, size_t size)
{
	int n;

	if (a->null || a->bare)
		n = snprintf(buf, size, "<%s>", a->null ? "" : a->local);
	else
		n = snprintf(buf, size, "<%s@%s>", a->local, a->domain);
	if (n < 0)
		return 0;
	return (size_t)n < size ? (size_t)n : size - 1;
}

typedef int idn2_lookup_u8_fn(const uint8_t *, uint8_t **, int);
typedef void idn2_free_fn(void *);

/* The pointers we call through must match the headers: a mismatch is a build error. */
_Static_assert(_Generic(&idn2_lookup_u8, idn2_lookup_u8_fn *: 1, default: 0),
    "idn2_lookup_u8 changed type");
_Static_assert(_Generic(&idn2_free, idn2_free_fn *: 1, default: 0),
    "idn2_free changed type");

static idn2_lookup_u8_fn *lookup_u8;
static idn2_free_fn *free_u8;

/*
 * libidn2, opened on first use: linking it would map libidn2 and
 * libunistring (1.7 MB) into every connection's process, though most never
 * see a non-ASCII domain (bench/map/RESULTS.md has the cost).
 */
static int
load_idn2(void)
{
	static int state;
	const struct dynlib_symbol syms[] = {
		{ "idn2_lookup_u8", &lookup_u8, sizeof(lookup_u8) },
		{ "idn2_free", &free_u8, sizeof(free_u8) },
	};

	return dynlib_load(&state, "libidn2.so.0", syms, sizeof(syms) / sizeof(syms[0]));
}

enum idn_result { IDN_OK, IDN_BAD, IDN_UNAVAILABLE };

/*
 * The A-label form of a non-ASCII domain. libidn2 maps without the STD3
 * rules, so fullwidth and other compatibility forms can come out as ASCII
 * '@', '/', '[', ']', ':' or an empty label (b\uFF20example.org gives
 * "b@example.org"): only a result that is itself an ASCII domain name
 * (LDH labels, as UTS 46's UseSTD3ASCIIRules would demand) names a domain.
 */
static enum idn_result
idn_key(const char *p, size_t n, char *out, size_t size, size_t *len)
{
	char in[SMTP_DOMAIN_MAX + 1];
	uint8_t *alabels = NULL;
	enum idn_result r = IDN_OK;

	if (n > SMTP_DOMAIN_MAX || !address_valid_utf8(p, n))
		return IDN_BAD;
	if (load_idn2() == -1)
		return IDN_UNAVAILABLE;
	memcpy(in, p, n);
	in[n] = '\0';
	if (lookup_u8((const uint8_t *)in, &alabels, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL) !=
	    IDN2_OK)
		return IDN_BAD;
	*len = strlen((const char *)alabels);
	if (*len == 0 || *len >= size || !address_valid_domain((const char *)alabels, *len, false))
		r = IDN_BAD;
	else
		memcpy(out, alabels, *len + 1);
	free_u8(alabels);
	return r;
}

/*
 * RFC 6531 3.3: a UTF-8 domain must be a valid IDN, so one that libidn2
 * refuses or maps to something that is not a host name is bad syntax.
 * Without libidn2 the parser cannot tell: routing then refuses the domain.
 */
static bool
idn_invalid(const char *p, size_t n)
{
	char out[SMTP_DOMAIN_MAX + 1];
	size_t len;

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			return idn_key(p, n, out, sizeof(out), &len) == IDN_BAD;
	return false;
}

/*
 * RFC 5890: a U-label and its A-label are the same label, so domains are
 * compared as ASCII, lower case, with every U-label turned into its A-label
 * by libidn2 (UTS 46 non-transitional mapping, which also folds case).
 * Only a name with a non-ASCII octet reaches libidn2: plain names, A-labels
 * and address literals cost a loop over their bytes, and the library is
 * not even loaded.
 */
size_t
address_domain_key(const char *p, size_t n, char *out, size_t size)
{
	bool ascii = true;
	size_t len = 0;

	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] >= 0x80)
			ascii = false;
	if (ascii) {
		if (n == 0 || n >= size)
			return 0;
		for (size_t i = 0; i < n; i++)
			out[i] = (p[i] >= 'A' && p[i] <= 'Z') ? (char)(p[i] - 'A' + 'a') : p[i];
		out[n] = '\0';
		return n;
	}
	return idn_key(p, n, out, size, &len) == IDN_OK ? len : 0;
}
