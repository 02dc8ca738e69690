/*
 * route.c: recipient address to Maildir.
 *
 * Promises: only directories named in the configuration come out, never a
 * name built from client input; look-ups are binary searches, so a large
 * mailbox map costs O(log n) per RCPT. Matching is case-insensitive for
 * both parts of the address: RFC 5321 2.4 leaves local-part case to the
 * receiver, and Postfix and OpenSMTPD fold it too.
 */
#include "route.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static char *
lower_dup(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++)
		d[i] = (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] - 'A' + 'a') : s[i];
	d[n] = '\0';
	return d;
}

int
routes_add_domain(struct routes *rt, const char *domain)
{
	char **grown = realloc(rt->domains, (rt->ndomains + 1) * sizeof(*grown));

	if (grown == NULL)
		return -1;
	rt->domains = grown;
	if ((rt->domains[rt->ndomains] = lower_dup(domain, strlen(domain))) == NULL)
		return -1;
	rt->ndomains++;
	return 0;
}

int
routes_add_mailbox(struct routes *rt, const char *address, const char *maildir, unsigned line)
{
	struct mailbox *grown = realloc(rt->boxes, (rt->nboxes + 1) * sizeof(*grown));
	struct mailbox *m;

	if (grown == NULL)
		return -1;
	rt->boxes = grown;
	m = &rt->boxes[rt->nboxes];
	m->key = lower_dup(address, strlen(address));
	m->maildir = strdup(maildir);
	m->line = line;
	if (m->key == NULL || m->maildir == NULL)
		return -1;
	rt->nboxes++;
	return 0;
}

void
routes_free(struct routes *rt)
{
	for (size_t i = 0; i < rt->ndomains; i++)
		free(rt->domains[i]);
	for (size_t i = 0; i < rt->nboxes; i++) {
		free(rt->boxes[i].key);
		free(rt->boxes[i].maildir);
	}
	free(rt->domains);
	free(rt->boxes);
	rt->domains = NULL;
	rt->boxes = NULL;
	rt->ndomains = rt->nboxes = 0;
}

static int
cmp_domain(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
cmp_mailbox(const void *a, const void *b)
{
	const struct mailbox *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c != 0 ? c : (x->line > y->line) - (x->line < y->line);
}

unsigned
routes_finish(struct routes *rt)
{
	if (rt->ndomains > 0)	/* qsort(NULL, 0, ...) is undefined */
		qsort(rt->domains, rt->ndomains, sizeof(*rt->domains), cmp_domain);
	if (rt->nboxes > 0)
		qsort(rt->boxes, rt->nboxes, sizeof(*rt->boxes), cmp_mailbox);
	for (size_t i = 1; i < rt->nboxes; i++)
		if (strcmp(rt->boxes[i - 1].key, rt->boxes[i].key) == 0)
			return rt->boxes[i].line;
	return 0;
}

int
routes_have_destination(const struct routes *rt)
{
	return rt->default_maildir != NULL || rt->nboxes > 0;
}

static const struct mailbox *
find_box(const struct routes *rt, const char *key)
{
	size_t lo = 0, hi = rt->nboxes;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, rt->boxes[mid].key);

		if (c == 0)
			return &rt->boxes[mid];
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

/* Is any mailbox line for this domain, so its unknown users are refused? */
static int
domain_has_boxes(const struct routes *rt, const char *domain)
{
	for (size_t i = 0; i < rt->nboxes; i++) {
		const char *at = strchr(rt->boxes[i].key, '@');

		if (at != NULL && strcmp(at + 1, domain) == 0)
			return 1;
	}
	return 0;
}

static int
domain_listed(const struct routes *rt, const char *domain)
{
	return rt->ndomains > 0 && bsearch(&domain, rt->domains, rt->ndomains, sizeof(*rt->domains),
	    cmp_domain) != NULL;
}

enum route_result
routes_lookup(const struct routes *rt, const struct address *a, const char **maildir)
{
	char key[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 3];
	const char *domain = key + a->local_len + 1;
	const struct mailbox *m;
	int postmaster = a->local_len == 10 && strncasecmp(a->local, "postmaster", 10) == 0;

	if (a->bare) {
		/* <postmaster> alone: the default Maildir, else the first mailbox line. */
		*maildir = rt->default_maildir ? rt->default_maildir : rt->boxes[0].maildir;
		return ROUTE_OK;
	}
	snprintf(key, sizeof(key), "%s@%s", a->local, a->domain);
	for (char *k = key; *k != '\0'; k++)
		if (*k >= 'A' && *k <= 'Z')
			*k = (char)(*k - 'A' + 'a');
	if ((m = find_box(rt, key)) != NULL || (m = find_box(rt, domain - 1)) != NULL) {
		*maildir = m->maildir;
		return ROUTE_OK;
	}
	if (rt->ndomains > 0 && !domain_listed(rt, domain) && !domain_has_boxes(rt, domain))
		return ROUTE_NOT_OURS;
	if (domain_has_boxes(rt, domain) && !postmaster)
		return ROUTE_UNKNOWN_USER;
	if (rt->default_maildir != NULL) {
		*maildir = rt->default_maildir;
		return ROUTE_OK;
	}
	if (postmaster && rt->nboxes > 0) {
		*maildir = rt->boxes[0].maildir;
		return ROUTE_OK;
	}
	return rt->ndomains > 0 && domain_listed(rt, domain) ? ROUTE_UNKNOWN_USER : ROUTE_NOT_OURS;
}
