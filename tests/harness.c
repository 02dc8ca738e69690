/*
 * harness.c: drive session_run() in-process. Input comes from a file (so
 * nothing blocks), replies go to a file, and the Maildir lives in a fresh
 * temporary directory.
 */
#include "harness.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

static char log_text[1 << 20];	/* the log lines since harness_init, one per line */
static size_t log_len;

/*
 * log.c writes through vsyslog(3) when no journal is attached: this
 * definition takes the C library's place, so tests read the log lines.
 */
void
vsyslog(int priority, const char *fmt, va_list ap)
{
	size_t room = sizeof(log_text) - log_len;
	int n;

	(void)priority;
	if (room < 2 || (n = vsnprintf(log_text + log_len, room - 1, fmt, ap)) < 0)
		return;
	log_len += (size_t)n < room - 1 ? (size_t)n : room - 2;
	log_text[log_len++] = '\n';
	log_text[log_len] = '\0';
}

size_t
harness_log_count(const char *needle)
{
	size_t n = 0;

	for (const char *line = log_text; *line != '\0'; line = strchr(line, '\n') + 1) {
		const char *hit = strstr(line, needle);

		if (hit != NULL && hit < strchr(line, '\n'))
			n++;
	}
	return n;
}

void
harness_init(struct harness *h)
{
	memset(h, 0, sizeof(*h));
	log_len = 0;
	log_text[0] = '\0';
	snprintf(h->dir, sizeof(h->dir), "/tmp/smtpd-test.XXXXXX");
	if (mkdtemp(h->dir) == NULL)
		abort();
	snprintf(h->maildir, sizeof(h->maildir), "%s/Maildir", h->dir);
	if (routes_set_maildir(&h->routes, h->maildir) == -1)
		abort();
	h->cfg.hostname = "mx.example";
	h->cfg.max_message_size = 1024 * 1024;
	h->cfg.max_recipients = 100;
	h->cfg.timeout = 5;
	h->cfg.session_timeout = 60;
	h->cfg.routes = &h->routes;
	h->cfg.peer = "192.0.2.7";
	h->cfg.peer_literal = "[192.0.2.7]";
}

static int
temp_file(const struct harness *h, const char *name, const char *data, size_t len)
{
	char path[128];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", h->dir, name);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd == -1 || (len > 0 && write(fd, data, len) != (ssize_t)len))
		abort();
	lseek(fd, 0, SEEK_SET);
	return fd;
}

/* Split the output into replies, keeping the last line of each. */
static void
split_replies(struct harness *h)
{
	char *line = h->lines;

	while (line < h->lines + h->out_len && h->nreplies < HARNESS_REPLIES) {
		char *end = strstr(line, "\r\n");

		if (end == NULL)
			break;
		*end = '\0';
		if (strlen(line) < 4 || line[3] != '-')
			h->reply[h->nreplies++] = line;
		line = end + 2;
	}
}

void
harness_run(struct harness *h, const char *input, size_t len, size_t read_limit)
{
	int in = temp_file(h, "input", input, len);
	int out = temp_file(h, "output", NULL, 0);
	off_t size;

	h->cfg.read_limit = read_limit;
	h->status = session_run(&h->cfg, in, out);
	size = lseek(out, 0, SEEK_END);
	h->out = calloc((size_t)size + 1, 1);
	h->lines = calloc((size_t)size + 1, 1);
	if (h->out == NULL || h->lines == NULL || pread(out, h->out, (size_t)size, 0) != size)
		abort();
	memcpy(h->lines, h->out, (size_t)size);
	h->out_len = (size_t)size;
	close(in);
	close(out);
	split_replies(h);
}

void
harness_start(struct harness *h, const char *input)
{
	harness_init(h);
	routes_finish(&h->routes);
	harness_run(h, input, strlen(input), 0);
}

const char *
harness_reply(const struct harness *h, size_t i)
{
	return i < h->nreplies ? h->reply[i] : "";
}

static int
count_dir(const char *path, char *only, size_t only_size)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n++ == 0 && only != NULL)
			snprintf(only, only_size, "%s/%s", path, e->d_name);
	}
	closedir(d);
	return n;
}

int
harness_count(const struct harness *h, const char *sub)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", h->maildir, sub);
	return count_dir(path, NULL, 0);
}

char *
harness_message(const struct harness *h, const char *maildir, size_t *len)
{
	char path[256], file[512];
	char *buf;
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/new", maildir ? maildir : h->maildir);
	if (count_dir(path, file, sizeof(file)) != 1 || (f = fopen(file, "r")) == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = calloc((size_t)n + 1, 1);
	if (buf == NULL || fread(buf, 1, (size_t)n, f) != (size_t)n)
		abort();
	fclose(f);
	if (len != NULL)
		*len = (size_t)n;
	return buf;
}

void
harness_finish(struct harness *h)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h->dir);
	if (system(cmd) != 0)
		abort();
	free(h->out);
	free(h->lines);
	routes_free(&h->routes);
}

enum deliver_result
harness_begin(struct delivery *d, const char *const *dirs, size_t n)
{
	enum deliver_result r = maildir_begin(d, n);

	for (size_t i = 0; i < n && r == DELIVER_OK; i++)
		r = maildir_stage(d, dirs[i], "");
	return r;
}

int
harness_run_suite(Suite *suite)
{
	SRunner *sr = srunner_create(suite);
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}

int
harness_run_tests(const char *name, const TTest *const *tests)
{
	Suite *s = suite_create(name);
	TCase *tc = tcase_create(name);

	for (size_t i = 0; tests[i] != NULL; i++)
		tcase_add_test(tc, tests[i]);
	suite_add_tcase(s, tc);
	return harness_run_suite(s);
}
