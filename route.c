/*
 * route.c: recipient address to Maildir.
 *
 * Promises: only directories named in the configuration come out, or a
 * Maildir++ folder ".TAG" inside one, where TAG is a short name of ASCII
 * letters, digits, '-' and '_' that already exists (or create-folders is
 * set): a local part never becomes a path otherwise, so "../", "/", NUL,
 * CR, LF or bytes that are not UTF-8 cannot reach the file system.
 * Look-ups are binary searches over sorted arrays, or one cdb probe each in
 * the compiled map, so a map of 100,000 mailboxes costs O(log n) or O(1)
 * per RCPT. Matching folds ASCII case in both parts of the address: RFC
 * 5321 2.4 leaves local-part case to the receiver, and Postfix and
 * OpenSMTPD fold it too. Domains match as A-labels (address_domain_key).
 */
#include "route.h"

#include <cdb.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"

/*
 * Records of the compiled map besides "local@domain" and "@domain", which
 * hold the Maildir. They start with a byte no address can contain.
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
	int	any_domains;
	char	first_domain[SMTP_DOMAIN_MAX + 1];
};

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

/* "local@domain" in out; 0 when it does not fit. */
static size_t
make_key(char *out, size_t size, const char *local, size_t llen, const char *domain,
    size_t dlen)
{
	if (llen + 1 + dlen >= size)
		return 0;
	memcpy(out, local, llen);
	out[llen] = '@';
	memcpy(out + llen + 1, domain, dlen);
	out[llen + 1 + dlen] = '\0';
	return llen + 1 + dlen;
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
		return make_key(key, size, "", 0, domain, dlen);
	}
	len = snprintf(path, sizeof(path), "<%s>", address);
	if (len < 0 || (size_t)len >= sizeof(path) ||
	    address_parse_path(path, (size_t)len, PATH_FORWARD, true, &a, &used) != ADDRESS_OK ||
	    used != (size_t)len || a.bare || a.domain_len == 0 ||
	    (dlen = address_domain_key(a.domain, a.domain_len, domain, sizeof(domain))) == 0)
		return 0;
	fold_ascii(a.local, a.local_len);
	return make_key(key, size, a.local, a.local_len, domain, dlen);
}

int
routes_add_mailbox(struct routes *rt, const char *address, const char *maildir, unsigned line)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = mailbox_key(address, key, sizeof(key));
	struct mailbox *grown, *m;

	if (klen == 0 || maildir[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	/* Room for "/." and the longest tag: a folder path always fits. */
	if (strlen(maildir) + 2 + ROUTE_TAG_MAX >= ROUTE_PATH_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((grown = realloc(rt->boxes, (rt->nboxes + 1) * sizeof(*grown))) == NULL)
		return -1;
	rt->boxes = grown;
	m = &rt->boxes[rt->nboxes];
	m->key = copy_string(key, klen);
	m->maildir = copy_string(maildir, strlen(maildir));
	m->line = line;
	m->implied = false;
	if (m->key == NULL || m->maildir == NULL)
		return -1;
	rt->nboxes++;
	return 0;
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

static int find_box(const struct routes *, const char *, size_t, struct route *);
static int listed(char *const *, size_t, const char *);

static int
has_postmaster(const struct routes *rt, const char *domain)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(key, sizeof(key), "postmaster", 10, domain, strlen(domain));
	struct route r;

	return klen == 0 || find_box(rt, key, klen, &r) == 1 ||
	    find_box(rt, key + 10, klen - 10, &r) == 1;
}

/* postmaster@domain with the Maildir of boxes[from] (an index: realloc moves them). */
static int
append_box(struct routes *rt, const char *domain, size_t from)
{
	char key[ROUTE_KEY_MAX];
	size_t klen = make_key(key, sizeof(key), "postmaster", 10, domain, strlen(domain));
	struct mailbox *grown = realloc(rt->boxes, (rt->nboxes + 1) * sizeof(*grown));
	struct mailbox *m;

	if (grown == NULL)
		return -1;
	rt->boxes = grown;
	m = &rt->boxes[rt->nboxes];
	m->key = copy_string(key, klen);
	m->maildir = copy_string(rt->boxes[from].maildir, strlen(rt->boxes[from].maildir));
	m->line = rt->boxes[from].line;
	m->implied = true;
	if (m->key == NULL || m->maildir == NULL)
		return -1;
	rt->nboxes++;
	return 0;
}

/*
 * RFC 5321 4.5.1: postmaster@ every served domain is deliverable. Its own
 * mailbox line, the domain's catch-all and the default Maildir come first;
 * without any of them, postmaster@DOMAIN gets the Maildir of the first
 * mailbox line for DOMAIN in the file (for a domain line without mailbox
 * lines, of the first mailbox line of all). One pass over the mailboxes, so
 * a large map stays quick to start; a compiled map carries the result.
 */
static int
add_postmasters(struct routes *rt)
{
	size_t nreal = rt->nboxes, first = 0;
	size_t *firsts;
	bool *lonely;
	int rc = 0;

	if (nreal == 0)
		return 0;
	firsts = malloc(rt->nbox_domains * sizeof(*firsts));
	lonely = calloc(rt->ndomains + 1, sizeof(*lonely));
	if (firsts == NULL || lonely == NULL) {
		free(firsts);
		free(lonely);
		return -1;
	}
	for (size_t d = 0; d < rt->nbox_domains; d++)
		firsts[d] = SIZE_MAX;
	for (size_t i = 0; i < nreal; i++) {
		const char *dom = strrchr(rt->boxes[i].key, '@') + 1;
		char **at = bsearch(&dom, rt->box_domains, rt->nbox_domains, sizeof(char *), cmp_string);
		size_t d = (size_t)(at - rt->box_domains);

		if (firsts[d] == SIZE_MAX || rt->boxes[i].line < rt->boxes[firsts[d]].line)
			firsts[d] = i;
		if (rt->boxes[i].line < rt->boxes[first].line)
			first = i;
	}
	/* Ask first, add after: appending unsorts the array find_box searches. */
	for (size_t d = 0; d < rt->nbox_domains; d++)
		if (has_postmaster(rt, rt->box_domains[d]))
			firsts[d] = SIZE_MAX;
	for (size_t d = 0; d < rt->ndomains; d++)
		lonely[d] = !listed(rt->box_domains, rt->nbox_domains, rt->domains[d]) &&
		    !has_postmaster(rt, rt->domains[d]);
	for (size_t d = 0; d < rt->nbox_domains && rc == 0; d++)
		if (firsts[d] != SIZE_MAX)
			rc = append_box(rt, rt->box_domains[d], firsts[d]);
	for (size_t d = 0; d < rt->ndomains && rc == 0; d++)
		if (lonely[d])
			rc = append_box(rt, rt->domains[d], first);
	free(lonely);
	free(firsts);
	/* Each added key is new (has_postmaster said so): no duplicates. */
	if (rc == 0 && rt->nboxes > nreal)
		qsort(rt->boxes, rt->nboxes, sizeof(*rt->boxes), cmp_mailbox);
	return rc;
}

unsigned
routes_finish(struct routes *rt)
{
	const char *first = rt->ndomains > 0 ? rt->domains[0] :
	    rt->nboxes > 0 ? strrchr(rt->boxes[0].key, '@') + 1 : NULL;

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
		rt->box_domains[i] = strrchr(rt->boxes[i].key, '@') + 1;
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
	if (rt->map != NULL) {
		close(cdb_fileno(&rt->map->cdb));
		cdb_free(&rt->map->cdb);
		free(rt->map);
	}
	rt->domains = rt->box_domains = NULL;
	rt->boxes = NULL;
	rt->map = NULL;
	rt->first_domain = NULL;
	rt->ndomains = rt->nboxes = rt->nbox_domains = 0;
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
	if (n == 0 || n + 2 + ROUTE_TAG_MAX >= sizeof(r->maildir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(r->maildir, dir, n);
	r->maildir[n] = '\0';
	r->folder = false;
	return 1;
}

/* 1 and r filled when key names a mailbox, 0 when not, -1 when the map fails. */
static int
find_box(const struct routes *rt, const char *key, size_t klen, struct route *r)
{
	if (rt->map != NULL) {
		struct cdb *db = &rt->map->cdb;
		const void *val;
		int found = cdb_find(db, key, (unsigned)klen);

		if (found <= 0)
			return found;
		if ((val = cdb_getdata(db)) == NULL)
			return -1;
		return set_maildir(r, val, cdb_datalen(db));
	}
	for (size_t lo = 0, hi = rt->nboxes; lo < hi; ) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(key, rt->boxes[mid].key);

		if (c == 0)
			return set_maildir(r, rt->boxes[mid].maildir, strlen(rt->boxes[mid].maildir));
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

static int
listed(char *const *v, size_t n, const char *s)
{
	return n > 0 && bsearch(&s, v, n, sizeof(*v), cmp_string) != NULL;
}

/* DOMAIN_LISTED | DOMAIN_BOXES for a canonical domain; -1 when the map fails. */
static int
domain_flags(const struct routes *rt, const char *domain, size_t dlen)
{
	if (rt->map != NULL) {
		struct cdb *db = &rt->map->cdb;
		char key[sizeof(MAP_DOMAIN) + SMTP_DOMAIN_MAX];
		const char *val;
		int found;

		memcpy(key, MAP_DOMAIN, sizeof(MAP_DOMAIN) - 1);
		memcpy(key + sizeof(MAP_DOMAIN) - 1, domain, dlen);
		found = cdb_find(db, key, (unsigned)(sizeof(MAP_DOMAIN) - 1 + dlen));
		if (found <= 0)
			return found;
		if (cdb_datalen(db) != 1 || (val = cdb_getdata(db)) == NULL)
			return -1;
		return val[0] - '0';
	}
	return (listed(rt->domains, rt->ndomains, domain) ? DOMAIN_LISTED : 0) |
	    (listed(rt->box_domains, rt->nbox_domains, domain) ? DOMAIN_BOXES : 0);
}

static int
any_domains(const struct routes *rt)
{
	return rt->map != NULL ? rt->map->any_domains :
	    rt->ndomains > 0;
}

/* A tag that may name a folder: no dots, so no "..", no Maildir++ hierarchy. */
static int
safe_tag(const char *p, size_t n)
{
	if (n == 0 || n > ROUTE_TAG_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_'))
			return 0;
	}
	return 1;
}

/*
 * create-folders: MAILDIR/.TAG with its "maildirfolder" marker (Courier
 * maildir(5), protocol.md 4.6); maildir.c adds the folder's tmp/, new/
 * and cur/. The Maildir itself is made by maildir_create, which syncs each
 * new directory into its parent. A folder that cannot be made durable is
 * taken back out, and the message goes to the inbox.
 */
static int
make_folder(const char *maildir, const char *folder)
{
	char marker[ROUTE_PATH_MAX + 16];
	int fd;

	if (snprintf(marker, sizeof(marker), "%s/maildirfolder", folder) >= (int)sizeof(marker) ||
	    maildir_create(maildir) == -1 || mkdir(folder, 0700) == -1)
		return -1;
	if ((fd = open(marker, O_CREAT | O_WRONLY | O_CLOEXEC, 0600)) != -1)
		close(fd);
	if (fd == -1 || maildir_sync_dir(folder) == -1 || maildir_sync_dir(maildir) == -1) {
		unlink(marker);
		rmdir(folder);
		return -1;
	}
	return 0;
}

/* File into MAILDIR/.TAG when TAG is safe and the folder is there (or may be made). */
static void
choose_folder(const struct routes *rt, struct route *r, const char *tag, size_t n)
{
	char path[ROUTE_PATH_MAX];
	struct stat st;
	int len;

	if (tag == NULL || !safe_tag(tag, n))
		return;
	len = snprintf(path, sizeof(path), "%s/.%.*s", r->maildir, (int)n, tag);
	if (len < 0 || (size_t)len >= sizeof(path))
		return;
	if (stat(path, &st) == 0 ? !S_ISDIR(st.st_mode) :
	    !rt->create_folders || make_folder(r->maildir, path) == -1)
		return;
	memcpy(r->maildir, path, (size_t)len + 1);
	r->folder = true;
}

/*
 * user+tag: the length of "user", and the tag after the delimiter. Only a
 * dot-string is split; a quoted local part is one name. 0 when not split.
 */
static size_t
split_tag(const struct routes *rt, const char *local, size_t n, const char **tag,
    size_t *tag_len)
{
	const char *delimiters = rt->delimiters != NULL ? rt->delimiters : "+";

	*tag = NULL;
	*tag_len = 0;
	if (n == 0 || local[0] == '"' || delimiters[0] == '\0')
		return 0;
	for (size_t i = 1; i < n; i++) {
		if (strchr(delimiters, local[i]) != NULL) {
			*tag = local + i + 1;
			*tag_len = n - i - 1;
			return i;
		}
	}
	return 0;
}

/*
 * A compiled map keeps add_postmasters' lines apart, for use only when no
 * default Maildir turns up at run time (-m): the parsed routes have them
 * among the mailboxes already, made after -m was known.
 */
static int
find_implied(const struct routes *rt, const char *domain, size_t dlen, struct route *r)
{
	char key[sizeof(MAP_POSTMASTER) + SMTP_DOMAIN_MAX];
	const char *val;
	int found;

	if (rt->map == NULL)
		return 0;
	memcpy(key, MAP_POSTMASTER, sizeof(MAP_POSTMASTER) - 1);
	memcpy(key + sizeof(MAP_POSTMASTER) - 1, domain, dlen);
	found = cdb_find(&rt->map->cdb, key, (unsigned)(sizeof(MAP_POSTMASTER) - 1 + dlen));
	if (found <= 0)
		return found;
	if ((val = cdb_getdata(&rt->map->cdb)) == NULL)
		return -1;
	return set_maildir(r, val, cdb_datalen(&rt->map->cdb));
}

static const char *
first_domain(const struct routes *rt)
{
	if (rt->map != NULL) {
		const char *d = rt->map->first_domain;

		return d[0] != '\0' ? d : NULL;
	}
	return rt->first_domain;
}

enum route_result
routes_lookup(const struct routes *rt, const struct address *a, struct route *r)
{
	char domain[SMTP_DOMAIN_MAX + 1], local[SMTP_LOCAL_MAX + 1], key[ROUTE_KEY_MAX];
	size_t dlen, llen, klen, base, tag_len = 0;
	const char *tag = NULL;
	int found, flags, postmaster;

	r->maildir[0] = '\0';
	r->folder = false;
	if (a->bare) {
		/* <postmaster> alone: the default Maildir, else postmaster@ the first domain. */
		const char *d = first_domain(rt);

		if (rt->default_maildir != NULL)
			return set_maildir(r, rt->default_maildir, strlen(rt->default_maildir)) == 1 ?
			    ROUTE_OK : ROUTE_TEMPFAIL;
		if (d == NULL)
			return ROUTE_NOT_OURS;
		dlen = strlen(d);
		memcpy(domain, d, dlen + 1);
		memcpy(local, "postmaster", 11);
		llen = 10;
	} else {
		if ((dlen = address_domain_key(a->domain, a->domain_len, domain, sizeof(domain))) == 0)
			return ROUTE_NOT_OURS;
		llen = a->local_len;
		memcpy(local, a->local, llen + 1);
		fold_ascii(local, llen);
	}
	klen = make_key(key, sizeof(key), local, llen, domain, dlen);
	if ((found = find_box(rt, key, klen, r)) != 0)
		return found == 1 ? ROUTE_OK : ROUTE_TEMPFAIL;

	/* The tag keeps the case the client wrote: folder names are case-sensitive. */
	base = split_tag(rt, local, llen, &tag, &tag_len);
	if (tag != NULL && !a->bare)
		tag = a->local + (tag - local);
	if (base == 0)
		base = llen;
	postmaster = base == 10 && memcmp(local, "postmaster", 10) == 0;
	found = 0;
	if (base < llen) {
		klen = make_key(key, sizeof(key), local, base, domain, dlen);
		found = find_box(rt, key, klen, r);
	}
	if (found == 0) {	/* the catch-all: "@domain" */
		klen = make_key(key, sizeof(key), "", 0, domain, dlen);
		found = find_box(rt, key, klen, r);
	}
	if (found == -1)
		return ROUTE_TEMPFAIL;
	if (found == 0) {
		if ((flags = domain_flags(rt, domain, dlen)) == -1)
			return ROUTE_TEMPFAIL;
		if (any_domains(rt) && flags == 0)
			return ROUTE_NOT_OURS;
		if ((flags & DOMAIN_BOXES) && !postmaster)
			return ROUTE_UNKNOWN_USER;
		if (rt->default_maildir != NULL) {
			if (set_maildir(r, rt->default_maildir, strlen(rt->default_maildir)) != 1)
				return ROUTE_TEMPFAIL;
		} else if (!postmaster || flags == 0 ||
		    (found = find_implied(rt, domain, dlen, r)) != 1) {
			return found == -1 ? ROUTE_TEMPFAIL :
			    flags != 0 ? ROUTE_UNKNOWN_USER : ROUTE_NOT_OURS;
		}
	}
	choose_folder(rt, r, tag, tag_len);
	return ROUTE_OK;
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
	char key[sizeof(MAP_DOMAIN) + SMTP_DOMAIN_MAX];
	size_t n = strlen(domain);
	char val = (char)('0' + flags);

	if (n > SMTP_DOMAIN_MAX) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(key, MAP_DOMAIN, sizeof(MAP_DOMAIN) - 1);
	memcpy(key + sizeof(MAP_DOMAIN) - 1, domain, n);
	return put(mk, key, sizeof(MAP_DOMAIN) - 1 + n, &val, 1);
}

int
routes_write_map(const struct routes *rt, int fd, const char *settings, size_t len)
{
	struct cdb_make mk;
	char count[32];
	size_t i = 0, j = 0;
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
	for (size_t b = 0; b < rt->nboxes && rc == 0; b++) {
		const struct mailbox *m = &rt->boxes[b];
		char key[sizeof(MAP_POSTMASTER) + SMTP_DOMAIN_MAX];
		const char *domain = strrchr(m->key, '@') + 1;
		size_t dlen = strlen(domain);

		if (!m->implied) {
			rc = put(&mk, m->key, strlen(m->key), m->maildir, strlen(m->maildir));
			continue;
		}
		memcpy(key, MAP_POSTMASTER, sizeof(MAP_POSTMASTER) - 1);
		memcpy(key + sizeof(MAP_POSTMASTER) - 1, domain, dlen);
		rc = put(&mk, key, sizeof(MAP_POSTMASTER) - 1 + dlen, m->maildir, strlen(m->maildir));
	}
	/* Both domain lists are sorted: merge them into one record per domain. */
	while (rc == 0 && (i < rt->ndomains || j < rt->nbox_domains)) {
		int c = i == rt->ndomains ? 1 : j == rt->nbox_domains ? -1 :
		    strcmp(rt->domains[i], rt->box_domains[j]);

		if (c < 0)
			rc = put_domain(&mk, rt->domains[i++], DOMAIN_LISTED);
		else if (c > 0)
			rc = put_domain(&mk, rt->box_domains[j++], DOMAIN_BOXES);
		else {
			rc = put_domain(&mk, rt->domains[i++], DOMAIN_LISTED | DOMAIN_BOXES);
			j++;
		}
	}
	if (rc != 0)
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
