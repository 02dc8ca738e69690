/*
 * check_route.c: recipient to Maildir. The same table runs against the
 * parsed configuration and against the compiled map (routes_write_map,
 * routes_open_map), so both give the same answer for every rule; then
 * sub-address folders, hostile local parts, and one message to several
 * Maildirs.
 */
#define _XOPEN_SOURCE 700
#include <check.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "maildir.h"
#include "route.h"

static char top[64];
static struct routes rt;

static const char *
at(const char *name)
{
	static char buf[8][256];
	static unsigned next;
	char *p = buf[next++ % 8];

	snprintf(p, 256, "%s/%s", top, name);
	return p;
}

static void
make_dir(const char *name)
{
	ck_assert_int_eq(mkdir(at(name), 0700), 0);
}

static void
make_top(void)
{
	snprintf(top, sizeof(top), "/tmp/smtpd-route.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	memset(&rt, 0, sizeof(rt));
}

static void
remove_top(void)
{
	char cmd[128];

	routes_free(&rt);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	ck_assert_int_eq(system(cmd), 0);
}

static void
add_box(const char *address, const char *dir, unsigned line)
{
	ck_assert_msg(routes_add_mailbox(&rt, address, at(dir), line) == 0, "%s", address);
}

/* Swap the parsed routes for the map compiled from them, as smtpd -C and -c do. */
static void
use_compiled_map(void)
{
	static const char settings[] = "1 hostname mx.example\n";
	const char *text;
	size_t len;
	int fd = open(at("map.cdb"), O_CREAT | O_EXCL | O_RDWR, 0600);
	char *keep_default = rt.default_maildir, *keep_delims = rt.delimiters;
	bool keep_create = rt.create_folders;

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(routes_write_map(&rt, fd, settings, sizeof(settings) - 1), 0);
	close(fd);
	/* The settings pass to the new routes; the rest is freed. */
	rt.default_maildir = rt.delimiters = NULL;
	routes_free(&rt);
	rt.default_maildir = keep_default;
	rt.delimiters = keep_delims;
	rt.create_folders = keep_create;
	fd = open(at("map.cdb"), O_RDONLY);
	ck_assert_int_eq(routes_open_map(&rt, fd, &text, &len), 0);
	ck_assert_uint_eq(len, sizeof(settings) - 1);
	ck_assert_mem_eq(text, settings, len);
	routes_finish(&rt);
}

/*
 * A directory at path that is a Maildir++ folder by its marker
 * ("maildirfolder"), by its three subdirectories ("subdirs"), or that has
 * only new/ ("new-only") and so is none.
 */
static void
make_folder(const char *path, const char *how)
{
	char sub[512];
	int fd;

	ck_assert_int_eq(mkdir(path, 0700), 0);
	if (strcmp(how, "maildirfolder") == 0) {
		snprintf(sub, sizeof(sub), "%s/maildirfolder", path);
		fd = open(sub, O_CREAT | O_WRONLY, 0600);
		ck_assert_int_ne(fd, -1);
		close(fd);
		return;
	}
	snprintf(sub, sizeof(sub), "%s/new", path);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	if (strcmp(how, "subdirs") != 0)
		return;
	snprintf(sub, sizeof(sub), "%s/cur", path);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
	snprintf(sub, sizeof(sub), "%s/tmp", path);
	ck_assert_int_eq(mkdir(sub, 0700), 0);
}

/* Entries of dir whose name starts with a dot ("." and ".." aside): folders. */
static int
count_folders(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (dp == NULL)
		return 0;
	while ((e = readdir(dp)) != NULL)
		n += e->d_name[0] == '.' && strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dp);
	return n;
}

/* Entries of dir, "." and ".." aside; -1 when it cannot be read. */
static int
count_entries(const char *dir)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	int n = 0;

	if (dp == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL)
		n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
	closedir(dp);
	return n;
}

static enum route_result
route(const char *path, struct route *r)
{
	struct address a;
	size_t used;

	ck_assert_msg(address_parse_path(path, strlen(path), PATH_FORWARD, true, &a, &used) ==
	    ADDRESS_OK, "%s", path);
	return routes_lookup(&rt, &a, r);
}

#define OK ROUTE_OK
#define UNKNOWN ROUTE_UNKNOWN_USER
#define NOT_OURS ROUTE_NOT_OURS

struct route_case {
	const char *path;
	enum route_result want;
	const char *maildir;	/* under top, for ROUTE_OK; "DIR/.TAG" names a folder */
};

/* The route as "MAILDIR" or "MAILDIR/FOLDER". */
static const char *
joined(const struct route *r)
{
	static char buf[ROUTE_PATH_MAX + ROUTE_FOLDER_MAX];

	snprintf(buf, sizeof(buf), "%s%s%s", r->maildir, r->folder[0] ? "/" : "", r->folder);
	return buf;
}

/*
 * A host with domain lines, exact mailboxes, a catch-all, an IDN domain
 * written both ways, a domain known only from mailbox lines, and no
 * default Maildir.
 */
static void
setup_host(void)
{
	make_top();
	make_dir("alice");
	make_dir("alice/.work");
	make_dir("catch");
	ck_assert_int_eq(routes_add_domain(&rt, "example.org"), 0);
	ck_assert_int_eq(routes_add_domain(&rt, "B\xc3\xbc" "cher.example"), 0);
	ck_assert_int_eq(routes_add_domain(&rt, "empty.example"), 0);
	ck_assert_int_eq(routes_add_domain(&rt, "example.org"), 0);	/* repeated: harmless */
	add_box("alice@example.org", "alice", 1);
	add_box("Bob.Smith@Example.ORG", "bob", 2);
	add_box("\"John Smith\"@example.org", "john", 3);
	add_box("alice+list@example.org", "list", 4);
	add_box("@catch.example", "catch", 5);
	add_box("j\xc3\xbcrgen@b\xc3\xbc" "cher.example", "juergen", 6);
	add_box("postmaster@XN--BCHER-KVA.example", "pm-buecher", 7);
	add_box("carol@other.example", "carol", 8);
	add_box("erin@nopm.example", "erin", 10);
	add_box("dave@nopm.example", "dave", 9);
	ck_assert_uint_eq(routes_finish(&rt), 0);
}

static const struct route_case host[] = {
	{ "<alice@example.org>", OK, "alice" },
	{ "<ALICE@Example.ORG>", OK, "alice" },
	{ "<\"alice\"@example.org>", OK, "alice" },
	{ "<@relay.example:alice@example.org>", OK, "alice" },
	{ "<bob.smith@example.org>", OK, "bob" },
	{ "<\"john smith\"@example.org>", OK, "john" },
	{ "<\"John\\ Smith\"@EXAMPLE.org>", OK, "john" },
	{ "<johnsmith@example.org>", UNKNOWN, NULL },
	/*
	 * Sub-addresses: the whole address first, then user, then the folder,
	 * named whether it exists or not (delivery decides).
	 */
	{ "<alice+list@example.org>", OK, "list" },
	{ "<alice+work@example.org>", OK, "alice/.work" },
	{ "<\"alice+work\"@example.org>", OK, "alice/.work" },
	{ "<ALICE+work@example.org>", OK, "alice/.work" },
	{ "<alice+Work@example.org>", OK, "alice/.Work" },	/* the tag's case is kept */
	{ "<alice+play@example.org>", OK, "alice/.play" },
	{ "<alice+@example.org>", OK, "alice" },
	{ "<alice+work+more@example.org>", OK, "alice" },
	{ "<alice+.work@example.org>", OK, "alice" },
	{ "<alice+a/b@example.org>", OK, "alice" },
	{ "<\"alice+a b\"@example.org>", UNKNOWN, NULL },	/* quoted: not split */
	{ "<+work@example.org>", UNKNOWN, NULL },
	{ "<nobody+work@example.org>", UNKNOWN, NULL },
	{ "<nobody@example.org>", UNKNOWN, NULL },
	/* RFC 5321 4.5.1: postmaster, without its own line, gets the domain's first one. */
	{ "<postmaster@example.org>", OK, "alice" },
	{ "<PostMaster@example.org>", OK, "alice" },
	{ "<postmaster+work@example.org>", OK, "alice/.work" },
	{ "<postmaster>", OK, "alice" },		/* the first domain line's */
	{ "<Postmaster>", OK, "alice" },
	{ "<postmaster@empty.example>", OK, "alice" },	/* the first mailbox line */
	{ "<postmaster@nopm.example>", OK, "dave" },	/* line 9 comes before line 10 */
	{ "<postmaster@other.example>", OK, "carol" },
	{ "<postmaster@catch.example>", OK, "catch" },
	{ "<postmaster@elsewhere.example>", NOT_OURS, NULL },
	/* Catch-all. */
	{ "<anyone@catch.example>", OK, "catch" },
	{ "<anyone@CATCH.example>", OK, "catch" },
	{ "<anyone+work@catch.example>", OK, "catch/.work" },
	/* IDN: U-labels and A-labels name one domain, in the config and from clients. */
	{ "<j\xc3\xbcrgen@b\xc3\xbc" "cher.example>", OK, "juergen" },
	{ "<j\xc3\xbcrgen@xn--bcher-kva.example>", OK, "juergen" },
	{ "<j\xc3\xbcrgen@BÜCHER.example>", OK, "juergen" },
	{ "<postmaster@b\xc3\xbc" "cher.example>", OK, "pm-buecher" },
	{ "<someone@xn--bcher-kva.example>", UNKNOWN, NULL },
	/* Domains known only from mailbox lines are served too. */
	{ "<carol@other.example>", OK, "carol" },
	{ "<dan@other.example>", UNKNOWN, NULL },
	{ "<x@empty.example>", UNKNOWN, NULL },		/* no default Maildir */
	/* Never a relay. */
	{ "<x@elsewhere.example>", NOT_OURS, NULL },
	{ "<alice@example.org.elsewhere.example>", NOT_OURS, NULL },
	{ "<alice@[192.0.2.1]>", NOT_OURS, NULL },
	{ "<alice@[IPv6:2001:db8::1]>", NOT_OURS, NULL },
};

static void
check_host_row(const struct route_case *c)
{
	struct route r;
	enum route_result got = route(c->path, &r);

	ck_assert_msg(got == c->want, "%s: got %d, want %d", c->path, got, c->want);
	if (c->want == ROUTE_OK)
		ck_assert_msg(strcmp(joined(&r), at(c->maildir)) == 0, "%s: %s", c->path, joined(&r));
}

START_TEST(host_table_parsed)
{
	setup_host();
	check_host_row(&host[_i]);
	remove_top();
}
END_TEST

START_TEST(host_table_compiled)
{
	setup_host();
	use_compiled_map();
	check_host_row(&host[_i]);
	remove_top();
}
END_TEST

/*
 * A map compiled without a default Maildir, used with -m: postmaster goes
 * to the default, as it would with the file parsed after -m.
 */
START_TEST(compiled_postmaster_yields_to_a_run_time_default)
{
	struct route r;

	setup_host();
	use_compiled_map();
	ck_assert_int_eq(route("<postmaster@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(r.maildir, at("alice"));
	ck_assert_int_eq(routes_set_maildir(&rt, at("default")), 0);
	ck_assert_int_eq(route("<postmaster@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(r.maildir, at("default"));
	ck_assert_int_eq(route("<postmaster@nopm.example>", &r), ROUTE_OK);
	ck_assert_str_eq(r.maildir, at("default"));
	ck_assert_int_eq(route("<postmaster@b\xc3\xbc" "cher.example>", &r), ROUTE_OK);
	ck_assert_str_eq(r.maildir, at("pm-buecher"));
	ck_assert_int_eq(route("<alice@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(r.maildir, at("alice"));
	ck_assert_int_eq(route("<nobody@example.org>", &r), ROUTE_UNKNOWN_USER);
	remove_top();
}
END_TEST

/*
 * A default Maildir, "-" as the delimiter: unknown users of a domain with
 * mailbox lines are still refused, other served domains go to the
 * default, folders are named only by safe tags.
 */
static void
setup_default(void)
{
	make_top();
	ck_assert_int_eq(routes_set_maildir(&rt, at("default")), 0);
	ck_assert_int_eq(routes_set_delimiters(&rt, "-"), 0);
	ck_assert_int_eq(routes_add_domain(&rt, "example.org"), 0);
	ck_assert_int_eq(routes_add_domain(&rt, "spare.example"), 0);
	add_box("alice@example.org", "alice", 1);
	ck_assert_uint_eq(routes_finish(&rt), 0);
}

static const struct route_case with_default[] = {
	{ "<alice@example.org>", OK, "alice" },
	{ "<alice-new@example.org>", OK, "alice/.new" },
	{ "<alice-New_2@example.org>", OK, "alice/.New_2" },
	{ "<alice+new@example.org>", UNKNOWN, NULL },	/* + is not the delimiter here */
	{ "<alice-a.b@example.org>", OK, "alice" },
	{ "<alice-0123456789012345678901234567890123@example.org>", OK, "alice" },	/* 34: too long */
	{ "<bob@example.org>", UNKNOWN, NULL },
	{ "<postmaster@example.org>", OK, "default" },
	{ "<postmaster>", OK, "default" },
	{ "<anyone@spare.example>", OK, "default" },
	{ "<anyone-x@spare.example>", OK, "default/.x" },
	{ "<anyone@other.example>", NOT_OURS, NULL },
};

START_TEST(default_table_parsed)
{
	setup_default();
	check_host_row(&with_default[_i]);
	remove_top();
}
END_TEST

START_TEST(default_table_compiled)
{
	setup_default();
	use_compiled_map();
	check_host_row(&with_default[_i]);
	remove_top();
}
END_TEST

/* Routing names a folder; it never makes one, whatever create-folders says. */
START_TEST(routing_never_touches_the_file_system)
{
	struct route r;
	struct stat st;

	make_top();
	ck_assert_int_eq(routes_set_maildir(&rt, at("default")), 0);
	rt.create_folders = true;
	routes_finish(&rt);
	ck_assert_int_eq(route("<anyone+new@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(joined(&r), at("default/.new"));
	ck_assert_int_eq(stat(at("default"), &st), -1);
	remove_top();
}
END_TEST

/* recipient-delimiter with nothing after it: sub-addresses off. */
START_TEST(empty_delimiter_turns_sub_addresses_off)
{
	struct route r;

	make_top();
	ck_assert_int_eq(routes_set_maildir(&rt, at("default")), 0);
	ck_assert_int_eq(routes_set_delimiters(&rt, ""), 0);
	routes_finish(&rt);
	ck_assert_int_eq(route("<anyone+work@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(joined(&r), at("default"));
	ck_assert_int_eq(routes_set_delimiters(&rt, NULL), 0);	/* the default, "+" */
	ck_assert_int_eq(route("<anyone+work@example.org>", &r), ROUTE_OK);
	ck_assert_str_eq(joined(&r), at("default/.work"));
	remove_top();
}
END_TEST

START_TEST(bad_config_addresses_are_refused)
{
	make_top();
	ck_assert_int_eq(routes_add_mailbox(&rt, "no-at-sign", "/x", 1), -1);
	ck_assert_int_eq(routes_add_mailbox(&rt, "a..b@example.org", "/x", 1), -1);
	ck_assert_int_eq(routes_add_mailbox(&rt, "a@-bad.example", "/x", 1), -1);
	ck_assert_int_eq(routes_add_mailbox(&rt, "@", "/x", 1), -1);
	ck_assert_int_eq(routes_add_mailbox(&rt, "a@example.org", "", 1), -1);
	ck_assert_int_eq(routes_add_domain(&rt, "bad_domain.example"), -1);
	ck_assert_int_eq(routes_add_domain(&rt, "b\xc3" "cher.example"), -1);
	add_box("a@example.org", "a", 1);
	add_box("A@Example.org", "b", 2);
	ck_assert_uint_eq(routes_finish(&rt), 2);	/* the same address twice */
	remove_top();
}
END_TEST

START_TEST(a_foreign_file_is_not_a_map)
{
	const char *text;
	size_t len;
	int fd;

	make_top();
	fd = open(at("junk"), O_CREAT | O_RDWR, 0600);
	ck_assert_int_eq(write(fd, "not a cdb at all", 16), 16);
	ck_assert_int_eq(routes_open_map(&rt, fd, &text, &len), -1);
	close(fd);
	remove_top();
}
END_TEST

/*
 * Hostile local parts, with create-folders on and a sink for every domain:
 * whatever the client sends, every file that appears is inside the
 * configured Maildir, in tmp/, new/, cur/ or a folder named by a safe tag.
 */
static const char hostile[] =
	"EHLO c.example\r\n"
	"MAIL FROM:<a@example.org> SMTPUTF8\r\n"
	"RCPT TO:<../../escape@example.org>\r\n"
	"RCPT TO:<\"../../escape\"@example.org>\r\n"
	"RCPT TO:<\"x+../../escape\"@example.org>\r\n"
	"RCPT TO:<x+../escape@example.org>\r\n"
	"RCPT TO:<x+a/b@example.org>\r\n"
	"RCPT TO:<x+/etc@example.org>\r\n"
	"RCPT TO:<x+.hidden@example.org>\r\n"
	"RCPT TO:<x+.@example.org>\r\n"
	"RCPT TO:<x+a\0b@example.org>\r\n"
	"RCPT TO:<x+a\rb@example.org>\r\n"
	"RCPT TO:<x+a\nb@example.org>\r\n"
	"RCPT TO:<x+\xff\xfe@example.org>\r\n"
	"RCPT TO:<x+\xc3\xa9t\xc3\xa9@example.org>\r\n"
	"RCPT TO:<x+&AOk-t&AOk-@example.org>\r\n"
	"RCPT TO:<x+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org>\r\n"
	"RCPT TO:<x+aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.org>\r\n"
	"RCPT TO:<x+safe-1_2@example.org>\r\n"
	"DATA\r\nSubject: hostile\r\n\r\nbody\r\n.\r\nQUIT\r\n";

static const char *walk_root;
static int walk_bad;

static int
inspect(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	const char *rel = path + strlen(walk_root);
	static const char *const allowed[] = {
		"", "/input", "/output", "/Maildir", "/Maildir/tmp", "/Maildir/new", "/Maildir/cur",
		"/Maildir/.safe-1_2", "/Maildir/.safe-1_2/maildirfolder", "/Maildir/.safe-1_2/tmp",
		"/Maildir/.safe-1_2/new", "/Maildir/.safe-1_2/cur",
	};

	(void)st;
	(void)type;
	(void)ftw;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		if (strcmp(rel, allowed[i]) == 0)
			return 0;
	if (strncmp(rel, "/Maildir/new/", 13) == 0 ||
	    strncmp(rel, "/Maildir/.safe-1_2/new/", 23) == 0)
		return 0;
	fprintf(stderr, "unexpected file: %s\n", rel);
	walk_bad++;
	return 0;
}

START_TEST(hostile_local_parts_write_only_inside_the_maildir)
{
	struct harness h;
	char parent[160], sibling[160];
	struct stat st;

	harness_init(&h);
	h.routes.create_folders = true;
	routes_finish(&h.routes);
	harness_run(&h, hostile, sizeof(hostile) - 1, (size_t)_i);
	ck_assert_ptr_nonnull(strstr(h.out, "250 2.0.0 "));
	walk_root = h.dir;
	walk_bad = 0;
	ck_assert_int_eq(nftw(h.dir, inspect, 16, FTW_PHYS), 0);
	ck_assert_int_eq(walk_bad, 0);
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	ck_assert_int_eq(harness_count(&h, ".safe-1_2/new"), 1);
	/* Nothing beside or above the test directory either. */
	snprintf(parent, sizeof(parent), "%s/../escape", h.dir);
	snprintf(sibling, sizeof(sibling), "%s/escape", h.dir);
	ck_assert_int_eq(stat(parent, &st), -1);
	ck_assert_int_eq(stat(sibling, &st), -1);
	harness_finish(&h);
}
END_TEST

/*
 * One message to several Maildirs: staged in every tmp/ before anything
 * reaches a new/, one copy each, and when a later publish fails the copies
 * already in new/ are taken back out.
 */
static int
count_in(const char *dir, const char *sub)
{
	char path[512];
	int n = 0;
	DIR *dp;
	struct dirent *e;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((dp = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL)
		n += e->d_name[0] != '.';
	closedir(dp);
	return n;
}

START_TEST(three_maildirs_stage_first_then_publish)
{
	struct delivery *d = calloc(1, sizeof(*d));
	const char *dirs[3];

	make_top();
	dirs[0] = at("one");
	dirs[1] = at("two");
	dirs[2] = at("three");
	ck_assert_int_eq(harness_begin(d, dirs, 3), DELIVER_OK);
	maildir_write(d, "Subject: x\n\nbody\n", 17);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(count_in(dirs[i], "tmp"), 1);
		ck_assert_int_eq(count_in(dirs[i], "new"), 0);
	}
	ck_assert_int_eq(maildir_commit(d), DELIVER_OK);
	for (int i = 0; i < 3; i++) {
		ck_assert_int_eq(count_in(dirs[i], "tmp"), 0);
		ck_assert_int_eq(count_in(dirs[i], "new"), 1);
	}
	free(d);
	remove_top();
}
END_TEST

START_TEST(a_failing_last_publish_takes_back_the_first_two)
{
	struct delivery *d = calloc(1, sizeof(*d));
	const char *dirs[3];
	char path[300];
	int fd;

	make_top();
	dirs[0] = at("one");
	dirs[1] = at("two");
	dirs[2] = at("three");
	ck_assert_int_eq(harness_begin(d, dirs, 3), DELIVER_OK);
	maildir_write(d, "Subject: x\n\nbody\n", 17);
	/* three/new becomes a plain file: link() and rename() into it fail. */
	snprintf(path, sizeof(path), "%s/new", dirs[2]);
	ck_assert_int_eq(rmdir(path), 0);
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_ne(fd, -1);
	close(fd);
	ck_assert_int_eq(maildir_commit(d), DELIVER_TEMPFAIL);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(count_in(dirs[i], "new"), 0);
		ck_assert_int_eq(count_in(dirs[i], "tmp"), 0);
	}
	ck_assert_int_eq(count_in(dirs[2], "tmp"), 0);
	free(d);
	remove_top();
}
END_TEST

/* Through a session: four recipients, three Maildirs, one identical copy in each. */
START_TEST(one_copy_per_maildir_through_a_session)
{
	static const char input[] = "EHLO c.example\r\nMAIL FROM:<s@example.org>\r\n"
	    "RCPT TO:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nRCPT TO:<b2@example.org>\r\n"
	    "RCPT TO:<c+f@example.org>\r\nDATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n";
	struct harness h;
	char a[256], b[256], c[256], f[256];
	char *ma, *mb, *mf;

	harness_init(&h);
	snprintf(a, sizeof(a), "%s/a", h.dir);
	snprintf(b, sizeof(b), "%s/b", h.dir);
	snprintf(c, sizeof(c), "%s/c", h.dir);
	snprintf(f, sizeof(f), "%s/c/.f", h.dir);
	ck_assert_int_eq(mkdir(c, 0700), 0);
	make_folder(f, "maildirfolder");
	routes_add_domain(&h.routes, "example.org");
	routes_add_mailbox(&h.routes, "a@example.org", a, 1);
	routes_add_mailbox(&h.routes, "b@example.org", b, 2);
	routes_add_mailbox(&h.routes, "b2@example.org", b, 3);
	routes_add_mailbox(&h.routes, "c@example.org", c, 4);
	routes_finish(&h.routes);
	harness_run(&h, input, sizeof(input) - 1, 0);
	ck_assert_str_eq(harness_reply(&h, 7), "354 End data with <CR><LF>.<CR><LF>");
	ma = harness_message(&h, a, NULL);
	mb = harness_message(&h, b, NULL);
	mf = harness_message(&h, f, NULL);
	ck_assert_ptr_nonnull(ma);
	ck_assert_ptr_nonnull(mb);
	ck_assert_ptr_nonnull(mf);
	ck_assert_str_eq(ma, mb);
	ck_assert_str_eq(ma, mf);
	ck_assert_int_eq(harness_count(&h, "new"), 0);	/* nothing in the default */
	free(ma);
	free(mb);
	free(mf);
	harness_finish(&h);
}
END_TEST

static void append(char *, size_t, size_t *, const char *, ...) __attribute__((format(printf, 4, 5)));

/* Append printf output to buf (of size) at *len. */
static void
append(char *buf, size_t size, size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf + *len, size - *len, fmt, ap);
	va_end(ap);
	ck_assert(n > 0 && (size_t)n < size - *len);
	*len += (size_t)n;
}

/*
 * create-folders makes a folder only for a message staged in it: ten
 * transactions of twenty tagged recipients each, all reset before DATA,
 * leave no folder at all.
 */
START_TEST(transactions_that_never_deliver_create_no_folders)
{
	static char input[16384];
	struct harness h;
	size_t len = 0;

	append(input, sizeof(input), &len, "EHLO c.example\r\n");
	for (int t = 0; t < 10; t++) {
		append(input, sizeof(input), &len, "MAIL FROM:<a@example.org>\r\n");
		for (int r = 0; r < 20; r++)
			append(input, sizeof(input), &len, "RCPT TO:<u+t%d_%d@example.org>\r\n", t, r);
		append(input, sizeof(input), &len, "RSET\r\n");
	}
	append(input, sizeof(input), &len, "QUIT\r\n");
	harness_init(&h);
	h.routes.create_folders = true;
	routes_finish(&h.routes);
	harness_run(&h, input, len, 0);
	ck_assert_str_eq(harness_reply(&h, 2 + 10 * 22), "221 2.0.0 Bye");
	ck_assert_int_eq(count_folders(h.maildir), 0);
	harness_finish(&h);
}
END_TEST

/*
 * At most ten new folders per session: twelve messages to twelve new tags
 * make ten folders, the last two messages go to the Maildir itself; the
 * next session may make ten more.
 */
START_TEST(ten_new_folders_per_session_at_most)
{
	static char input[4096];
	static const char again[] = "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
	    "RCPT TO:<u+f12@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	struct harness h;
	char folder[16];
	size_t len = 0;

	append(input, sizeof(input), &len, "EHLO c.example\r\n");
	for (int t = 0; t < 12; t++)
		append(input, sizeof(input), &len, "MAIL FROM:<a@example.org>\r\n"
		    "RCPT TO:<u+f%d@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\n", t);
	append(input, sizeof(input), &len, "QUIT\r\n");
	harness_init(&h);
	h.routes.create_folders = true;
	routes_finish(&h.routes);
	harness_run(&h, input, len, (size_t)_i);
	for (int t = 0; t < 12; t++)
		ck_assert_msg(strncmp(harness_reply(&h, 2 + 4 * (size_t)t + 3), "250 2.0.0 ", 10) == 0,
		    "message %d: %s", t, harness_reply(&h, 2 + 4 * (size_t)t + 3));
	ck_assert_int_eq(count_folders(h.maildir), 10);
	for (int t = 0; t < 10; t++) {
		snprintf(folder, sizeof(folder), ".f%d/new", t);
		ck_assert_int_eq(harness_count(&h, folder), 1);
	}
	ck_assert_int_eq(harness_count(&h, "new"), 2);
	free(h.out);
	free(h.lines);
	h.nreplies = 0;
	harness_run(&h, again, sizeof(again) - 1, 0);
	ck_assert_int_eq(harness_count(&h, ".f12/new"), 1);
	harness_finish(&h);
}
END_TEST

/*
 * A Maildir that is a home directory: user+ssh must not write under
 * ~/.ssh, which is no Maildir++ folder, with or without create-folders.
 */
START_TEST(a_dot_directory_that_is_no_folder_is_left_alone)
{
	static const char input[] = "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
	    "RCPT TO:<u+ssh@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	struct harness h;
	char ssh[256], keys[300];
	int fd;

	harness_init(&h);
	h.routes.create_folders = _i == 1;
	routes_finish(&h.routes);
	snprintf(ssh, sizeof(ssh), "%s/.ssh", h.maildir);
	snprintf(keys, sizeof(keys), "%s/authorized_keys", ssh);
	ck_assert_int_eq(mkdir(h.maildir, 0700), 0);
	ck_assert_int_eq(mkdir(ssh, 0700), 0);
	fd = open(keys, O_CREAT | O_WRONLY, 0600);
	ck_assert_int_eq(write(fd, "ssh-ed25519 AAAA\n", 17), 17);
	close(fd);
	harness_run(&h, input, sizeof(input) - 1, 0);
	ck_assert_str_eq(harness_reply(&h, 6), "221 2.0.0 Bye");
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	ck_assert_int_eq(count_entries(ssh), 1);	/* authorized_keys alone */
	harness_finish(&h);
}
END_TEST

/*
 * What is a folder: one with its maildirfolder file (completed with tmp/,
 * new/, cur/ on delivery), one with cur/, new/ and tmp/; one with new/
 * alone is not, and is left as it was.
 */
START_TEST(a_folder_has_its_marker_or_all_three_directories)
{
	static const char input[] = "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
	    "RCPT TO:<u+a@example.org>\r\nRCPT TO:<u+b@example.org>\r\nRCPT TO:<u+c@example.org>\r\n"
	    "DATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	struct harness h;
	char path[256];

	harness_init(&h);
	h.routes.create_folders = true;
	routes_finish(&h.routes);
	ck_assert_int_eq(mkdir(h.maildir, 0700), 0);
	snprintf(path, sizeof(path), "%s/.a", h.maildir);
	make_folder(path, "maildirfolder");
	snprintf(path, sizeof(path), "%s/.b", h.maildir);
	make_folder(path, "subdirs");
	snprintf(path, sizeof(path), "%s/.c", h.maildir);
	make_folder(path, "new-only");
	harness_run(&h, input, sizeof(input) - 1, 0);
	ck_assert_int_eq(harness_count(&h, ".a/new"), 1);
	ck_assert_int_eq(harness_count(&h, ".b/new"), 1);
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	ck_assert_int_eq(harness_count(&h, ".c/new"), 0);
	ck_assert_int_eq(count_entries(path), 1);	/* .c: new/ alone, as it was */
	harness_finish(&h);
}
END_TEST

/*
 * Links inside a Maildir are never followed: a folder that is a link to a
 * real folder elsewhere is no folder (the mail goes to the Maildir
 * itself), and a tmp/ that is a link makes the delivery fail with 451.
 */
START_TEST(links_inside_a_maildir_are_not_followed)
{
	static const char input[] = "EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
	    "RCPT TO:<u+lnk@example.org>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n";
	struct harness h;
	char outside[256], link_path[320], tmp[320];

	harness_init(&h);
	routes_finish(&h.routes);
	snprintf(outside, sizeof(outside), "%s/outside", h.dir);
	make_folder(outside, "subdirs");
	ck_assert_int_eq(mkdir(h.maildir, 0700), 0);
	snprintf(link_path, sizeof(link_path), "%s/.lnk", h.maildir);
	ck_assert_int_eq(symlink(outside, link_path), 0);
	harness_run(&h, input, sizeof(input) - 1, 0);
	ck_assert_str_eq(harness_reply(&h, 6), "221 2.0.0 Bye");
	ck_assert_int_eq(harness_count(&h, "new"), 1);
	snprintf(tmp, sizeof(tmp), "%s/new", outside);
	ck_assert_int_eq(count_entries(tmp), 0);
	/* Now tmp/ itself is a link to the folder's new/ outside. */
	snprintf(tmp, sizeof(tmp), "%s/tmp", h.maildir);
	ck_assert_int_eq(rmdir(tmp), 0);
	snprintf(link_path, sizeof(link_path), "%s/new", outside);
	ck_assert_int_eq(symlink(link_path, tmp), 0);
	free(h.out);
	free(h.lines);
	h.nreplies = 0;
	harness_run(&h, input, sizeof(input) - 1, 0);
	ck_assert_str_eq(harness_reply(&h, 4),
	    "451 4.3.0 Local error staging the message; try again later");
	ck_assert_int_eq(count_entries(link_path), 0);
	ck_assert_int_eq(harness_count(&h, "new"), 1);	/* the first message alone */
	harness_finish(&h);
}
END_TEST

static Suite *
route_suite(void)
{
	Suite *s = suite_create("route");
	TCase *tc = tcase_create("route");
	int nhost = (int)(sizeof(host) / sizeof(host[0]));
	int ndefault = (int)(sizeof(with_default) / sizeof(with_default[0]));

	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(tc, host_table_parsed, 0, nhost);
	tcase_add_loop_test(tc, host_table_compiled, 0, nhost);
	tcase_add_loop_test(tc, default_table_parsed, 0, ndefault);
	tcase_add_loop_test(tc, default_table_compiled, 0, ndefault);
	tcase_add_test(tc, compiled_postmaster_yields_to_a_run_time_default);
	tcase_add_test(tc, routing_never_touches_the_file_system);
	tcase_add_test(tc, empty_delimiter_turns_sub_addresses_off);
	tcase_add_test(tc, bad_config_addresses_are_refused);
	tcase_add_test(tc, a_foreign_file_is_not_a_map);
	tcase_add_loop_test(tc, hostile_local_parts_write_only_inside_the_maildir, 0, 2);
	tcase_add_test(tc, three_maildirs_stage_first_then_publish);
	tcase_add_test(tc, a_failing_last_publish_takes_back_the_first_two);
	tcase_add_test(tc, one_copy_per_maildir_through_a_session);
	tcase_add_test(tc, transactions_that_never_deliver_create_no_folders);
	tcase_add_loop_test(tc, ten_new_folders_per_session_at_most, 0, 2);
	tcase_add_loop_test(tc, a_dot_directory_that_is_no_folder_is_left_alone, 0, 2);
	tcase_add_test(tc, a_folder_has_its_marker_or_all_three_directories);
	tcase_add_test(tc, links_inside_a_maildir_are_not_followed);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(route_suite());
}
