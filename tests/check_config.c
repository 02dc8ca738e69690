/*
 * check_config.c: the configuration file through the key table (each key
 * into its field, word counts, numbers, NUL bytes, keys given twice), the
 * options over the file, and the compiled map standing for its file only
 * while the file is unchanged.
 */
#include <check.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "harness.h"

static char top[64], file[128];
static struct config c;

static void
make_top(void)
{
	snprintf(top, sizeof(top), "/tmp/smtpd-config.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	snprintf(file, sizeof(file), "%s/smtpd.conf", top);
}

static void
remove_top(void)
{
	char cmd[128];

	config_free(&c);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	ck_assert_int_eq(system(cmd), 0);
}

static void
write_file(const char *text, size_t len)
{
	FILE *f = fopen(file, "w");

	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
}

/* Load text (len bytes, NUL bytes allowed) as -c FILE: config_load's result. */
static int
load(const char *text, size_t len)
{
	config_free(&c);
	config_init(&c);
	write_file(text, len);
	c.config_file = file;
	return config_load(&c);
}

static int
load_str(const char *text)
{
	return load(text, strlen(text));
}

/* c.error ends with want (after "FILE line N: "). */
static void
refused_with(const char *text, const char *want)
{
	const char *colon;

	ck_assert_int_eq(load_str(text), -1);
	colon = strstr(c.error, " line ");
	ck_assert_ptr_nonnull(colon);
	ck_assert_str_eq(colon + 1, want);
}

START_TEST(every_key_reaches_its_field)
{
	make_top();
	ck_assert_int_eq(load_str("# the whole table\n\n"
	    "hostname mx.example.org\r\n"
	    "\tmaildir /var/mail/all  \n"
	    "user nobody\n"
	    "recipient-delimiter +-\n"
	    "create-folders yes\n"
	    "max-message-size 1099511627776\n"
	    "max-recipients 7\n"
	    "timeout 9\n"
	    "session-timeout 604800\n"
	    "filter /usr/libexec/check  -p\t7830 '' x\n"
	    "filter-timeout 5\n"
	    "domain example.org\n"
	    "mailbox a@example.org /var/mail/a\n"
	    "proxy-protocol v2\n"
	    "proxy-from 192.0.2.0/24\n"
	    "proxy-from 2001:db8::7\n"), 0);
	ck_assert_str_eq(c.session.hostname, "mx.example.org");
	ck_assert_str_eq(c.routes.default_maildir, "/var/mail/all");
	ck_assert_str_eq(c.user, "nobody");
	ck_assert_str_eq(c.routes.delimiters, "+-");
	ck_assert(c.routes.create_folders);
	ck_assert_uint_eq(c.session.max_message_size, 1ULL << 40);
	ck_assert_uint_eq(c.session.max_recipients, 7);
	ck_assert_uint_eq(c.session.timeout, 9);
	ck_assert_uint_eq(c.session.session_timeout, 604800);
	/* argv as execv(2) wants it: the words, no shell quoting. */
	ck_assert_ptr_eq(c.session.filter, c.filter);
	ck_assert_str_eq(c.session.filter[0], "/usr/libexec/check");
	ck_assert_str_eq(c.session.filter[1], "-p");
	ck_assert_str_eq(c.session.filter[2], "7830");
	ck_assert_str_eq(c.session.filter[3], "''");
	ck_assert_str_eq(c.session.filter[4], "x");
	ck_assert_ptr_null(c.session.filter[5]);
	ck_assert_uint_eq(c.session.filter_timeout, 5);
	ck_assert_uint_eq(c.routes.ndomains, 1);
	ck_assert_ptr_eq(c.session.routes, &c.routes);
	ck_assert_int_eq(c.proxy_protocol, PROXY_V2);
	ck_assert_uint_eq(c.nproxy_from, 2);
	ck_assert_int_eq(c.proxy_from[0].family, AF_INET);
	ck_assert_uint_eq(c.proxy_from[0].prefix, 24);
	ck_assert_int_eq(c.proxy_from[1].family, AF_INET6);
	ck_assert_uint_eq(c.proxy_from[1].prefix, 128);
	remove_top();
}
END_TEST

START_TEST(defaults_and_options)
{
	char *argv[] = { "smtpd", "-c", file, "-m", "/m", "-h", "mx.option.example", NULL };

	make_top();
	ck_assert_int_eq(load_str("maildir /file\nhostname mx.file.example\n"), 0);
	ck_assert_uint_eq(c.session.max_message_size, 26214400);
	ck_assert_uint_eq(c.session.max_recipients, 100);
	ck_assert_uint_eq(c.session.timeout, 300);
	ck_assert_uint_eq(c.session.session_timeout, 3600);
	ck_assert_ptr_null(c.session.filter);
	ck_assert_uint_eq(c.session.filter_timeout, 60);
	ck_assert_ptr_null(c.routes.delimiters);	/* "+" */
	ck_assert(!c.routes.create_folders);
	ck_assert_int_eq(c.proxy_protocol, PROXY_OFF);
	ck_assert_uint_eq(c.nproxy_from, 0);
	config_free(&c);
	config_init(&c);
	optind = 1;
	ck_assert_int_eq(config_parse_options(&c, 7, argv), 0);
	ck_assert_int_eq(config_load(&c), 0);
	ck_assert_str_eq(c.routes.default_maildir, "/m");
	ck_assert_str_eq(c.session.hostname, "mx.option.example");
	remove_top();
}
END_TEST

/* Every single-value key, given twice with a repeatable key between. */
START_TEST(single_value_keys_refuse_a_second_line)
{
	static const char *const lines[] = {
		"maildir /m", "hostname mx.example", "user nobody", "recipient-delimiter",
		"recipient-delimiter -", "create-folders no", "max-message-size 10",
		"max-recipients 10", "timeout 10", "session-timeout 10", "proxy-protocol no",
		"filter /bin/true", "filter-timeout 10",
	};
	char text[256], want[128];
	size_t n;

	make_top();
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		const char *key = lines[i];

		n = strcspn(key, " ");
		snprintf(text, sizeof(text), "mailbox a@example.org /a\n%s\ndomain example.org\n"
		    "%s\n", key, key);
		snprintf(want, sizeof(want), "line 4: %.*s already given on line 2", (int)n, key);
		refused_with(text, want);
	}
	ck_assert_int_eq(load_str("maildir /m\ndomain a.example\ndomain b.example\n"
	    "mailbox x@a.example /x\nmailbox y@a.example /y\n"
	    "proxy-from 192.0.2.1\nproxy-from ::1\nproxy-from 192.0.2.1\n"), 0);
	ck_assert_uint_eq(c.nproxy_from, 3);
	remove_top();
}
END_TEST

/* A NUL byte anywhere in a line refuses it, never cuts it short. */
START_TEST(nul_byte_refuses_the_line)
{
	static const struct {
		const char *text;
		size_t len;
		unsigned line;
	} cases[] = {
		{ "maildir /m\n\0domain example.org\n", 30, 2 },
		{ "maildir /x/md\0/../elsewhere\n", 28, 1 },
		{ "maildir /m\n# comment \0 here\n", 28, 2 },
		{ "maildir /m\0\n", 12, 1 },
		{ "maildir /m\n\0", 12, 2 },
		{ "\0\n", 2, 1 },
	};
	char want[64];

	make_top();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_int_eq(load(cases[i].text, cases[i].len), -1);
		snprintf(want, sizeof(want), " line %u: NUL byte", cases[i].line);
		ck_assert_msg(strstr(c.error, want) != NULL, "case %zu: %s", i, c.error);
	}
	remove_top();
}
END_TEST

START_TEST(words_and_values)
{
	char longline[5000];

	make_top();
	refused_with("maildir\n", "line 1: maildir needs a value");
	refused_with("maildir /a /b\n", "line 1: too many words");
	refused_with("mailbox a@example.org\n", "line 1: mailbox needs an address and a directory");
	refused_with("maildir /m\nfrobnicate yes\n", "line 2: unknown key frobnicate");
	refused_with("maildir /m\ncreate-folders maybe\n", "line 2: create-folders is yes or no");
	refused_with("maildir /m\nhostname bad_name\n", "line 2: bad hostname");
	refused_with("maildir /m\nrecipient-delimiter .\n",
	    "line 2: recipient-delimiter takes characters such as + or -, not .");
	refused_with("maildir /m\ndomain bad_name.example\n", "line 2: bad domain bad_name.example");
	refused_with("maildir /m\nfilter\n", "line 2: filter needs a program");
	refused_with("maildir /m\nfilter spamc -c\n",
	    "line 2: filter needs an absolute path, not spamc");
	refused_with("maildir /m\nfilter ./check\n",
	    "line 2: filter needs an absolute path, not ./check");
	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	memcpy(longline, "maildir /", 9);
	refused_with(longline, "line 1: line too long");
	ck_assert_int_eq(load_str("maildir /m\nrecipient-delimiter\n"), 0);
	ck_assert_str_eq(c.routes.delimiters, "");
	remove_top();
}
END_TEST

/*
 * Lines are read a buffer at a time: the longest line that fits (4,095
 * bytes and its LF) is taken anywhere in the file, one byte more is "line
 * too long" with its number, a last line needs no LF, and a file many
 * buffers long is read whole.
 */
START_TEST(lines_across_reads)
{
	static char text[40000], line[4097];
	size_t n = 0, i;

	make_top();
	memset(line, '#', 4095);
	line[4095] = '\n';
	for (i = 0; i < 7; i++) {	/* comments of every length around a buffer */
		memcpy(text + n, line + i * 600, 4096 - i * 600);
		n += 4096 - i * 600;
	}
	n += (size_t)snprintf(text + n, sizeof(text) - n, "maildir /m\r\nhostname mx.example");
	ck_assert_int_eq(load(text, n), 0);
	ck_assert_str_eq(c.hostname, "mx.example");
	ck_assert_str_eq(c.maildir, "/m");
	memcpy(text, line, 4096);
	text[4095] = '#';	/* line 1 is now 4,096 bytes before its LF */
	text[4096] = '\n';
	ck_assert_int_eq(load(text, 4097), -1);
	ck_assert_ptr_nonnull(strstr(c.error, " line 1: line too long"));
	n = (size_t)snprintf(text, sizeof(text), "maildir /m\n");
	memcpy(text + n, line, 4095);
	text[n + 4095] = '#';	/* line 2: 4,096 bytes and no LF */
	ck_assert_int_eq(load(text, n + 4096), -1);
	ck_assert_ptr_nonnull(strstr(c.error, " line 2: line too long"));
	remove_top();
}
END_TEST

/* proxy-protocol's words, proxy-from's addresses, and the one needing the other. */
START_TEST(proxy_keys)
{
	static const char *const modes[] = { "no", "v1", "v2", "any" };
	char text[128], map[160];

	make_top();
	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		snprintf(text, sizeof(text), "maildir /m\nproxy-from 127.0.0.1\nproxy-protocol %s\n",
		    modes[i]);
		ck_assert_msg(load_str(text) == 0, "%s: %s", modes[i], c.error);
		ck_assert_int_eq(c.proxy_protocol, (int)i);
	}
	refused_with("maildir /m\nproxy-protocol yes\n",
	    "line 2: proxy-protocol is no, v1, v2 or any");
	refused_with("maildir /m\nproxy-protocol V2\n",
	    "line 2: proxy-protocol is no, v1, v2 or any");
	refused_with("maildir /m\nproxy-protocol\n", "line 2: proxy-protocol needs a value");
	refused_with("maildir /m\nproxy-from\n", "line 2: proxy-from needs an address");
	refused_with("maildir /m\nproxy-from 10.0.0.1 10.0.0.2\n", "line 2: too many words");
	refused_with("maildir /m\nproxy-from lb.example\n",
	    "line 2: proxy-from lb.example: not an IPv4 or IPv6 address");
	refused_with("maildir /m\nproxy-from 10.0.0.0/33\n",
	    "line 2: proxy-from 10.0.0.0/33: the prefix is a number from 0 to 32");
	refused_with("maildir /m\nproxy-from 2001:db8::/129\n",
	    "line 2: proxy-from 2001:db8::/129: the prefix is a number from 0 to 128");
	refused_with("maildir /m\nproxy-from 10.0.0.1/8\n",
	    "line 2: proxy-from 10.0.0.1/8 has bits set beyond its prefix (10.0.0.0/8?)");
	/* Checks of the whole name no line. */
	ck_assert_int_eq(load_str("maildir /m\nproxy-protocol any\n"), -1);
	ck_assert_str_eq(c.error, "proxy-protocol needs proxy-from: the balancers' addresses");
	ck_assert_int_eq(load_str("maildir /m\nproxy-protocol no\nproxy-from 10.0.0.0/8\n"), 0);
	/* smtpd -C checks them as a session would, and writes no map. */
	config_free(&c);
	config_init(&c);
	write_file("maildir /m\nproxy-protocol v2\nproxy-from 11.0.0.0/7\n", 51);
	c.config_file = file;
	c.compile = true;
	ck_assert_int_eq(config_compile(&c), -1);
	ck_assert_ptr_nonnull(strstr(c.error, "line 3: proxy-from 11.0.0.0/7 has bits set"));
	config_free(&c);
	config_init(&c);
	write_file("maildir /m\nproxy-protocol v2\n", 29);
	c.config_file = file;
	c.compile = true;
	ck_assert_int_eq(config_compile(&c), -1);
	ck_assert_str_eq(c.error, "proxy-protocol needs proxy-from: the balancers' addresses");
	snprintf(map, sizeof(map), "%s.cdb", file);
	ck_assert_int_eq(access(map, F_OK), -1);
	remove_top();
}
END_TEST

START_TEST(numbers_within_bounds)
{
	static const struct {
		const char *line;
		int ok;
	} cases[] = {
		{ "timeout 1", 1 }, { "timeout 86400", 1 }, { "timeout 0", 0 }, { "timeout 86401", 0 },
		{ "timeout 1x", 0 }, { "timeout -1", 0 }, { "timeout +1", 0 },
		{ "timeout 99999999999999999999999", 0 },
		{ "max-message-size 1099511627777", 0 }, { "max-recipients 1000000", 1 },
		{ "max-recipients 1000001", 0 }, { "session-timeout 604801", 0 },
		{ "filter-timeout 1", 1 }, { "filter-timeout 86400", 1 }, { "filter-timeout 0", 0 },
		{ "filter-timeout 86401", 0 },
	};
	char text[128];

	make_top();
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(text, sizeof(text), "maildir /m\n%s\n", cases[i].line);
		ck_assert_msg(load_str(text) == (cases[i].ok ? 0 : -1), "%s: %s", cases[i].line,
		    c.error);
		if (!cases[i].ok)
			ck_assert_ptr_nonnull(strstr(c.error, "line 2: "));
	}
	remove_top();
}
END_TEST

/* -C FILE, then a session's view: the map while FILE is untouched, else FILE. */
START_TEST(map_stands_for_its_file_only)
{
	const char *text = "hostname mx.example\ntimeout 9\nrecipient-delimiter -\n"
	    "domain example.org\nmailbox a@example.org /a\nproxy-protocol v1\n"
	    "proxy-from 192.0.2.9\nproxy-from 2001:db8::/32\n";
	char map[160];
	struct stat st;

	make_top();
	write_file(text, strlen(text));
	ck_assert_int_eq(chmod(file, 0664), 0);
	config_init(&c);
	c.config_file = file;
	c.compile = true;
	ck_assert_msg(config_compile(&c) == 0, "%s", c.error);
	snprintf(map, sizeof(map), "%s.cdb", file);
	ck_assert_int_eq(stat(map, &st), 0);
	ck_assert_uint_eq(st.st_mode & 0777, 0644);	/* FILE's, no write for the group */

	config_free(&c);
	config_init(&c);
	c.config_file = file;
	ck_assert_int_eq(config_load(&c), 0);
	ck_assert_ptr_nonnull(c.routes.map);
	ck_assert_uint_eq(c.session.timeout, 9);
	ck_assert_str_eq(c.routes.delimiters, "-");
	ck_assert_str_eq(c.session.hostname, "mx.example");
	ck_assert_int_eq(c.proxy_protocol, PROXY_V1);
	ck_assert_uint_eq(c.nproxy_from, 2);
	ck_assert_uint_eq(c.proxy_from[1].prefix, 32);

	/* Same bytes, new change time: the map no longer vouches for them. */
	ck_assert_int_eq(chmod(file, 0640), 0);
	config_free(&c);
	config_init(&c);
	c.config_file = file;
	ck_assert_int_eq(config_load(&c), 0);
	ck_assert_ptr_null(c.routes.map);
	ck_assert_uint_eq(c.routes.ndomains, 1);	/* parsed, not from the map */
	ck_assert_uint_eq(c.session.timeout, 9);
	remove_top();
}
END_TEST

/* -C FILE into c: config_compile's result. */
static int
compile_str(const char *text)
{
	config_free(&c);
	config_init(&c);
	write_file(text, strlen(text));
	c.config_file = file;
	c.compile = true;
	return config_compile(&c);
}

/*
 * -C checks that the filter program is an executable file (a session does
 * not: there it is 451 4.7.1 per message); the filter line reaches a
 * session through the map as it was written.
 */
START_TEST(compile_checks_the_filter_and_keeps_it)
{
	char text[512], prog[160], want[400];
	FILE *f;

	make_top();
	snprintf(prog, sizeof(prog), "%s/check", top);
	snprintf(text, sizeof(text), "maildir /m\nfilter %s -p 7830\nfilter-timeout 7\n", prog);
	ck_assert_int_eq(compile_str(text), -1);
	snprintf(want, sizeof(want), "%s line 2: filter %s: No such file or directory", file, prog);
	ck_assert_str_eq(c.error, want);
	f = fopen(prog, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(prog, 0644), 0);
	ck_assert_int_eq(compile_str(text), -1);
	snprintf(want, sizeof(want), "%s line 2: filter %s: not an executable file", file, prog);
	ck_assert_str_eq(c.error, want);
	ck_assert_int_eq(compile_str("maildir /m\nfilter /\n"), -1);
	ck_assert_ptr_nonnull(strstr(c.error, "line 2: filter /: not an executable file"));
	ck_assert_int_eq(chmod(prog, 0755), 0);
	ck_assert_msg(compile_str(text) == 0, "%s", c.error);

	config_free(&c);
	config_init(&c);
	c.config_file = file;
	ck_assert_int_eq(config_load(&c), 0);
	ck_assert_ptr_nonnull(c.routes.map);
	ck_assert_str_eq(c.session.filter[0], prog);
	ck_assert_str_eq(c.session.filter[1], "-p");
	ck_assert_str_eq(c.session.filter[2], "7830");
	ck_assert_ptr_null(c.session.filter[3]);
	ck_assert_uint_eq(c.session.filter_timeout, 7);
	remove_top();
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("config");

	tcase_add_test(tc, every_key_reaches_its_field);
	tcase_add_test(tc, defaults_and_options);
	tcase_add_test(tc, single_value_keys_refuse_a_second_line);
	tcase_add_test(tc, nul_byte_refuses_the_line);
	tcase_add_test(tc, words_and_values);
	tcase_add_test(tc, lines_across_reads);
	tcase_add_test(tc, proxy_keys);
	tcase_add_test(tc, numbers_within_bounds);
	tcase_add_test(tc, map_stands_for_its_file_only);
	tcase_add_test(tc, compile_checks_the_filter_and_keeps_it);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(config_suite());
}
