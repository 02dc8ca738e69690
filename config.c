/*
 * config.c: the command line, the configuration file and its compiled map,
 * and the user a session runs as.
 *
 * Promises: every line of the file goes through one table of keys; a bad
 * line (unknown key, bad value, too many words, a NUL byte, a single-value
 * key given twice) refuses the whole configuration with a reason naming
 * the line. A compiled map (smtpd -C) stands for the file only while the
 * file is the very one it was compiled from; otherwise the file is parsed
 * and a warning logged. Leaves the map's records to route.c
 * (routes_write_map, routes_open_map) and the 421 reply to smtpd.c.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <limits.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "tls.h"

#define CONFIG_LINE_MAX		4096	/* one line, its LF and a NUL included */
#define CONFIG_WORDS_MAX	64	/* a key and its values */
#define USAGE "usage: smtpd [-c FILE] [-m MAILDIR] [-h HOSTNAME] | smtpd -C FILE | smtpd -T FILE"

/*
 * The text a map keeps besides its cdb records: first "MAP_FROM" and the
 * identity of the file it was compiled from, then each line of the file
 * that is not a route, as "LINE TEXT\n", applied again by every session.
 */
#define MAP_FROM	"smtpd-config-from"
#define IDENTITY_MAX	192

struct key;
typedef int parse_fn(struct config *c, const struct key *k, void *field, char **words);

enum key_flags {
	KEY_REPEATABLE	= 1,	/* may be given on several lines */
	KEY_ROUTE	= 2,	/* kept in the map's cdb records, not as text */
};

/*
 * One row per key: the parse function gets the words after the key, NULL
 * after the last (their count already within the row's bounds), and a
 * pointer to the row's field.
 * A new key is one row, and a parse function only when none below fits
 * (string, count, size, bool, hostname). A repeatable list (KEY_REPEATABLE)
 * appends to an array its field owns, as proxy-from does. Sketches for the
 * kinds not yet needed: an enum gives its row a NULL-terminated list of
 * words and stores the index of the one given (proxy-protocol has its
 * words in proxy.c, beside what they mean); a program with arguments takes
 * up to CONFIG_WORDS_MAX - 1 words, already NULL-terminated as execv wants.
 * Every key but the routes reaches a compiled map as its line of text.
 */
struct key {
	const char *name;
	parse_fn *parse;
	size_t	field;			/* offsetof(struct config, ...) */
	unsigned min_words, max_words;	/* values after the key */
	unsigned flags;			/* enum key_flags */
	unsigned long long min, max;	/* numbers */
	const char *needs;		/* what too few words lack; NULL: "a value" */
};

static parse_fn parse_domain, parse_mailbox, parse_string, parse_hostname, parse_delimiters,
    parse_bool, parse_count, parse_size, parse_proxy_mode, parse_proxy_from, parse_program;

#define FIELD(f)	offsetof(struct config, f)

/* The usual rows: one value into one field; a number within bounds. */
#define ONE_VALUE(key, fn, f) \
	{ .name = key, .parse = fn, .field = FIELD(f), .min_words = 1, .max_words = 1 }
#define NUMBER(key, fn, f, lo, hi) { .name = key, .parse = fn, .field = FIELD(f), \
	.min_words = 1, .max_words = 1, .min = lo, .max = hi }

static const struct key keys[] = {
	{ .name = "mailbox", .parse = parse_mailbox, .min_words = 2, .max_words = 2,
	  .flags = KEY_ROUTE | KEY_REPEATABLE, .needs = "an address and a directory" },
	{ .name = "domain", .parse = parse_domain, .min_words = 1, .max_words = 1,
	  .flags = KEY_ROUTE | KEY_REPEATABLE },
	ONE_VALUE("maildir", parse_string, maildir),
	ONE_VALUE("hostname", parse_hostname, hostname),
	ONE_VALUE("user", parse_string, user),
	/* The key alone, with no value, turns sub-addresses off. */
	{ .name = "recipient-delimiter", .parse = parse_delimiters, .field = FIELD(delimiters),
	  .min_words = 0, .max_words = 1 },
	ONE_VALUE("create-folders", parse_bool, routes.create_folders),
	NUMBER("max-message-size", parse_size, session.max_message_size, 1, 1ULL << 40),
	/* parse_count stores an unsigned: .max stays within UINT_MAX. */
	NUMBER("max-recipients", parse_count, session.max_recipients, 1, 1000000),
	NUMBER("timeout", parse_count, session.timeout, 1, 86400),
	NUMBER("session-timeout", parse_count, session.session_timeout, 1, 7 * 86400),
	/* STARTTLS (RFC 3207): a path, or a systemd credential's name (tls.h). */
	ONE_VALUE("tls-cert", parse_string, tls_cert),
	ONE_VALUE("tls-key", parse_string, tls_key),
	ONE_VALUE("tls-ticket-keys", parse_string, tls_ticket_keys),
	ONE_VALUE("require-tls", parse_bool, session.require_tls),
	ONE_VALUE("proxy-protocol", parse_proxy_mode, proxy_protocol),
	{ .name = "proxy-from", .parse = parse_proxy_from, .field = FIELD(proxy_from),
	  .min_words = 1, .max_words = 1, .flags = KEY_REPEATABLE, .needs = "an address" },
	{ .name = "filter", .parse = parse_program, .field = FIELD(filter),
	  .min_words = 1, .max_words = CONFIG_WORDS_MAX - 1, .needs = "a program" },
	NUMBER("filter-timeout", parse_count, session.filter_timeout, 1, 86400),
};
#define NKEYS	(sizeof(keys) / sizeof(keys[0]))
_Static_assert(NKEYS <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

static int
config_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int
line_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
config_error(struct config *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(c->error, sizeof(c->error), fmt, ap);
	va_end(ap);
	return -1;
}

/* A fault of the line being applied: "FILE line N: why". */
static int
line_error(struct config *c, const char *fmt, ...)
{
	char why[sizeof(c->error)];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return config_error(c, "%s line %u: %s", c->config_file, c->lineno, why);
}

void
config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
	c->session.max_message_size = 26214400;
	c->session.max_recipients = 100;
	c->session.timeout = 300;
	c->session.session_timeout = 3600;
	c->session.filter_timeout = 60;
}

static int
parse_string(struct config *c, const struct key *k, void *field, char **words)
{
	char **s = field;

	(void)k;
	if ((*s = strdup(words[0])) == NULL)
		return config_error(c, "out of memory");
	return 0;
}

static int
parse_hostname(struct config *c, const struct key *k, void *field, char **words)
{
	size_t len = strlen(words[0]);

	(void)k;
	if (!address_valid_domain(words[0], len, false) || len >= sizeof(c->hostname))
		return line_error(c, "bad hostname");
	memcpy(field, words[0], len + 1);
	return 0;
}

/*
 * recipient-delimiter: the characters that start a sub-address tag, any
 * one of them (default "+"); none at all turns sub-addresses off. Only
 * atext other than the dot, so that "user+tag" stays a Dot-string.
 */
static int
parse_delimiters(struct config *c, const struct key *k, void *field, char **words)
{
	const char *value = words[0] != NULL ? words[0] : "";
	char **s = field;

	(void)k;
	for (const char *p = value; *p != '\0'; p++)
		if (!((*p >= '!' && *p <= '~') && strchr("\"(),.:;<>@[\\]", *p) == NULL))
			return line_error(c, "recipient-delimiter takes characters such as + or -, "
			    "not %c", *p);
	if ((*s = strdup(value)) == NULL)
		return config_error(c, "out of memory");
	return 0;
}

static int
parse_bool(struct config *c, const struct key *k, void *field, char **words)
{
	if (strcmp(words[0], "yes") != 0 && strcmp(words[0], "no") != 0)
		return line_error(c, "%s is yes or no", k->name);
	*(bool *)field = words[0][0] == 'y';
	return 0;
}

/*
 * A program and its arguments, kept as execv(2) wants them. The path must
 * be absolute: the filter runs without a shell and with a PATH of our
 * choosing, so a bare name would mean something else than the operator saw.
 */
static int
parse_program(struct config *c, const struct key *k, void *field, char **words)
{
	char ***argv = field;
	size_t n = 0;

	if (words[0][0] != '/')
		return line_error(c, "%s needs an absolute path, not %s", k->name, words[0]);
	while (words[n] != NULL)
		n++;
	if ((*argv = calloc(n + 1, sizeof(**argv))) == NULL)
		return config_error(c, "out of memory");
	for (size_t i = 0; i < n; i++)
		if (((*argv)[i] = strdup(words[i])) == NULL)
			return config_error(c, "out of memory");
	return 0;
}

/*
 * The decimal digits that lead p[0..n), up to the one that would take the
 * value past max: how many were taken, their value in *out.
 */
static size_t
take_number(const char *p, size_t n, unsigned long long max, unsigned long long *out)
{
	unsigned long long v = 0;
	size_t i = 0;

	for (; i < n && p[i] >= '0' && p[i] <= '9'; i++) {
		unsigned d = (unsigned)(p[i] - '0');

		if (d > max || v > (max - d) / 10)
			break;
		v = v * 10 + d;
	}
	*out = v;
	return i;
}

/* A decimal number in [k->min, k->max], and nothing else. */
static int
parse_number(struct config *c, const struct key *k, const char *s, unsigned long long *out)
{
	size_t n = strlen(s);
	unsigned long long v;

	if (take_number(s, n, k->max, &v) != n || n == 0 || v < k->min)
		return line_error(c, "%s needs a number from %llu to %llu", k->name, k->min, k->max);
	*out = v;
	return 0;
}

static int
parse_count(struct config *c, const struct key *k, void *field, char **words)
{
	unsigned long long v;

	if (parse_number(c, k, words[0], &v) == -1)
		return -1;
	*(unsigned *)field = (unsigned)v;
	return 0;
}

static int
parse_size(struct config *c, const struct key *k, void *field, char **words)
{
	return parse_number(c, k, words[0], field);
}

static int
parse_domain(struct config *c, const struct key *k, void *field, char **words)
{
	(void)k;
	(void)field;
	if (routes_add_domain(&c->routes, words[0]) == 0)
		return 0;
	if (errno == EINVAL)
		return line_error(c, "bad domain %s", words[0]);
	return line_error(c, "out of memory for domain %s", words[0]);
}

static int
parse_mailbox(struct config *c, const struct key *k, void *field, char **words)
{
	(void)k;
	(void)field;
	if (routes_add_mailbox(&c->routes, words[0], words[1], c->lineno) == 0)
		return 0;
	if (errno == EINVAL)
		return line_error(c, "bad mailbox address %s", words[0]);
	if (errno == ENAMETOOLONG)
		return line_error(c, "directory name too long");
	return config_error(c, "out of memory");
}

static int
parse_proxy_mode(struct config *c, const struct key *k, void *field, char **words)
{
	if (proxy_parse_mode(words[0], field) == -1)
		return line_error(c, "%s is no, v1, v2 or any", k->name);
	return 0;
}

/* One more balancer: ADDRESS[/PREFIX], appended to the list c owns. */
static int
parse_proxy_from(struct config *c, const struct key *k, void *field, char **words)
{
	struct proxy_net net, *grown;
	char why[160];

	(void)k;
	(void)field;
	if (proxy_parse_net(words[0], &net, why, sizeof(why)) == -1)
		return line_error(c, "%s", why);
	grown = realloc(c->proxy_from, (c->nproxy_from + 1) * sizeof(*grown));
	if (grown == NULL)
		return config_error(c, "out of memory");
	grown[c->nproxy_from++] = net;
	c->proxy_from = grown;
	return 0;
}

/* Append n bytes to the text -C keeps in the map. */
static int
keep(struct config *c, const char *p, size_t n)
{
	if (c->settings_size - c->settings_len < n) {
		size_t size = (c->settings_size + n) * 2;
		char *grown = realloc(c->settings, size);

		if (grown == NULL)
			return config_error(c, "out of memory");
		c->settings = grown;
		c->settings_size = size;
	}
	memcpy(c->settings + c->settings_len, p, n);
	c->settings_len += n;
	return 0;
}

/* -C keeps every line that is not a route, numbered, for the map's text. */
static int
keep_line(struct config *c, const char *line)
{
	char number[16];
	int n = snprintf(number, sizeof(number), "%u ", c->lineno);

	if (n < 0 || (size_t)n >= sizeof(number))
		return config_error(c, "out of memory");
	if (keep(c, number, (size_t)n) == -1 || keep(c, line, strlen(line)) == -1)
		return -1;
	return keep(c, "\n", 1);
}

static const struct key *
find_key(const char *name, size_t n)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strlen(keys[i].name) == n && memcmp(keys[i].name, name, n) == 0)
			return &keys[i];
	return NULL;
}

/* One line, NUL-terminated: "key value ...", words separated by blanks. */
static int
apply_line(struct config *c, char *line)
{
	char *words[CONFIG_WORDS_MAX + 1], *save = NULL, *w;
	const char *start = line;
	size_t n = 0, len = 0;
	const struct key *k;
	unsigned *first;

	while (*start == ' ' || *start == '\t')
		start++;
	while (start[len] != '\0' && start[len] != ' ' && start[len] != '\t')
		len++;
	if (*start == '\0' || *start == '#')
		return 0;
	if ((k = find_key(start, len)) == NULL)
		return line_error(c, "unknown key %.*s", (int)len, start);
	first = &c->key_line[k - keys];
	if (*first != 0 && !(k->flags & KEY_REPEATABLE))
		return line_error(c, "%s already given on line %u", k->name, *first);
	if (*first == 0)
		*first = c->lineno;
	if (c->compile && !(k->flags & KEY_ROUTE) && keep_line(c, line) == -1)
		return -1;
	for (w = strtok_r(line, " \t", &save); w != NULL; w = strtok_r(NULL, " \t", &save)) {
		if (n == CONFIG_WORDS_MAX)
			return line_error(c, "too many words");
		words[n++] = w;
	}
	if (n - 1 < k->min_words)
		return line_error(c, "%s needs %s", k->name, k->needs != NULL ? k->needs : "a value");
	if (n - 1 > k->max_words)
		return line_error(c, "too many words");
	words[n] = NULL;
	return k->parse(c, k, (char *)c + k->field, words + 1);
}

/*
 * One line of the file or of a map's text: len bytes in buf, which has room
 * for a NUL after them. A NUL byte inside is refused, never cut at: a
 * NUL-led "domain" line would vanish and "maildir /x/md\0/../y" would turn
 * into /x/md.
 */
static int
apply_text(struct config *c, char *buf, size_t len, unsigned lineno)
{
	c->lineno = lineno;
	if (memchr(buf, '\0', len) != NULL)
		return line_error(c, "NUL byte; a configuration is text");
	while (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return apply_line(c, buf);
}

/*
 * The file read with read(2), a line at a time: no stdio, whose FILE and
 * buffer every session would allocate for a few lines.
 */
struct lines {
	int	fd;
	size_t	start, end;		/* the bytes not yet returned */
	char	buf[CONFIG_LINE_MAX];
};

enum { LINES_END, LINES_LINE, LINES_TOO_LONG, LINES_ERROR };

/*
 * The next line, in l->buf: LINES_LINE with *line and *len (LF removed, NUL
 * bytes kept: apply_text refuses them, and there is room for a NUL at
 * line[len]); LINES_END; LINES_TOO_LONG for a line that does not fit with
 * its NUL; LINES_ERROR with errno set.
 */
static int
next_line(struct lines *l, char **line, size_t *len)
{
	char *nl;
	ssize_t n = 1;

	while ((nl = memchr(l->buf + l->start, '\n', l->end - l->start)) == NULL && n > 0) {
		memmove(l->buf, l->buf + l->start, l->end - l->start);
		l->end -= l->start;
		l->start = 0;
		if (l->end == sizeof(l->buf))
			return LINES_TOO_LONG;
		if ((n = read(l->fd, l->buf + l->end, sizeof(l->buf) - l->end)) > 0)
			l->end += (size_t)n;
		else if (n == -1 && errno != EINTR)
			return LINES_ERROR;
		else if (n == -1)
			n = 1;
	}
	*line = l->buf + l->start;
	*len = (nl != NULL ? (size_t)(nl - *line) : l->end - l->start);
	l->start += *len + (nl != NULL);
	return nl != NULL || *len > 0 ? LINES_LINE : LINES_END;
}

/*
 * What identifies the file as stat(2) sees it. The change time is in it
 * because no one can set it: cp -p or mv of an older copy, touch -r, even
 * chmod or chown, all give the file a new one.
 */
static int
identity(struct config *c, const struct stat *s, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s %ju %ju %jd %jd.%09ld %jd.%09ld\n", MAP_FROM,
	    (uintmax_t)s->st_dev, (uintmax_t)s->st_ino, (intmax_t)s->st_size,
	    (intmax_t)s->st_mtim.tv_sec, s->st_mtim.tv_nsec,
	    (intmax_t)s->st_ctim.tv_sec, s->st_ctim.tv_nsec);

	if (n < 0 || (size_t)n >= size)
		return config_error(c, "cannot describe %s", c->config_file);
	return n;
}

static bool
same_file(const struct stat *a, const struct stat *b)
{
	return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
	    a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
	    a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Parse the file; *file is what it was (and, for -C, the map's first text line). */
static int
read_config(struct config *c, struct stat *file)
{
	struct lines l;
	char id[IDENTITY_MAX], *line;
	unsigned lineno = 0;
	size_t len;
	int rc = 0, got = LINES_LINE, n;

	if ((l.fd = openat(AT_FDCWD, c->config_file, O_RDONLY | O_CLOEXEC)) == -1)
		return config_error(c, "cannot open %s: %s", c->config_file, strerror(errno));
	l.start = l.end = 0;
	if (fstat(l.fd, file) == -1)
		rc = config_error(c, "cannot read %s: %s", c->config_file, strerror(errno));
	else if (c->compile && ((n = identity(c, file, id, sizeof(id))) == -1 ||
	    keep(c, id, (size_t)n) == -1))
		rc = -1;
	while (rc == 0 && (got = next_line(&l, &line, &len)) == LINES_LINE)
		rc = apply_text(c, line, len, ++lineno);
	if (got == LINES_TOO_LONG) {
		c->lineno = lineno + 1;
		rc = line_error(c, "line too long");
	} else if (got == LINES_ERROR) {
		rc = config_error(c, "cannot read %s: %s", c->config_file, strerror(errno));
	}
	close(l.fd);
	return rc;
}

/* A map's text after its first line: "LINE TEXT\n" each, as keep_line wrote them. */
static int
apply_map_settings(struct config *c, const char *p, size_t n)
{
	char line[CONFIG_LINE_MAX];

	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl != NULL ? (size_t)(nl - p) : n;
		unsigned long long lineno;
		size_t i = take_number(p, len, UINT_MAX, &lineno);

		if (i == 0 || i >= len || p[i] != ' ' || len - i > sizeof(line))
			return config_error(c, "%s.cdb: damaged settings; run smtpd -C %s again",
			    c->config_file, c->config_file);
		memcpy(line, p + i + 1, len - i - 1);
		if (apply_text(c, line, len - i - 1, (unsigned)lineno) == -1)
			return -1;
		p += len + (nl != NULL);
		n -= len + (nl != NULL);
	}
	return 0;
}

static int
map_path(struct config *c, char *buf, size_t size, const char *suffix)
{
	int n = snprintf(buf, size, "%s.cdb%s", c->config_file, suffix);

	if (n < 0 || (size_t)n >= size)
		return config_error(c, "%s: name too long", c->config_file);
	return 0;
}

/*
 * -c FILE: FILE.cdb stands for FILE when it was compiled from this very
 * file (its identity is the map's first text line), so a large map costs
 * one open and one mmap, not a parse. Any other map is put aside with a
 * warning: someone changed FILE and forgot smtpd -C. (Postfix warns that a
 * table is older than its source file and still uses it; here a stale map
 * would route mail by lines no longer in the file.)
 */
static int
load_file(struct config *c)
{
	char path[PATH_MAX], id[IDENTITY_MAX];
	struct stat file, map;
	const char *text;
	size_t len;
	int fd, n;

	if (fstatat(AT_FDCWD, c->config_file, &file, 0) == -1)
		return config_error(c, "cannot open %s: %s", c->config_file, strerror(errno));
	if (map_path(c, path, sizeof(path), "") == -1)
		return -1;
	if (fstatat(AT_FDCWD, path, &map, 0) == -1) {
		if (errno != ENOENT)
			return config_error(c, "cannot read %s: %s", path, strerror(errno));
		return read_config(c, &file);
	}
	/* Formatted only with a map to compare: 4,000 instructions a session. */
	if ((n = identity(c, &file, id, sizeof(id))) == -1)
		return -1;
	if ((fd = openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC)) == -1)
		return config_error(c, "cannot read %s: %s", path, strerror(errno));
	if (routes_open_map(&c->routes, fd, &text, &len) == -1) {
		int err = errno;

		close(fd);
		return config_error(c, "cannot read %s: %s", path,
		    err == EPROTO ? "not a map made by smtpd -C" : strerror(err));
	}
	if (len < (size_t)n || memcmp(text, id, (size_t)n) != 0) {
		routes_free(&c->routes);	/* closes fd */
		log_info("warning: %s was not compiled from %s as it is now; parsing %s "
		    "(run smtpd -C %s)", path, c->config_file, c->config_file, c->config_file);
		return read_config(c, &file);
	}
	return apply_map_settings(c, text + n, len - (size_t)n);
}

/* routes keeps its own copies of the default Maildir (-m wins) and the delimiters. */
static int
set_route_strings(struct config *c)
{
	const char *dir = c->maildir_option != NULL ? c->maildir_option : c->maildir;

	if (routes_set_maildir(&c->routes, dir) == -1)
		return errno == ENOMEM ? config_error(c, "out of memory") :
		    config_error(c, "%s: %s", c->maildir_option != NULL ? "-m" : "maildir",
		    errno == EINVAL ? "empty directory name" : "directory name too long");
	if (routes_set_delimiters(&c->routes, c->delimiters) == -1)
		return config_error(c, "out of memory");
	return 0;
}

/* The TLS files, borrowed by the session; a certificate needs its key. */
static int
finish_tls(struct config *c)
{
	if ((c->tls_cert == NULL) != (c->tls_key == NULL))
		return config_error(c, "%s: tls-cert and tls-key go together",
		    c->config_file != NULL ? c->config_file : "configuration");
	c->session.tls.cert_file = c->tls_cert;
	c->session.tls.key_file = c->tls_key;
	c->session.tls.ticket_keys_file = c->tls_ticket_keys;
	return 0;
}

/*
 * -C: the certificate and key must load and match, so a bad renewal shows
 * before mail does. A credential's name means nothing outside its unit, so
 * it is checked only where $CREDENTIALS_DIRECTORY is set.
 */
static int
check_tls_files(struct config *c)
{
	char why[256];

	if (c->tls_cert == NULL)
		return 0;
	if ((strchr(c->tls_cert, '/') == NULL || strchr(c->tls_key, '/') == NULL) &&
	    getenv("CREDENTIALS_DIRECTORY") == NULL) {
		fprintf(stderr, "smtpd: tls-cert and tls-key name credentials: not checked here\n");
		return 0;
	}
	if (tls_check_pair(c->tls_cert, c->tls_key, why, sizeof(why)) == -1)
		return config_error(c, "%s: %s", c->config_file, why);
	return 0;
}

/* After the file: command-line options win, then the checks of the whole. */
static int
finish_config(struct config *c)
{
	unsigned dup;

	if (set_route_strings(c) == -1)
		return -1;
	if (c->hostname_option != NULL) {
		size_t len = strlen(c->hostname_option);

		if (!address_valid_domain(c->hostname_option, len, false) || len >= sizeof(c->hostname))
			return config_error(c, "bad hostname given with -h");
		memcpy(c->hostname, c->hostname_option, len + 1);
	}
	if (c->hostname[0] == '\0' && gethostname(c->hostname, sizeof(c->hostname) - 1) == -1)
		snprintf(c->hostname, sizeof(c->hostname), "localhost");
	if (!routes_have_destination(&c->routes))
		return config_error(c, "no destination: give -m, a maildir or a mailbox line");
	/* Without the list, any client could claim any address in a header. */
	if (c->proxy_protocol != PROXY_OFF && c->nproxy_from == 0)
		return config_error(c, "proxy-protocol needs proxy-from: the balancers' addresses");
	if ((dup = routes_finish(&c->routes)) == ROUTES_NOMEM)
		return config_error(c, "out of memory");
	if (dup != 0)
		return config_error(c, "%s line %u: duplicate mailbox address", c->config_file, dup);
	c->session.hostname = c->hostname;
	c->session.routes = &c->routes;
	c->session.filter = c->filter;
	return finish_tls(c);
}

/*
 * -C only: is the filter program there and executable by us now? A
 * session does not ask: a filter that cannot be started is 451 4.7.1 for
 * that message (filter_run), so an upgrade that briefly removes it does
 * not turn every connection away with 421.
 */
static int
check_filter(struct config *c)
{
	unsigned line = c->key_line[find_key("filter", strlen("filter")) - keys];
	struct stat st;

	if (c->filter == NULL)
		return 0;
	if (fstatat(AT_FDCWD, c->filter[0], &st, 0) == -1)
		return config_error(c, "%s line %u: filter %s: %s", c->config_file, line,
		    c->filter[0], strerror(errno));
	if (!S_ISREG(st.st_mode) || access(c->filter[0], X_OK) == -1)
		return config_error(c, "%s line %u: filter %s: not an executable file",
		    c->config_file, line, c->filter[0]);
	return 0;
}

int
config_load(struct config *c)
{
	if (c->config_file != NULL && load_file(c) == -1)
		return -1;
	return finish_config(c);
}

static bool
newer(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

/*
 * Before FILE is read, wait until the file system's clock, as it stamps
 * fd (beside FILE), has passed FILE's change time: then a change made to
 * FILE after it was read, even within the same tick of that coarse clock,
 * gives FILE a change time the map did not record. A few ms at most.
 */
static int
wait_past_change(struct config *c, int fd, const struct stat *file)
{
	struct stat mine;

	for (int tries = 0; tries < 2000; tries++) {
		struct timespec ms = { 0, 1000000 };

		if (futimens(fd, NULL) == -1 || fstat(fd, &mine) == -1)
			return config_error(c, "cannot write %s.cdb.tmp: %s", c->config_file,
			    strerror(errno));
		if (newer(&mine.st_mtim, &file->st_ctim))
			return 0;
		nanosleep(&ms, NULL);
	}
	return config_error(c, "%s changed after now by the clock; run smtpd -C again later",
	    c->config_file);
}

/*
 * The map gets FILE's owner and group, and its mode less any write bits
 * but the owner's: whoever may read FILE may read the map (a root:mail
 * 0640 file read by the shipped unit's User=mail), and no one else.
 */
static int
write_map(struct config *c, int fd, const struct stat *file, const char *tmp)
{
	if (routes_write_map(&c->routes, fd, c->settings, c->settings_len) == -1)
		return config_error(c, "cannot write %s: %s", tmp, strerror(errno));
	if (fchown(fd, file->st_uid, file->st_gid) == -1)
		return config_error(c, "cannot give %s the owner and group of %s: %s", tmp,
		    c->config_file, strerror(errno));
	if (fchmod(fd, file->st_mode & 0644) == -1 || fsync(fd) == -1)
		return config_error(c, "cannot write %s: %s", tmp, strerror(errno));
	return 0;
}

/*
 * -C FILE: check FILE as a session would, write FILE.cdb beside it through
 * a temporary file, fsync and rename it into place, so a session sees the
 * old map or the new one, never half of one.
 */
int
config_compile(struct config *c)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	struct stat before, file, after;
	int fd;

	if (fstatat(AT_FDCWD, c->config_file, &before, 0) == -1)
		return config_error(c, "cannot open %s: %s", c->config_file, strerror(errno));
	if (!S_ISREG(before.st_mode))
		return config_error(c, "%s is not a regular file", c->config_file);
	if (map_path(c, path, sizeof(path), "") == -1 || map_path(c, tmp, sizeof(tmp), ".tmp") == -1)
		return -1;
	unlinkat(AT_FDCWD, tmp, 0);	/* left by a compile that died; ours alone by O_EXCL below */
	if ((fd = openat(AT_FDCWD, tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600)) == -1)
		return config_error(c, "cannot create %s: %s", tmp, strerror(errno));
	if (wait_past_change(c, fd, &before) == -1 || read_config(c, &file) == -1 ||
	    finish_config(c) == -1 || check_tls_files(c) == -1 || check_filter(c) == -1 ||
	    write_map(c, fd, &file, tmp) == -1)
		goto failed;
	if (close(fd) == -1) {
		fd = -1;
		config_error(c, "cannot write %s: %s", tmp, strerror(errno));
		goto failed;
	}
	fd = -1;
	if (!same_file(&before, &file) || fstatat(AT_FDCWD, c->config_file, &after, 0) == -1 ||
	    !same_file(&file, &after)) {
		config_error(c, "%s changed while it was compiled; run smtpd -C again",
		    c->config_file);
		goto failed;
	}
	if (rename(tmp, path) == -1) {
		config_error(c, "cannot rename %s: %s", tmp, strerror(errno));
		goto failed;
	}
	return 0;
failed:
	if (fd != -1)
		close(fd);
	unlinkat(AT_FDCWD, tmp, 0);
	return -1;
}

int
config_parse_options(struct config *c, int argc, char **argv)
{
	const char *compile_file = NULL;
	int ch;

	while ((ch = getopt(argc, argv, "c:m:h:C:T:")) != -1) {
		switch (ch) {
		case 'T':
			c->rotate_file = optarg;
			break;
		case 'C':
			compile_file = optarg;
			break;
		case 'c':
			c->config_file = optarg;
			break;
		case 'm':
			c->maildir_option = optarg;
			break;
		case 'h':
			c->hostname_option = optarg;
			break;
		default:
			return config_error(c, USAGE);
		}
	}
	if (optind != argc)
		return config_error(c, USAGE);
	if (compile_file != NULL) {
		c->config_file = compile_file;
		c->compile = true;
	}
	return 0;
}

/*
 * Become `user` and its groups, so that no parser bug ever runs as root.
 * Called after the config and the connection are set up and before the
 * first byte is read from the client. Not root: stay, if already that user.
 */
int
config_drop_privileges(struct config *c)
{
	struct passwd *pw;

	if (c->user == NULL)
		return 0;
	errno = 0;
	if ((pw = getpwnam(c->user)) == NULL)
		return config_error(c, "unknown user %s", c->user);
	if (geteuid() != 0) {
		if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
			return 0;
		return config_error(c, "cannot become user %s: not started as root", c->user);
	}
	/* Groups first: after setuid() there is no right left to change them. */
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		return config_error(c, "cannot become user %s: %s", c->user, strerror(errno));
	/* Verify: the change must be complete and irreversible. */
	if (pw->pw_uid != 0 && (setuid(0) != -1 || geteuid() != pw->pw_uid ||
	    getuid() != pw->pw_uid || getegid() != pw->pw_gid || getgid() != pw->pw_gid))
		return config_error(c, "cannot become user %s: still privileged", c->user);
	return 0;
}

void
config_free(struct config *c)
{
	routes_free(&c->routes);
	/* A string key's value is the config's own copy. */
	for (size_t i = 0; i < NKEYS; i++) {
		if (keys[i].parse == parse_string || keys[i].parse == parse_delimiters) {
			char **value = (char **)((char *)c + keys[i].field);

			free(*value);
			*value = NULL;
		}
	}
	free(c->settings);
	free(c->proxy_from);
	for (size_t i = 0; c->filter != NULL && c->filter[i] != NULL; i++)
		free(c->filter[i]);
	free(c->filter);
	c->filter = NULL;
	c->session.filter = NULL;
	c->settings = NULL;
	c->proxy_from = NULL;
	c->nproxy_from = 0;
	c->settings_len = c->settings_size = 0;
}
