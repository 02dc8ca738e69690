/*
 * route.c: recipient address to Maildir.
 *
 * Promises: only directories named in the configuration come out, with at
 * most a Maildir++ folder name ".TAG", where TAG is a short name of ASCII
 * letters, digits, '-' and '_': a local part never becomes a path
 * otherwise, so "../", "/", NUL, CR, LF or bytes that are not UTF-8 cannot
 * reach the file system. Routing itself never touches the file system.
 * The look-ups are one small interface (struct backend, after OpenSMTPD's
 * table back ends) with two implementations: binary searches over the
 * sorted arrays of the parsed lines, or one cdb probe each in the compiled
 * map, so a map of 100,000 mailboxes costs O(log n) or O(1) per RCPT.
 * Matching folds ASCII case in both parts of the address: RFC 5321 2.4
 * leaves local-part case to the receiver, and Postfix and OpenSMTPD fold
 * it too. Domains match as A-labels (address_domain_key).
 */
#include "route.h"

#include <cdb.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * Records of the compiled map besides the mailbox keys, which hold a
 * Maildir. They start with a byte no address can contain.
 */
#define MAP_VERSION	"\001version"	/* MAP_MAGIC */
#define MAP_MAGIC	"smtpd-map 1"
#define MAP_SETTINGS	"\001settings"	/* the other lines of the file */
#define MAP_NDOMAINS	"\001domains"	/* how many `domain` lines, in decimal */
#define MAP_FIRST	"\001first"	/* routes.first_domain */
#define MAP_DOMAIN	"\001d:"	/* + domain: its flags, below */
#define MAP_POSTMASTER	"\001pm:"	/* + domain: postmaster's Maildir, implied */

#define DOMAIN_LISTED	1	/* a `domain` line names it */
#define DOMAIN_BOXES	2	/* a `mailbox` line names it: unknown users get 5.1.1 */

/* What an open compiled map keeps besides the cdb itself. */
struct route_map {
	struct cdb cdb;
	bool	any_domains;
	char	first_domain[SMTP_DOMAIN_MAX + 1];
};

/*
 * The kinds of key, made by make_key alone: the parsed routes store
 * KEY_MAILBOX and KEY_POSTMASTER keys in boxes[], the map stores all three.
 */
enum key_kind {
	KEY_MAILBOX,	/* "local@domain"; an empty local part is the catch-all "@domain" */
	KEY_POSTMASTER,	/* MAP_POSTMASTER "domain": postmaster's implied Maildir */
	KEY_DOMAIN,	/* MAP_DOMAIN "domain": the domain's flags (map only) */
};

/* The key of kind for local (KEY_MAILBOX only) and domain; 0 when it does not fit. */
static size_t
make_key(enum key_kind kind, const char *local, size_t llen, const char *domain, size_t dlen,
    char *out, size_t size)
{
	const char *head = kind == KEY_MAILBOX ? local :
	    kind == KEY_POSTMASTER ? MAP_POSTMASTER : MAP_DOMAIN;
	size_t hlen = kind == KEY_MAILBOX ? llen + 1 : strlen(head);

	if (hlen + dlen >= size)
		return 0;
	memcpy(out, head, kind == KEY_MAILBOX ? llen : hlen);
	if (kind == KEY_MAILBOX)
		out[llen] = '@';
	memcpy(out + hlen, domain, dlen);
	out[hlen + dlen] = '\0';
	return hlen + dlen;
}

/* The domain part of a boxes[] key. */
static char *
key_domain(char *key)
{
	if (strncmp(key, MAP_POSTMASTER, sizeof(MAP_POSTMASTER) - 1) == 0)
		return key + sizeof(MAP_POSTMASTER) - 1;
	return strrchr(key, '@') + 1;
}

static void
fold_ascii(char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] >= 'A' && p[i] <= 'Z')
			p[i] = (char)(p[i] - 'A' + 'a');
}

static char *
copy_string(const char *s, size_t n)
{
	char *d = malloc(n + 1);

	if (d == NULL)
		return NULL;
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

int
routes_add_domain(struct routes *rt, const char *domain)
{
	char key[SMTP_DOMAIN_MAX + 1];
	size_t n = strlen(domain), klen;
	char **grown;

	if (!address_valid_domain(domain, n, true) ||
	    (klen = address_domain_key(domain, n, key, sizeof(key))) == 0) {
		errno = EINVAL;
		return -1;
	}
	if ((grown = realloc(rt->domains, (rt->ndomains + 1) * sizeof(*grown))) == NULL)
		return -1;
	rt->domains = grown;
	if ((rt->domains[rt->ndomains] = copy_string(key, klen)) == NULL)
		return -1;
	rt->ndomains++;
	return 0;
}

/* A mailbox line's address as a key: the canonical path, ASCII folded. */
static size_t
mailbox_key(const char *address, char *key, size_t size)
{
	char path[SMTP_PATH_MAX + 3], domain[SMTP_DOMAIN_MAX + 1];
	size_t n = strlen(address), used, dlen;
	struct address a;
	int len;

	if (address[0] == '@') {	/* the catch-all of a domain */
		if (!address_valid_domain(address + 1, n - 1, true) ||
		    (dlen = address_domain_key(address + 1, n - 1, domain, sizeof(domain))) == 0)
			return 0;
		return make_key(KEY_MAILBOX, "", 0, domain, dlen, key, size);
	}
	len = snprintf(path, sizeof(path), "<%s>", address);
	if (len < 0 || (size_t)len >= sizeof(path) ||
	    address_parse_path(path, (size_t)len, PATH_FORWARD, true, &a, &used) != ADDRESS_OK ||
	    used != (size_t)len || a.bare || a.domain_len == 0 ||
	    (dlen = address_domain_key(a.domain, a.domain_len, domain, sizeof(domain))) == 0)
		return 0;
	fold_ascii(a.local, a.local_len);
	return make_key(KEY_MAILBOX, a.local, a.local_len, domain, dlen, key, size);
}

/* Room for "/." and the longest tag: a folder path always fits. */
static bool
fits_with_folder(size_t n)
{
	return n + 2 + ROUTE_TAG_MAX < ROUTE_PATH_MAX;
}

/* Append a mailbox; both strings are copied. */
static int
append_box(struct routes *rt, const char *key, size_t klen, const char *maildir, unsigned line)
{
	struct mailbox *grown = realloc(rt->boxes, (rt->nboxes + 1) * sizeof(*grown));
	struct mailbox *m;

	if (grown == NULL)
		return -1;
	rt->boxes = grown;
	m = &rt->boxes[rt->nboxes];
	m->key = copy_string(key, klen);
	m->maildir = copy_string(maildir, strlen(maildir));
	m->line = line;
	if (m->key == NULL || m->maildir == NULL) {
		free(m->key);
		free(m->maildir);
		return -1;
	}
	rt->nboxes++;
	return 0;
}

int
routes_add_mailbox(struct routes *rt, const char *address, const char *maildir, unsigned line)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = mailbox_key(address, key, sizeof(key));

	if (klen == 0 || maildir[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	if (!fits_with_folder(strlen(maildir))) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return append_box(rt, key, klen, maildir, line);
}

/* Replace *field by a copy of value (NULL clears). */
static int
replace_string(char **field, const char *value)
{
	char *copy = NULL;

	if (value != NULL && (copy = copy_string(value, strlen(value))) == NULL)
		return -1;
	free(*field);
	*field = copy;
	return 0;
}

int
routes_set_maildir(struct routes *rt, const char *dir)
{
	if (dir != NULL && dir[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	if (dir != NULL && !fits_with_folder(strlen(dir))) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return replace_string(&rt->default_maildir, dir);
}

int
routes_set_delimiters(struct routes *rt, const char *chars)
{
	return replace_string(&rt->delimiters, chars);
}

static int
cmp_string(const void *a, const void *b)
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

/* Sort and drop repeats, freeing them when the array owns its strings. */
static size_t
sort_distinct(char **v, size_t n, bool owned)
{
	size_t o = 0;

	if (n == 0)
		return 0;	/* qsort(NULL, 0, ...) is undefined */
	qsort(v, n, sizeof(*v), cmp_string);
	for (size_t i = 0; i < n; i++) {
		if (o == 0 || strcmp(v[o - 1], v[i]) != 0)
			v[o++] = v[i];
		else if (owned)
			free(v[i]);
	}
	return o;
}

static bool
listed(char *const *v, size_t n, const char *s)
{
	return n > 0 && bsearch(&s, v, n, sizeof(*v), cmp_string) != NULL;
}

/*
 * The look-ups routing needs, answered alike by the parsed routes and by
 * the compiled map. Each returns -1 when the back end cannot answer (a map
 * that cannot be read); strings it hands out are borrowed from rt.
 */
struct backend {
	/* The Maildir under a make_key key: 1 and dir[0..*len), or 0 when none. */
	int	(*maildir)(const struct routes *rt, const char *key, size_t klen,
		    const char **dir, size_t *len);
	/* DOMAIN_LISTED | DOMAIN_BOXES for a canonical domain. */
	int	(*domain)(const struct routes *rt, const char *domain, size_t dlen);
	/* Are there `domain` lines at all? Without them every domain is served. */
	bool	(*any_domains)(const struct routes *rt);
	/* <postmaster>'s domain (routes.first_domain), or NULL. */
	const char *(*first_domain)(const struct routes *rt);
};

static int
array_maildir(const struct routes *rt, const char *key, size_t klen, const char **dir,
    size_t *len)
{
	(void)klen;
	for (size_t lo = 0, hi = rt->nboxes; lo < hi; ) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, rt->boxes[mid].key);

		if (c == 0) {
			*dir = rt->boxes[mid].maildir;
			*len = strlen(*dir);
			return 1;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

static int
array_domain(const struct routes *rt, const char *domain, size_t dlen)
{
	(void)dlen;
	return (listed(rt->domains, rt->ndomains, domain) ? DOMAIN_LISTED : 0) |
	    (listed(rt->box_domains, rt->nbox_domains, domain) ? DOMAIN_BOXES : 0);
}

static bool
array_any_domains(const struct routes *rt)
{
	return rt->ndomains > 0;
}

static const char *
array_first_domain(const struct routes *rt)
{
	return rt->first_domain;
}

static int
map_maildir(const struct routes *rt, const char *key, size_t klen, const char **dir,
    size_t *len)
{
	struct cdb *db = &rt->map->cdb;
	int found = cdb_find(db, key, (unsigned)klen);

	if (found <= 0)
		return found;
	if ((*dir = cdb_getdata(db)) == NULL)
		return -1;
	*len = cdb_datalen(db);
	return 1;
}

static int
map_domain(const struct routes *rt, const char *domain, size_t dlen)
{
	struct cdb *db = &rt->map->cdb;
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(KEY_DOMAIN, NULL, 0, domain, dlen, key, sizeof(key));
	const char *val;
	int found;

	if (klen == 0 || (found = cdb_find(db, key, (unsigned)klen)) == 0)
		return 0;
	if (found < 0 || cdb_datalen(db) != 1 || (val = cdb_getdata(db)) == NULL)
		return -1;
	return val[0] - '0';
}

static bool
map_any_domains(const struct routes *rt)
{
	return rt->map->any_domains;
}

static const char *
map_first_domain(const struct routes *rt)
{
	return rt->map->first_domain[0] != '\0' ? rt->map->first_domain : NULL;
}

static const struct backend array_backend = {
	array_maildir, array_domain, array_any_domains, array_first_domain,
};
static const struct backend map_backend = {
	map_maildir, map_domain, map_any_domains, map_first_domain,
};

/* The one place that tells the two apart. */
static const struct backend *
backend_of(const struct routes *rt)
{
	return rt->map != NULL ? &map_backend : &array_backend;
}

/* A mailbox of the parsed routes for postmaster@domain, its own or the catch-all. */
static bool
has_postmaster(const struct routes *rt, const char *domain)
{
	char key[ROUTE_KEY_MAX];
	size_t dlen = strlen(domain), klen;
	const char *dir;
	size_t len;

	return (klen = make_key(KEY_MAILBOX, "postmaster", 10, domain, dlen, key, sizeof(key))) == 0 ||
	    array_maildir(rt, key, klen, &dir, &len) == 1 ||
	    (klen = make_key(KEY_MAILBOX, "", 0, domain, dlen, key, sizeof(key))) == 0 ||
	    array_maildir(rt, key, klen, &dir, &len) == 1;
}

/* postmaster's implied Maildir for domain: that of boxes[from] (an index: realloc moves them). */
static int
append_postmaster(struct routes *rt, const char *domain, size_t from)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(KEY_POSTMASTER, NULL, 0, domain, strlen(domain), key, sizeof(key));

	return klen == 0 ? 0 : append_box(rt, key, klen, rt->boxes[from].maildir,
	    rt->boxes[from].line);
}

/*
 * The first mailbox line of each domain of box_domains in firsts[], SIZE_MAX
 * for a domain whose postmaster has a mailbox already; the first line of all
 * in *first.
 */
static void
first_lines(const struct routes *rt, size_t nreal, size_t *firsts, size_t *first)
{
	for (size_t d = 0; d < rt->nbox_domains; d++)
		firsts[d] = SIZE_MAX;
	*first = 0;
	for (size_t i = 0; i < nreal; i++) {
		const char *dom = key_domain(rt->boxes[i].key);
		char **at = bsearch(&dom, rt->box_domains, rt->nbox_domains, sizeof(char *), cmp_string);
		size_t d = (size_t)(at - rt->box_domains);

		if (firsts[d] == SIZE_MAX || rt->boxes[i].line < rt->boxes[firsts[d]].line)
			firsts[d] = i;
		if (rt->boxes[i].line < rt->boxes[*first].line)
			*first = i;
	}
	for (size_t d = 0; d < rt->nbox_domains; d++)
		if (has_postmaster(rt, rt->box_domains[d]))
			firsts[d] = SIZE_MAX;
}

/*
 * RFC 5321 4.5.1: postmaster@ every served domain is deliverable. Its own
 * mailbox line, the domain's catch-all and the default Maildir come first;
 * without any of them, postmaster@DOMAIN gets the Maildir of the first
 * mailbox line for DOMAIN in the file (for a domain line without mailbox
 * lines, of the first mailbox line of all), kept under a KEY_POSTMASTER
 * key, which only a look-up without a default Maildir asks for. One pass
 * over the mailboxes, so a large map stays quick to start; a compiled map
 * carries the result.
 */
static int
add_postmasters(struct routes *rt)
{
	size_t nreal = rt->nboxes, first;
	size_t *firsts;
	bool *lonely;
	int rc = 0;

	if (nreal == 0)
		return 0;
	firsts = malloc((rt->nbox_domains + 1) * sizeof(*firsts));
	lonely = calloc(rt->ndomains + 1, sizeof(*lonely));
	if (firsts == NULL || lonely == NULL) {
		free(firsts);
		free(lonely);
		return -1;
	}
	/* Ask first, add after: appending unsorts the array the questions search. */
	first_lines(rt, nreal, firsts, &first);
	for (size_t d = 0; d < rt->ndomains; d++)
		lonely[d] = !listed(rt->box_domains, rt->nbox_domains, rt->domains[d]) &&
		    !has_postmaster(rt, rt->domains[d]);
	for (size_t d = 0; d < rt->nbox_domains && rc == 0; d++)
		if (firsts[d] != SIZE_MAX)
			rc = append_postmaster(rt, rt->box_domains[d], firsts[d]);
	for (size_t d = 0; d < rt->ndomains && rc == 0; d++)
		if (lonely[d])
			rc = append_postmaster(rt, rt->domains[d], first);
	free(lonely);
	free(firsts);
	/* Each added key is new: no duplicates. */
	if (rc == 0 && rt->nboxes > nreal)
		qsort(rt->boxes, rt->nboxes, sizeof(*rt->boxes), cmp_mailbox);
	return rc;
}

unsigned
routes_finish(struct routes *rt)
{
	const char *first = rt->ndomains > 0 ? rt->domains[0] :
	    rt->nboxes > 0 ? key_domain(rt->boxes[0].key) : NULL;

	/* Before sorting, [0] is the first line of the file: <postmaster>'s domain. */
	free(rt->first_domain);
	rt->first_domain = NULL;
	if (first != NULL && (rt->first_domain = copy_string(first, strlen(first))) == NULL)
		return ROUTES_NOMEM;
	rt->ndomains = sort_distinct(rt->domains, rt->ndomains, true);
	if (rt->nboxes > 0)
		qsort(rt->boxes, rt->nboxes, sizeof(*rt->boxes), cmp_mailbox);
	free(rt->box_domains);
	rt->nbox_domains = 0;
	rt->box_domains = calloc(rt->nboxes + 1, sizeof(*rt->box_domains));
	if (rt->box_domains == NULL)
		return ROUTES_NOMEM;
	for (size_t i = 0; i < rt->nboxes; i++)
		rt->box_domains[i] = key_domain(rt->boxes[i].key);
	rt->nbox_domains = sort_distinct(rt->box_domains, rt->nboxes, false);
	for (size_t i = 1; i < rt->nboxes; i++)
		if (strcmp(rt->boxes[i - 1].key, rt->boxes[i].key) == 0)
			return rt->boxes[i].line;
	if (rt->default_maildir == NULL && add_postmasters(rt) == -1)
		return ROUTES_NOMEM;
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
	free(rt->box_domains);
	free(rt->first_domain);
	free(rt->default_maildir);
	free(rt->delimiters);
	if (rt->map != NULL) {
		close(cdb_fileno(&rt->map->cdb));
		cdb_free(&rt->map->cdb);
		free(rt->map);
	}
	memset(rt, 0, sizeof(*rt));
}

int
routes_have_destination(const struct routes *rt)
{
	return rt->default_maildir != NULL || rt->nboxes > 0 || rt->map != NULL;
}

/* The Maildir of r, from a configured string of n bytes. */
static int
set_maildir(struct route *r, const char *dir, size_t n)
{
	if (n == 0 || !fits_with_folder(n)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(r->maildir, dir, n);
	r->maildir[n] = '\0';
	return 1;
}

/* A recipient in the form keys are made of. */
struct query {
	char	local[SMTP_LOCAL_MAX + 1];	/* ASCII folded */
	size_t	llen;
	size_t	base;		/* length of the user before a tag; llen when not split */
	const char *tag;	/* the tag as the client wrote it, or NULL */
	size_t	tag_len;
	char	domain[SMTP_DOMAIN_MAX + 1];	/* address_domain_key's form */
	size_t	dlen;
	bool	postmaster;	/* the user is postmaster */
};

/* 1 and r filled when a box has key kind for q's domain, 0 when none, -1 on failure. */
static int
find_maildir(const struct routes *rt, enum key_kind kind, const char *local, size_t llen,
    const struct query *q, struct route *r)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(kind, local, llen, q->domain, q->dlen, key, sizeof(key)), len;
	const char *dir;
	int found;

	if (klen == 0)
		return 0;
	if ((found = backend_of(rt)->maildir(rt, key, klen, &dir, &len)) != 1)
		return found;
	return set_maildir(r, dir, len);
}

/* A tag that may name a folder: no dots, so no "..", no Maildir++ hierarchy. */
static bool
safe_tag(const char *p, size_t n)
{
	if (n == 0 || n > ROUTE_TAG_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return false;
	}
	return true;
}

/*
 * user+tag: the length of "user", and the tag after the delimiter. Only a
 * dot-string is split; a quoted local part is one name. n when not split.
 */
static size_t
split_tag(const struct routes *rt, const char *local, size_t n, size_t *tag_at)
{
	const char *delimiters = rt->delimiters != NULL ? rt->delimiters : "+";

	if (n == 0 || local[0] == '"' || delimiters[0] == '\0')
		return n;
	for (size_t i = 1; i < n; i++) {
		if (strchr(delimiters, local[i]) != NULL) {
			*tag_at = i + 1;
			return i;
		}
	}
	return n;
}

/* The canonical parts of a; false when the domain is none of ours to look up. */
static bool
make_query(const struct routes *rt, const struct address *a, struct query *q)
{
	const char *d;
	size_t tag_at = 0;

	if (a->bare) {	/* <postmaster> alone: postmaster@ the first domain */
		if ((d = backend_of(rt)->first_domain(rt)) == NULL)
			return false;
		q->dlen = strlen(d);
		memcpy(q->domain, d, q->dlen + 1);
	} else if ((q->dlen = address_domain_key(a->domain, a->domain_len, q->domain,
	    sizeof(q->domain))) == 0) {
		return false;
	}
	q->llen = a->local_len;
	memcpy(q->local, a->local, q->llen + 1);
	fold_ascii(q->local, q->llen);
	q->base = split_tag(rt, q->local, q->llen, &tag_at);
	/* The tag keeps the case the client wrote: folder names are case-sensitive. */
	q->tag = q->base < q->llen ? a->local + tag_at : NULL;
	q->tag_len = q->base < q->llen ? q->llen - tag_at : 0;
	q->postmaster = q->base == 10 && memcmp(q->local, "postmaster", 10) == 0;
	return true;
}

/* No mailbox line matched: the domain decides (see routes_lookup). */
static enum route_result
route_by_domain(const struct routes *rt, const struct query *q, struct route *r)
{
	const struct backend *be = backend_of(rt);
	int flags = be->domain(rt, q->domain, q->dlen), found;

	if (flags == -1)
		return ROUTE_TEMPFAIL;
	if (be->any_domains(rt) && flags == 0)
		return ROUTE_NOT_OURS;
	if ((flags & DOMAIN_BOXES) && !q->postmaster)
		return ROUTE_UNKNOWN_USER;
	if (rt->default_maildir != NULL)
		return set_maildir(r, rt->default_maildir, strlen(rt->default_maildir)) == 1 ?
		    ROUTE_OK : ROUTE_TEMPFAIL;
	if (!q->postmaster || flags == 0)
		return flags != 0 ? ROUTE_UNKNOWN_USER : ROUTE_NOT_OURS;
	found = find_maildir(rt, KEY_POSTMASTER, NULL, 0, q, r);
	return found == 1 ? ROUTE_OK : found == -1 ? ROUTE_TEMPFAIL : ROUTE_UNKNOWN_USER;
}

/*
 * The whole address, then the user of user+tag, then the domain's
 * catch-all; then the default Maildir for a served domain without mailbox
 * lines, and postmaster's implied Maildir (add_postmasters). A tag names
 * the folder unless the whole address matched.
 */
enum route_result
routes_lookup(const struct routes *rt, const struct address *a, struct route *r)
{
	enum route_result result;
	struct query q;
	int found;

	r->maildir[0] = '\0';
	r->folder[0] = '\0';
	if (a->bare && rt->default_maildir != NULL)
		return set_maildir(r, rt->default_maildir, strlen(rt->default_maildir)) == 1 ?
		    ROUTE_OK : ROUTE_TEMPFAIL;
	if (!make_query(rt, a, &q))
		return ROUTE_NOT_OURS;
	if ((found = find_maildir(rt, KEY_MAILBOX, q.local, q.llen, &q, r)) != 0)
		return found == 1 ? ROUTE_OK : ROUTE_TEMPFAIL;
	if (q.base < q.llen)
		found = find_maildir(rt, KEY_MAILBOX, q.local, q.base, &q, r);
	if (found == 0)
		found = find_maildir(rt, KEY_MAILBOX, "", 0, &q, r);
	result = found == 1 ? ROUTE_OK : found == -1 ? ROUTE_TEMPFAIL : route_by_domain(rt, &q, r);
	if (result == ROUTE_OK && q.tag != NULL && safe_tag(q.tag, q.tag_len)) {
		r->folder[0] = '.';
		memcpy(r->folder + 1, q.tag, q.tag_len);
		r->folder[q.tag_len + 1] = '\0';
	}
	return result;
}

/* One record; cdb_make_add keeps its own buffer. */
static int
put(struct cdb_make *mk, const char *key, size_t klen, const char *val, size_t vlen)
{
	if (klen > 0xffffffu || vlen > 0x7fffffffu) {
		errno = EOVERFLOW;
		return -1;
	}
	return cdb_make_add(mk, key, (unsigned)klen, val, (unsigned)vlen) == 0 ? 0 : -1;
}

static int
put_domain(struct cdb_make *mk, const char *domain, int flags)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(KEY_DOMAIN, NULL, 0, domain, strlen(domain), key, sizeof(key));
	char val = (char)('0' + flags);

	if (klen == 0) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return put(mk, key, klen, &val, 1);
}

/* Both domain lists are sorted: merge them into one record per domain. */
static int
put_domains(struct cdb_make *mk, const struct routes *rt)
{
	size_t i = 0, j = 0;
	int rc = 0;

	while (rc == 0 && (i < rt->ndomains || j < rt->nbox_domains)) {
		int c = i == rt->ndomains ? 1 : j == rt->nbox_domains ? -1 :
		    strcmp(rt->domains[i], rt->box_domains[j]);

		if (c < 0)
			rc = put_domain(mk, rt->domains[i++], DOMAIN_LISTED);
		else if (c > 0)
			rc = put_domain(mk, rt->box_domains[j++], DOMAIN_BOXES);
		else {
			rc = put_domain(mk, rt->domains[i++], DOMAIN_LISTED | DOMAIN_BOXES);
			j++;
		}
	}
	return rc;
}

int
routes_write_map(const struct routes *rt, int fd, const char *settings, size_t len)
{
	struct cdb_make mk;
	char count[32];
	int rc = 0;

	if (cdb_make_start(&mk, fd) == -1)
		return -1;
	snprintf(count, sizeof(count), "%zu", rt->ndomains);
	rc |= put(&mk, MAP_VERSION, sizeof(MAP_VERSION) - 1, MAP_MAGIC, sizeof(MAP_MAGIC) - 1);
	rc |= put(&mk, MAP_SETTINGS, sizeof(MAP_SETTINGS) - 1, settings, len);
	rc |= put(&mk, MAP_NDOMAINS, sizeof(MAP_NDOMAINS) - 1, count, strlen(count));
	if (rt->first_domain != NULL)
		rc |= put(&mk, MAP_FIRST, sizeof(MAP_FIRST) - 1, rt->first_domain,
		    strlen(rt->first_domain));
	/* The boxes' keys are make_key's already, implied postmasters too. */
	for (size_t b = 0; b < rt->nboxes && rc == 0; b++)
		rc = put(&mk, rt->boxes[b].key, strlen(rt->boxes[b].key), rt->boxes[b].maildir,
		    strlen(rt->boxes[b].maildir));
	if (rc != 0 || put_domains(&mk, rt) != 0)
		return -1;
	return cdb_make_finish(&mk) == 0 ? 0 : -1;
}

/* The value of a record the map must have, or NULL (errno EPROTO). */
static const char *
map_record(struct cdb *db, const char *key, size_t klen, size_t *len)
{
	const char *val;

	if (cdb_find(db, key, (unsigned)klen) <= 0 || (val = cdb_getdata(db)) == NULL) {
		errno = EPROTO;
		return NULL;
	}
	*len = cdb_datalen(db);
	return val;
}

int
routes_open_map(struct routes *rt, int fd, const char **settings, size_t *len)
{
	struct route_map *m = calloc(1, sizeof(*m));
	const char *val;
	size_t n;

	if (m == NULL)
		return -1;
	if (cdb_init(&m->cdb, fd) == -1) {
		free(m);
		errno = EPROTO;
		return -1;
	}
	if ((val = map_record(&m->cdb, MAP_VERSION, sizeof(MAP_VERSION) - 1, &n)) == NULL ||
	    n != sizeof(MAP_MAGIC) - 1 || memcmp(val, MAP_MAGIC, n) != 0 ||
	    (val = map_record(&m->cdb, MAP_NDOMAINS, sizeof(MAP_NDOMAINS) - 1, &n)) == NULL ||
	    n == 0)
		goto bad;
	m->any_domains = !(n == 1 && val[0] == '0');
	if (cdb_find(&m->cdb, MAP_FIRST, sizeof(MAP_FIRST) - 1) > 0) {
		n = cdb_datalen(&m->cdb);
		if (n > SMTP_DOMAIN_MAX || (val = cdb_getdata(&m->cdb)) == NULL)
			goto bad;
		memcpy(m->first_domain, val, n);
		m->first_domain[n] = '\0';
	}
	if ((*settings = map_record(&m->cdb, MAP_SETTINGS, sizeof(MAP_SETTINGS) - 1, len)) == NULL)
		goto bad;
	rt->map = m;
	return 0;
bad:
	cdb_free(&m->cdb);
	free(m);
	errno = EPROTO;
	return -1;
}
