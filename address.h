/* address.h: RFC 5321 4.1.2 paths and mailboxes, with RFC 6531 UTF-8. */
#ifndef SMTPD_ADDRESS_H
#define SMTPD_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

#define SMTP_LOCAL_MAX	64	/* RFC 5321 4.5.3.1.1 */
#define SMTP_DOMAIN_MAX	255	/* RFC 5321 4.5.3.1.2 */
#define SMTP_PATH_MAX	256	/* RFC 5321 4.5.3.1.3, brackets included */

struct address {
	char	local[SMTP_LOCAL_MAX + 1];	/* canonical: unquoted when it can be */
	size_t	local_len;
	char	domain[SMTP_DOMAIN_MAX + 1];	/* as sent; literals keep [] */
	size_t	domain_len;
	bool	null;		/* the null path <> */
	bool	bare;		/* <postmaster> with no domain */
	bool	utf8;		/* has non-ASCII octets */
};

enum address_result {
	ADDRESS_OK,
	ADDRESS_SYNTAX,		/* 501 */
	ADDRESS_TOO_LONG,	/* 501: over an RFC 5321 4.5.3.1 limit */
	ADDRESS_NEEDS_UTF8,	/* 553 5.6.7: non-ASCII without SMTPUTF8 */
};

/* Which paths a command takes: MAIL allows <>, RCPT allows <postmaster>. */
enum path_kind { PATH_REVERSE, PATH_FORWARD };

/*
 * Parse the path at the start of p[0..n): "<...>" with an optional source
 * route, which is accepted and dropped (RFC 5321 4.1.1.3). A UTF-8 domain
 * must be a valid IDN whose A-label form is letters, digits, hyphens and
 * dots, else ADDRESS_SYNTAX. On success *used is the number of bytes
 * consumed.
 */
enum address_result address_parse_path(const char *p, size_t n, enum path_kind kind,
    bool smtputf8, struct address *a, size_t *used);

/* Is p[0..n) strictly valid UTF-8 (no overlong forms, no surrogates)? */
bool address_valid_utf8(const char *p, size_t n);

/* Is p[0..n) a domain name (LDH labels; U-labels when utf8)? */
bool address_valid_domain(const char *p, size_t n, bool utf8);

/*
 * The form domains are compared in: ASCII lower case, U-labels turned into
 * A-labels (so bücher.example and XN--BCHER-KVA.example are one domain);
 * address literals are only lower-cased. Returns the length written to
 * out (NUL-terminated), or 0 when p[0..n) is not a valid IDN, maps to
 * anything but an LDH name, or is too long.
 */
size_t address_domain_key(const char *p, size_t n, char *out, size_t size);

/* Write the path "<local@domain>" (or "<>") into buf; returns its length. */
size_t address_format(const struct address *a, char *buf, size_t size);

#endif
