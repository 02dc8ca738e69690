/*
 * check_address.c: the RFC 5321 4.1.2/4.1.3 path grammar with RFC 6531,
 * one table row per rule, valid and invalid, then the replies a session
 * gives for each kind of failure.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "harness.h"

#define R PATH_REVERSE
#define F PATH_FORWARD
#define OK ADDRESS_OK
#define SYN ADDRESS_SYNTAX
#define LONG ADDRESS_TOO_LONG
#define UTF ADDRESS_NEEDS_UTF8

/*
 * One row: the path, which command takes it, whether SMTPUTF8 was declared,
 * the result, and for ADDRESS_OK the canonical path address_format writes.
 * len is for paths with a NUL inside (0: strlen).
 */
struct path_case {
	const char *path;
	size_t	len;
	enum path_kind kind;
	bool	utf8;
	enum address_result want;
	const char *canonical;
};

static const struct path_case paths[] = {
	/* RFC 5321's own examples (3.3, 3.6.1, 4.1.1.3, D.1). */
	{ "<Smith@bar.com>", 0, F, false, OK, "<Smith@bar.com>" },
	{ "<JQP@bar.com>", 0, R, false, OK, "<JQP@bar.com>" },
	{ "<Jones@foo.com>", 0, F, false, OK, "<Jones@foo.com>" },
	{ "<userx@y.foo.org>", 0, R, false, OK, "<userx@y.foo.org>" },
	{ "<@hosta.int,@jkl.org:userc@d.bar.org>", 0, F, false, OK, "<userc@d.bar.org>" },
	{ "<Postmaster>", 0, F, false, OK, "<Postmaster>" },
	{ "<postmaster>", 0, F, false, OK, "<postmaster>" },
	{ "<POSTMASTER>", 0, F, false, OK, "<POSTMASTER>" },
	{ "<Postmaster@foo.example>", 0, F, false, OK, "<Postmaster@foo.example>" },
	/* <postmaster> without a domain is for RCPT only; <> for MAIL only. */
	{ "<postmaster>", 0, R, false, SYN, NULL },
	{ "<postmasters>", 0, F, false, SYN, NULL },
	{ "<>", 0, R, false, OK, "<>" },
	{ "<>", 0, F, false, SYN, NULL },
	{ "< >", 0, R, false, SYN, NULL },
	/* Dot-string: atoms of atext joined by single dots. */
	{ "<a.b.c@example.org>", 0, F, false, OK, "<a.b.c@example.org>" },
	{ "<!#$%&'*+-/=?^_`{|}~@example.org>", 0, F, false, OK, "<!#$%&'*+-/=?^_`{|}~@example.org>" },
	{ "<.a@example.org>", 0, F, false, SYN, NULL },
	{ "<a.@example.org>", 0, F, false, SYN, NULL },
	{ "<a..b@example.org>", 0, F, false, SYN, NULL },
	{ "<a b@example.org>", 0, F, false, SYN, NULL },
	{ "<a(b)@example.org>", 0, F, false, SYN, NULL },
	{ "<a,b@example.org>", 0, F, false, SYN, NULL },
	{ "<a:b@example.org>", 0, F, false, SYN, NULL },
	{ "<a[b@example.org>", 0, F, false, SYN, NULL },
	{ "<a\\b@example.org>", 0, F, false, SYN, NULL },
	{ "<a@b@example.org>", 0, F, false, SYN, NULL },
	{ "<@example.org>", 0, F, false, SYN, NULL },
	{ "<a@>", 0, F, false, SYN, NULL },
	{ "<a>", 0, F, false, SYN, NULL },
	{ "<a@example.org", 0, F, false, SYN, NULL },
	{ "a@example.org", 0, F, false, SYN, NULL },
	{ "<a@example.org>>", 0, F, false, OK, "<a@example.org>" },	/* the rest is the caller's */
	{ "", 0, F, false, SYN, NULL },
	{ "<", 0, F, false, SYN, NULL },
	/* Quoted-string: qtextSMTP and quoted-pairSMTP; equal forms, one canonical. */
	{ "<\"john smith\"@example.org>", 0, F, false, OK, "<\"john smith\"@example.org>" },
	{ "<\"joe\"@example.org>", 0, F, false, OK, "<joe@example.org>" },
	{ "<\"\\j\\o\\e\"@example.org>", 0, F, false, OK, "<joe@example.org>" },
	{ "<\"a\\b\"@example.org>", 0, F, false, OK, "<ab@example.org>" },
	{ "<\"a.b\"@example.org>", 0, F, false, OK, "<a.b@example.org>" },
	{ "<\"a..b\"@example.org>", 0, F, false, OK, "<\"a..b\"@example.org>" },
	{ "<\".a\"@example.org>", 0, F, false, OK, "<\".a\"@example.org>" },
	{ "<\"a\\\"b\"@example.org>", 0, F, false, OK, "<\"a\\\"b\"@example.org>" },
	{ "<\"a\\\\b\"@example.org>", 0, F, false, OK, "<\"a\\\\b\"@example.org>" },
	{ "<\"a\\ b\"@example.org>", 0, F, false, OK, "<\"a b\"@example.org>" },
	{ "<\"a@b\"@example.org>", 0, F, false, OK, "<\"a@b\"@example.org>" },
	{ "<\"a>b\"@example.org>", 0, F, false, OK, "<\"a>b\"@example.org>" },
	{ "<\"\"@example.org>", 0, F, false, OK, "<\"\"@example.org>" },
	{ "<\"a\"b\"@example.org>", 0, F, false, SYN, NULL },
	{ "<\"ab@example.org>", 0, F, false, SYN, NULL },
	{ "<\"a\tb\"@example.org>", 0, F, false, SYN, NULL },
	{ "<\"a\\\tb\"@example.org>", 0, F, false, SYN, NULL },
	{ "<\"a\\\"@example.org>", 0, F, false, SYN, NULL },
	{ "<\"a\".b@example.org>", 0, F, false, SYN, NULL },
	{ "<a.\"b\"@example.org>", 0, F, false, SYN, NULL },
	/* Domains: LDH labels, no underscore, no empty label, case kept as sent. */
	{ "<a@EXAMPLE.Org>", 0, F, false, OK, "<a@EXAMPLE.Org>" },
	{ "<a@x>", 0, F, false, OK, "<a@x>" },
	{ "<a@1.2.3.4>", 0, F, false, OK, "<a@1.2.3.4>" },
	{ "<a@x-y.example>", 0, F, false, OK, "<a@x-y.example>" },
	{ "<a@xn--bcher-kva.example>", 0, F, false, OK, "<a@xn--bcher-kva.example>" },
	{ "<a@-x.example>", 0, F, false, SYN, NULL },
	{ "<a@x-.example>", 0, F, false, SYN, NULL },
	{ "<a@x..example>", 0, F, false, SYN, NULL },
	{ "<a@.example>", 0, F, false, SYN, NULL },
	{ "<a@example.>", 0, F, false, SYN, NULL },
	{ "<a@x_y.example>", 0, F, false, SYN, NULL },
	{ "<a@x y.example>", 0, F, false, SYN, NULL },
	/* Address literals (4.1.3): IPv4, all four IPv6 forms, the general form. */
	{ "<a@[192.0.2.1]>", 0, F, false, OK, "<a@[192.0.2.1]>" },
	{ "<a@[255.255.255.255]>", 0, F, false, OK, "<a@[255.255.255.255]>" },
	{ "<a@[010.0.0.1]>", 0, F, false, OK, "<a@[010.0.0.1]>" },
	{ "<a@[256.0.0.1]>", 0, F, false, SYN, NULL },
	{ "<a@[1.2.3]>", 0, F, false, SYN, NULL },
	{ "<a@[1.2.3.4.5]>", 0, F, false, SYN, NULL },
	{ "<a@[1234.1.1.1]>", 0, F, false, SYN, NULL },
	{ "<a@[1.2.3.4>", 0, F, false, SYN, NULL },
	{ "<a@[]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:2001:db8:0:0:0:0:0:1]>", 0, F, false, OK, "<a@[IPv6:2001:db8:0:0:0:0:0:1]>" },
	{ "<a@[IPv6:2001:DB8:0000:0:0:0:0:1]>", 0, F, false, OK, "<a@[IPv6:2001:DB8:0000:0:0:0:0:1]>" },
	{ "<a@[IPv6:2001:db8::1]>", 0, F, false, OK, "<a@[IPv6:2001:db8::1]>" },
	{ "<a@[ipv6:2001:db8::1]>", 0, F, false, OK, "<a@[ipv6:2001:db8::1]>" },
	{ "<a@[IPv6:::]>", 0, F, false, OK, "<a@[IPv6:::]>" },
	{ "<a@[IPv6:::1]>", 0, F, false, OK, "<a@[IPv6:::1]>" },
	{ "<a@[IPv6:1::]>", 0, F, false, OK, "<a@[IPv6:1::]>" },
	{ "<a@[IPv6:1:2:3::4:5:6]>", 0, F, false, OK, "<a@[IPv6:1:2:3::4:5:6]>" },
	{ "<a@[IPv6:1:2:3:4:5:6::]>", 0, F, false, OK, "<a@[IPv6:1:2:3:4:5:6::]>" },
	{ "<a@[IPv6:1:2:3:4:5:6:7::]>", 0, F, false, SYN, NULL },	/* :: is 2 groups or more */
	{ "<a@[IPv6:1:2:3:4::5:6:7]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1:2:3:4:5:6:7]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1:2:3:4:5:6:7:8:9]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1::2::3]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1:::2]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6::1:2:3:4:5:6:7]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1:2:3:4:5:6:7:]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:12345::1]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:g::1]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>", 0, F, false, OK, "<a@[IPv6:1:2:3:4:5:6:192.0.2.1]>" },
	{ "<a@[IPv6:1:2:3:4:5:192.0.2.1]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:::ffff:192.0.2.1]>", 0, F, false, OK, "<a@[IPv6:::ffff:192.0.2.1]>" },
	{ "<a@[IPv6:::192.0.2.1]>", 0, F, false, OK, "<a@[IPv6:::192.0.2.1]>" },
	{ "<a@[IPv6:1:2:3:4::192.0.2.1]>", 0, F, false, OK, "<a@[IPv6:1:2:3:4::192.0.2.1]>" },
	{ "<a@[IPv6:1:2::3:4:192.0.2.1]>", 0, F, false, OK, "<a@[IPv6:1:2::3:4:192.0.2.1]>" },
	{ "<a@[IPv6:1:2:3:4:5::192.0.2.1]>", 0, F, false, SYN, NULL },	/* 4 groups at most */
	{ "<a@[IPv6:1::192.0.2.256]>", 0, F, false, SYN, NULL },
	{ "<a@[IPv6:1::192.0.2.1:1]>", 0, F, false, SYN, NULL },
	{ "<a@[x-tag:any~thing]>", 0, F, false, OK, "<a@[x-tag:any~thing]>" },
	{ "<a@[tag:]>", 0, F, false, SYN, NULL },
	{ "<a@[:abc]>", 0, F, false, SYN, NULL },
	{ "<a@[tag:a\\b]>", 0, F, false, SYN, NULL },
	{ "<a@[tag:a b]>", 0, F, false, SYN, NULL },
	{ "<a@[#123]>", 0, F, false, SYN, NULL },	/* App. F.4: no #-literals */
	/* Source routes (4.1.1.3, F.2): accepted, then dropped. */
	{ "<@a.example:u@c.example>", 0, F, false, OK, "<u@c.example>" },
	{ "<@a.example,@b.example:u@c.example>", 0, R, false, OK, "<u@c.example>" },
	{ "<@a.example:@b.example:u@c.example>", 0, F, false, SYN, NULL },
	{ "<@a.example,u@c.example>", 0, F, false, SYN, NULL },
	{ "<@:u@c.example>", 0, F, false, SYN, NULL },
	{ "<@a.example:>", 0, F, false, SYN, NULL },
	{ "<@[192.0.2.1]:u@c.example>", 0, F, false, SYN, NULL },
	{ "<@a.example:postmaster>", 0, F, false, SYN, NULL },
	/* Characters that have no place in a path. */
	{ "<a\0b@example.org>", 17, F, false, SYN, NULL },
	{ "<a@exa\0mple.org>", 16, F, false, SYN, NULL },
	{ "<a\rb@example.org>", 0, F, false, SYN, NULL },
	{ "<a\nb@example.org>", 0, F, false, SYN, NULL },
	{ "<a\x7f@example.org>", 0, F, false, SYN, NULL },
	/* RFC 6531: UTF-8 only after SMTPUTF8, and only valid UTF-8 (RFC 3629). */
	{ "<j\xc3\xb8rn@example.org>", 0, F, false, UTF, NULL },
	{ "<j\xc3\xb8rn@example.org>", 0, F, true, OK, "<j\xc3\xb8rn@example.org>" },
	{ "<a@b\xc3\xbc" "cher.example>", 0, R, false, UTF, NULL },
	{ "<a@b\xc3\xbc" "cher.example>", 0, R, true, OK, "<a@b\xc3\xbc" "cher.example>" },
	{ "<\"\xe2\x98\x83 x\"@example.org>", 0, F, true, OK, "<\"\xe2\x98\x83 x\"@example.org>" },
	{ "<\xf0\x9f\x93\xa7@example.org>", 0, F, true, OK, "<\xf0\x9f\x93\xa7@example.org>" },
	{ "<a\xc3@example.org>", 0, F, true, SYN, NULL },		/* cut short */
	{ "<a\xc3(@example.org>", 0, F, true, SYN, NULL },		/* bad continuation */
	{ "<a\xc0\xaf@example.org>", 0, F, true, SYN, NULL },		/* overlong '/' */
	{ "<a\xe0\x80\xaf@example.org>", 0, F, true, SYN, NULL },	/* overlong, 3 bytes */
	{ "<a\xed\xa0\x80@example.org>", 0, F, true, SYN, NULL },	/* surrogate */
	{ "<a\xf4\x90\x80\x80@example.org>", 0, F, true, SYN, NULL },	/* past U+10FFFF */
	{ "<a\xff@example.org>", 0, F, true, SYN, NULL },
	{ "<a\x80@example.org>", 0, F, false, SYN, NULL },		/* not UTF-8: 501, not 553 */
	{ "<\"a\xc3\"@example.org>", 0, F, true, SYN, NULL },
	{ "<a@b\xc3.example>", 0, F, true, SYN, NULL },
	/*
	 * A UTF-8 domain must map (UTS 46) to letters, digits, hyphens and
	 * dots: fullwidth forms map to ASCII '@' '/' '[' ']' ':' '.', which
	 * would turn one domain into another address or a literal.
	 */
	{ "<a@b\xef\xbc\xa0" "example.org>", 0, F, true, SYN, NULL },	/* b\uFF20example.org */
	{ "<a@b\xef\xbc\xa0" "example.org>", 0, R, true, SYN, NULL },
	{ "<a@a\xef\xbc\x8f" "b.example>", 0, F, true, SYN, NULL },		/* a\uFF0Fb */
	{ "<a@\xef\xbc\xbb" "1\xef\xbc\x8e" "2\xef\xbc\x8e" "3\xef\xbc\x8e" "4\xef\xbc\xbd>",
	    0, F, true, SYN, NULL },						/* [1.2.3.4] */
	{ "<a@x\xef\xbc\x9a" "25.example>", 0, F, true, SYN, NULL },		/* x\uFF1A25 */
	{ "<a@x\xef\xbc\x8e\xef\xbc\x8e" "example>", 0, F, true, SYN, NULL },	/* an empty label */
	{ "<a@b\xc3\xbc" "cher\xe3\x80\x82" "example>", 0, F, true, OK,		/* U+3002 is a dot */
	    "<a@b\xc3\xbc" "cher\xe3\x80\x82" "example>" },
	{ "<a@\xef\xbd\x85" "xample.org>", 0, F, true, OK, "<a@\xef\xbd\x85" "xample.org>" },
};

START_TEST(path_table)
{
	const struct path_case *c = &paths[_i];
	size_t n = c->len != 0 ? c->len : strlen(c->path), used = 0;
	struct address a;
	char out[SMTP_PATH_MAX + 8];
	enum address_result got = address_parse_path(c->path, n, c->kind, c->utf8, &a, &used);

	ck_assert_msg(got == c->want, "%s: got %d, want %d", c->path, got, c->want);
	if (c->want == ADDRESS_OK) {
		address_format(&a, out, sizeof(out));
		ck_assert_str_eq(out, c->canonical);
		ck_assert_msg(used <= n && c->path[used - 1] == '>', "%s: used %zu", c->path, used);
	}
}
END_TEST

/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets; 501 beyond. */
static enum address_result
parse_built(size_t local, size_t domain, bool quoted, bool route, size_t *path_len)
{
	static char buf[2048];
	struct address a;
	size_t o = 0, used;

	buf[o++] = '<';
	if (route) {
		memcpy(buf + o, "@r.example:", 11);
		o += 11;
	}
	if (quoted)
		buf[o++] = '"';
	for (size_t i = 0; i < local - (quoted ? 2 : 0); i++)
		buf[o++] = 'l';
	if (quoted)
		buf[o++] = '"';
	buf[o++] = '@';
	/* Labels of up to 63 octets: "ddd...d." */
	for (size_t i = 0; i < domain; i++)
		buf[o++] = (i % 64 == 63) ? '.' : 'd';
	if (buf[o - 1] == '.')
		buf[o - 1] = 'd';
	buf[o++] = '>';
	*path_len = o;
	return address_parse_path(buf, o, PATH_FORWARD, false, &a, &used);
}

START_TEST(length_limits)
{
	size_t n;

	ck_assert_int_eq(parse_built(64, 10, false, false, &n), ADDRESS_OK);
	ck_assert_int_eq(parse_built(65, 10, false, false, &n), ADDRESS_TOO_LONG);
	ck_assert_int_eq(parse_built(64, 10, true, false, &n), ADDRESS_OK);
	ck_assert_int_eq(parse_built(65, 10, true, false, &n), ADDRESS_TOO_LONG);
	ck_assert_int_eq(parse_built(300, 10, true, false, &n), ADDRESS_TOO_LONG);
	ck_assert_int_eq(parse_built(1000, 10, false, false, &n), ADDRESS_TOO_LONG);
	/* The whole path, brackets included, is 256 at most. */
	ck_assert_int_eq(parse_built(1, 252, false, false, &n), ADDRESS_OK);
	ck_assert_uint_eq(n, 256);
	ck_assert_int_eq(parse_built(1, 253, false, false, &n), ADDRESS_TOO_LONG);
	ck_assert_uint_eq(n, 257);
	ck_assert_int_eq(parse_built(64, 189, false, false, &n), ADDRESS_OK);
	ck_assert_uint_eq(n, 256);
	ck_assert_int_eq(parse_built(64, 190, false, false, &n), ADDRESS_TOO_LONG);
	ck_assert_int_eq(parse_built(1, 256, false, false, &n), ADDRESS_TOO_LONG);
	ck_assert_int_eq(parse_built(1, 1500, false, false, &n), ADDRESS_TOO_LONG);
	/* A source route counts towards the path. */
	ck_assert_int_eq(parse_built(1, 241, false, true, &n), ADDRESS_OK);
	ck_assert_int_eq(parse_built(1, 242, false, true, &n), ADDRESS_TOO_LONG);
}
END_TEST

START_TEST(label_of_63_octets)
{
	char buf[128];
	struct address a;
	size_t used;
	int n;

	n = snprintf(buf, sizeof(buf), "<a@%063d.example>", 0);
	ck_assert_int_eq(address_parse_path(buf, (size_t)n, F, false, &a, &used), ADDRESS_OK);
	n = snprintf(buf, sizeof(buf), "<a@%064d.example>", 0);
	ck_assert_int_eq(address_parse_path(buf, (size_t)n, F, false, &a, &used), ADDRESS_SYNTAX);
}
END_TEST

/* Equivalent forms compare equal once parsed (RFC 5321 4.1.2). */
START_TEST(quoted_forms_compare_equal)
{
	static const char *const forms[] = {
		"<joe.bloggs@example.org>", "<\"joe.bloggs\"@example.org>",
		"<\"joe\\.bloggs\"@example.org>", "<\"\\j\\o\\e.bloggs\"@example.org>",
	};
	struct address first, a;
	size_t used;

	ck_assert_int_eq(address_parse_path(forms[0], strlen(forms[0]), F, false, &first, &used), OK);
	for (size_t i = 1; i < sizeof(forms) / sizeof(forms[0]); i++) {
		ck_assert_int_eq(address_parse_path(forms[i], strlen(forms[i]), F, false, &a, &used), OK);
		ck_assert_uint_eq(a.local_len, first.local_len);
		ck_assert_mem_eq(a.local, first.local, a.local_len);
	}
}
END_TEST

START_TEST(utf8_validation)
{
	ck_assert(address_valid_utf8("", 0));
	ck_assert(address_valid_utf8("plain", 5));
	ck_assert(address_valid_utf8("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9));
	ck_assert(address_valid_utf8("\xf4\x8f\xbf\xbf", 4));		/* U+10FFFF */
	ck_assert(!address_valid_utf8("\xf4\x90\x80\x80", 4));
	ck_assert(!address_valid_utf8("\xc1\xbf", 2));
	ck_assert(!address_valid_utf8("\xed\xbf\xbf", 3));
	ck_assert(!address_valid_utf8("\xe2\x82", 2));
	ck_assert(!address_valid_utf8("\xf8\x88\x80\x80\x80", 5));
}
END_TEST

/* U-labels and A-labels name one domain; case never matters. */
START_TEST(domain_keys)
{
	char out[SMTP_DOMAIN_MAX + 1];

	ck_assert_uint_eq(address_domain_key("Example.ORG", 11, out, sizeof(out)), 11);
	ck_assert_str_eq(out, "example.org");
	ck_assert_uint_eq(address_domain_key("B\xc3\xbc" "cher.Example", 15, out, sizeof(out)), 21);
	ck_assert_str_eq(out, "xn--bcher-kva.example");
	ck_assert_uint_ne(address_domain_key("XN--BCHER-KVA.example", 21, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "xn--bcher-kva.example");
	ck_assert_uint_ne(address_domain_key("\xe4\xbe\x8b\xe3\x81\x88.\xe3\x83\x86\xe3\x82\xb9\xe3\x83\x88",
	    16, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "xn--r8jz45g.xn--zckzah");
	ck_assert_uint_ne(address_domain_key("[IPv6:2001:DB8::1]", 18, out, sizeof(out)), 0);
	ck_assert_str_eq(out, "[ipv6:2001:db8::1]");
	ck_assert_uint_eq(address_domain_key("b\xc3" "cher.example", 13, out, sizeof(out)), 0);
	ck_assert_uint_eq(address_domain_key("example.org", 11, out, 5), 0);
	ck_assert_uint_eq(address_domain_key("", 0, out, sizeof(out)), 0);
	/* Mapped to something that is not a host name: no key at all. */
	ck_assert_uint_eq(address_domain_key("b\xef\xbc\xa0" "example.org", 15, out, sizeof(out)), 0);
	ck_assert_uint_eq(address_domain_key("\xef\xbc\xbb" "1\xef\xbc\x8e" "2\xef\xbc\xbd", 11,
	    out, sizeof(out)), 0);
	ck_assert_uint_eq(address_domain_key("\xef\xbd\x85" "xample.org", 13, out, sizeof(out)), 11);
	ck_assert_str_eq(out, "example.org");
}
END_TEST

/* What a session answers for each kind of bad path. */
struct reply_case {
	const char *input;
	size_t	reply;
	const char *expect;
};

#define EHLO "EHLO c.example\r\n"
#define MAIL "MAIL FROM:<a@example.org>\r\n"

static const struct reply_case replies[] = {
	{ EHLO "MAIL FROM:<a@@example.org>\r\n", 2, "501 5.1.7 Bad sender address syntax" },
	{ EHLO "MAIL FROM:<postmaster>\r\n", 2, "501 5.1.7 Bad sender address syntax" },
	{ EHLO "MAIL FROM:<@a.example:b@example.org>\r\n", 2, "250 2.1.0 Ok" },
	{ EHLO "MAIL FROM:<" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@example.org>\r\n", 2, "501 5.1.7 Sender address too long" },
	{ EHLO MAIL "RCPT TO:<>\r\n", 3, "501 5.1.3 Bad recipient address syntax" },
	{ EHLO MAIL "RCPT TO:<a..b@example.org>\r\n", 3, "501 5.1.3 Bad recipient address syntax" },
	{ EHLO MAIL "RCPT TO:<a@[IPv6:1:2:3:4:5:6:7::]>\r\n", 3,
	    "501 5.1.3 Bad recipient address syntax" },
	{ EHLO MAIL "RCPT TO:<" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@example.org>\r\n", 3, "501 5.1.3 Recipient address too long" },
	{ EHLO MAIL "RCPT TO:<@a.example,@b.example:b@example.org>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT TO:<\"b c\"@example.org>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT TO:<Postmaster>\r\n", 3, "250 2.1.5 Ok" },
	{ EHLO MAIL "RCPT TO:<b\xc3\xb8@example.org>\r\n", 3,
	    "553 5.6.7 Must declare SMTPUTF8 to send a UTF-8 address" },
	{ EHLO "MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<b\xc3\xb8@example.org>\r\n", 3,
	    "250 2.1.5 Ok" },
	{ EHLO "MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<b\xc3@example.org>\r\n", 3,
	    "501 5.1.3 Bad recipient address syntax" },
	{ EHLO "MAIL FROM:<a\xed\xa0\x80@example.org> SMTPUTF8\r\n", 2,
	    "501 5.1.7 Bad sender address syntax" },
	/* A UTF-8 domain that maps to what no host name holds is bad syntax. */
	{ EHLO "MAIL FROM:<a@b\xef\xbc\xa0" "example.org> SMTPUTF8\r\n", 2,
	    "501 5.1.7 Bad sender address syntax" },
	{ EHLO "MAIL FROM:<a@example.org> SMTPUTF8\r\nRCPT TO:<a@b\xef\xbc\xa0" "example.org>\r\n",
	    3, "501 5.1.3 Bad recipient address syntax" },
	/* SMTPUTF8 lasts one transaction. */
	{ EHLO "MAIL FROM:<a@example.org> SMTPUTF8\r\nRSET\r\n" MAIL
	    "RCPT TO:<b\xc3\xb8@example.org>\r\n", 5,
	    "553 5.6.7 Must declare SMTPUTF8 to send a UTF-8 address" },
};

START_TEST(reply_table)
{
	const struct reply_case *c = &replies[_i / 2];
	struct harness h;

	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, c->input, strlen(c->input), _i % 2);
	ck_assert_str_eq(harness_reply(&h, c->reply), c->expect);
	harness_finish(&h);
}
END_TEST

/* Return-Path keeps a UTF-8 sender as sent; Received says UTF8SMTP. */
START_TEST(utf8_sender_is_kept_as_sent)
{
	static const char input[] = EHLO "MAIL FROM:<j\xc3\xb8rn@b\xc3\xbc" "cher.example> SMTPUTF8\r\n"
	    "RCPT TO:<b@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	struct harness h;
	char *msg;

	harness_init(&h);
	routes_finish(&h.routes);
	harness_run(&h, input, strlen(input), 0);
	msg = harness_message(&h, NULL, NULL);
	ck_assert_ptr_nonnull(msg);
	ck_assert_msg(strncmp(msg, "Return-Path: <j\xc3\xb8rn@b\xc3\xbc" "cher.example>\n", 33) == 0,
	    "%s", msg);
	ck_assert_ptr_nonnull(strstr(msg, " with UTF8SMTP id "));
	free(msg);
	harness_finish(&h);
}
END_TEST

static Suite *
address_suite(void)
{
	Suite *s = suite_create("address");
	TCase *tc = tcase_create("address");

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, path_table, 0, (int)(sizeof(paths) / sizeof(paths[0])));
	tcase_add_test(tc, length_limits);
	tcase_add_test(tc, label_of_63_octets);
	tcase_add_test(tc, quoted_forms_compare_equal);
	tcase_add_test(tc, utf8_validation);
	tcase_add_test(tc, domain_keys);
	tcase_add_loop_test(tc, reply_table, 0, 2 * (int)(sizeof(replies) / sizeof(replies[0])));
	tcase_add_test(tc, utf8_sender_is_kept_as_sent);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(address_suite());
}
