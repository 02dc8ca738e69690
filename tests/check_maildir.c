/* check_maildir.c: durable delivery and its failure paths. */
#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "maildir.h"
#include "harness.h"

static char top[64];
static char dir_a[128], dir_b[128];
static struct delivery d;

static void
setup(void)
{
	snprintf(top, sizeof(top), "/tmp/smtpd-maildir.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(top));
	snprintf(dir_a, sizeof(dir_a), "%s/deep/er/a", top);
	snprintf(dir_b, sizeof(dir_b), "%s/b", top);
	memset(&d, 0, sizeof(d));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", top);
	ck_assert_int_eq(system(cmd), 0);
}

static int
count(const char *dir, const char *sub)
{
	char path[512];
	struct dirent *e;
	DIR *dp;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s", dir, sub);
	if ((dp = opendir(path)) == NULL)
		return -1;
	while ((e = readdir(dp)) != NULL)
		n += e->d_name[0] != '.';
	closedir(dp);
	return n;
}

static mode_t
mode_of(const char *path)
{
	struct stat st;

	ck_assert_int_eq(stat(path, &st), 0);
	return st.st_mode & 07777;
}

START_TEST(a_message_lands_in_new_with_private_modes)
{
	const char *dirs[] = { dir_a };
	char path[512];
	struct dirent *e;
	DIR *dp;
	FILE *f;

	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
	maildir_write(&d, "hello\n", 6);
	ck_assert_int_eq(count(dir_a, "new"), 0);	/* staged, not delivered */
	ck_assert_int_eq(count(dir_a, "tmp"), 1);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	ck_assert_int_eq(count(dir_a, "new"), 1);
	ck_assert_int_eq(count(dir_a, "tmp"), 0);
	ck_assert_int_eq(count(dir_a, "cur"), 0);
	ck_assert_int_eq(mode_of(dir_a), 0700);
	snprintf(path, sizeof(path), "%s/deep", top);
	ck_assert_int_eq(mode_of(path), 0700);
	snprintf(path, sizeof(path), "%s/new", dir_a);
	dp = opendir(path);
	while ((e = readdir(dp)) != NULL && e->d_name[0] == '.')
		;
	ck_assert_ptr_nonnull(e);
	/* seconds.M<usec>P<pid>Q<n>.<host> */
	ck_assert_ptr_nonnull(strstr(e->d_name, ".M"));
	ck_assert_ptr_nonnull(strchr(e->d_name, 'P'));
	ck_assert_ptr_nonnull(strchr(e->d_name, 'Q'));
	ck_assert_ptr_null(strchr(e->d_name, ':'));
	snprintf(path, sizeof(path), "%s/new/%s", dir_a, e->d_name);
	closedir(dp);
	ck_assert_int_eq(mode_of(path), 0600);
	f = fopen(path, "r");
	ck_assert(fgets(path, sizeof(path), f) != NULL);
	fclose(f);
	ck_assert_str_eq(path, "hello\n");
}
END_TEST

START_TEST(large_messages_stream_through_the_buffer)
{
	const char *dirs[] = { dir_a, dir_b };
	static char chunk[10000];
	char path[512];
	struct stat st;
	struct dirent *e;
	DIR *dp;

	memset(chunk, 'q', sizeof(chunk));
	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	for (int i = 0; i < 100; i++)
		maildir_write(&d, chunk, sizeof(chunk));
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	snprintf(path, sizeof(path), "%s/new", dir_b);
	dp = opendir(path);
	while ((e = readdir(dp)) != NULL && e->d_name[0] == '.')
		;
	snprintf(path, sizeof(path), "%s/new/%s", dir_b, e->d_name);
	closedir(dp);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, 1000000);
	ck_assert_int_eq(count(dir_a, "new"), 1);
}
END_TEST

START_TEST(each_delivery_gets_a_new_name_and_id)
{
	const char *dirs[] = { dir_a };
	char first[64];

	for (int i = 0; i < 50; i++) {
		ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
		if (i == 0)
			snprintf(first, sizeof(first), "%s", d.id);
		else
			ck_assert_str_ne(first, d.id);
		ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	}
	ck_assert_int_eq(count(dir_a, "new"), 50);
}
END_TEST

START_TEST(abort_leaves_nothing)
{
	const char *dirs[] = { dir_a, dir_b };

	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, "partial", 7);
	maildir_abort(&d);
	ck_assert_int_eq(count(dir_a, "tmp") + count(dir_a, "new"), 0);
	ck_assert_int_eq(count(dir_b, "tmp") + count(dir_b, "new"), 0);
}
END_TEST

/* A later rename fails: the copy already in the first new/ comes back out. */
START_TEST(a_failed_publish_undoes_the_earlier_ones)
{
	const char *dirs[] = { dir_a, dir_b };
	char path[512];

	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, "x\n", 2);
	snprintf(path, sizeof(path), "%s/new", dir_b);
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(dir_a, "new"), 0);
	ck_assert_int_eq(count(dir_a, "tmp"), 0);
	ck_assert_int_eq(count(dir_b, "tmp"), 0);
}
END_TEST

START_TEST(an_unusable_maildir_fails_begin_cleanly)
{
	char file[160];
	const char *dirs[] = { dir_a, file };
	FILE *f;

	snprintf(file, sizeof(file), "%s/plainfile", top);
	f = fopen(file, "w");
	fclose(f);
	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(dir_a, "tmp"), 0);
}
END_TEST

/* "a" and "a/" are one Maildir: one copy, not a collision on the tmp/ name. */
START_TEST(two_spellings_of_one_maildir_get_one_copy)
{
	char slash[160];
	const char *dirs[] = { dir_a, slash };

	snprintf(slash, sizeof(slash), "%s/", dir_a);
	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, "x\n", 2);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	ck_assert_int_eq(count(dir_a, "new"), 1);
	ck_assert_int_eq(count(dir_a, "tmp"), 0);
}
END_TEST

/* A file at path, so a directory is no longer empty. */
static void
touch(const char *path)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fclose(f);
}

/* mkdir BASE/SUB (SUB "" for BASE itself). */
static void
make_dir_at(const char *base, const char *sub)
{
	char path[256];

	snprintf(path, sizeof(path), "%s%s", base, sub);
	ck_assert_int_eq(mkdir(path, 0700), 0);
}

/* Courier's marker, or cur/ new/ tmp/ (Dovecot); new/ alone, a file or a link are no folder. */
START_TEST(what_a_folder_is)
{
	char path[256];

	make_dir_at(dir_b, "");
	make_dir_at(dir_b, "/.marked");
	snprintf(path, sizeof(path), "%s/.marked/maildirfolder", dir_b);
	touch(path);
	make_dir_at(dir_b, "/.three");
	make_dir_at(dir_b, "/.three/cur");
	make_dir_at(dir_b, "/.three/new");
	make_dir_at(dir_b, "/.three/tmp");
	make_dir_at(dir_b, "/.half");
	make_dir_at(dir_b, "/.half/new");
	snprintf(path, sizeof(path), "%s/.file", dir_b);
	touch(path);
	snprintf(path, sizeof(path), "%s/.link", dir_b);
	ck_assert_int_eq(symlink(".three", path), 0);
	ck_assert(maildir_is_folder(dir_b, ".marked"));
	ck_assert(maildir_is_folder(dir_b, ".three"));
	ck_assert(!maildir_is_folder(dir_b, ".half"));
	ck_assert(!maildir_is_folder(dir_b, ".file"));
	ck_assert(!maildir_is_folder(dir_b, ".link"));
	ck_assert(!maildir_is_folder(dir_b, ".missing"));
	ck_assert(!maildir_is_folder(dir_b, ""));
	ck_assert(!maildir_is_folder(dir_b, ".."));
}
END_TEST

/* create-folders: the Maildir, then the folder with its marker and three directories. */
START_TEST(making_a_folder)
{
	char path[256];

	ck_assert_int_eq(maildir_make_folder(dir_a, ".work"), 1);
	ck_assert_int_eq(count(dir_a, "new"), 0);	/* the Maildir is whole too */
	snprintf(path, sizeof(path), "%s/.work/maildirfolder", dir_a);
	ck_assert_int_eq(mode_of(path), 0600);
	snprintf(path, sizeof(path), "%s/.work", dir_a);
	ck_assert_int_eq(mode_of(path), 0700);
	ck_assert_int_eq(count(path, "tmp") + count(path, "new") + count(path, "cur"), 0);
	ck_assert_int_eq(maildir_make_folder(dir_a, ".work"), 0);	/* there already */
	/* Something that is no folder is never completed. */
	make_dir_at(dir_a, "/.ssh");
	ck_assert_int_eq(maildir_make_folder(dir_a, ".ssh"), -1);
	ck_assert_int_eq(errno, EEXIST);
	snprintf(path, sizeof(path), "%s/.ssh", dir_a);
	ck_assert_int_eq(count(path, ""), 0);
	ck_assert_int_eq(maildir_make_folder(dir_a, "../x"), -1);
	ck_assert_int_eq(maildir_make_folder(dir_a, ".."), -1);
}
END_TEST

/* A message in a folder lands in its new/, not in the Maildir's. */
START_TEST(staging_in_a_folder)
{
	char path[256];

	ck_assert_int_eq(maildir_make_folder(dir_a, ".f"), 1);
	ck_assert_int_eq(maildir_begin(&d, 2), DELIVER_OK);
	ck_assert_int_eq(maildir_stage(&d, dir_a, ".f"), DELIVER_OK);
	ck_assert_int_eq(maildir_stage(&d, dir_a, ""), DELIVER_OK);
	maildir_write(&d, "x\n", 2);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	snprintf(path, sizeof(path), "%s/.f", dir_a);
	ck_assert_int_eq(count(path, "new"), 1);
	ck_assert_int_eq(count(dir_a, "new"), 1);
	/* A folder that does not exist is an error, never made here. */
	ck_assert_int_eq(maildir_begin(&d, 1), DELIVER_OK);
	ck_assert_int_eq(maildir_stage(&d, dir_a, ".nope"), DELIVER_TEMPFAIL);
	snprintf(path, sizeof(path), "%s/.nope", dir_a);
	ck_assert_int_eq(access(path, F_OK), -1);
}
END_TEST

/*
 * Running as root without `user`: whoever owns a Maildir must not turn
 * its tmp/, new/, a folder or the Maildir itself into a link that sends
 * root's writes elsewhere. Each gives a failure and nothing outside.
 */
START_TEST(links_at_or_below_a_maildir_are_refused)
{
	const char *dirs[] = { dir_b };
	char outside[160], path[256], link_maildir[160];

	snprintf(outside, sizeof(outside), "%s/outside", top);
	make_dir_at(outside, "");
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
	maildir_abort(&d);
	/* tmp/ a link */
	snprintf(path, sizeof(path), "%s/tmp", dir_b);
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_int_eq(symlink(outside, path), 0);
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(outside, ""), 0);
	ck_assert_int_eq(unlink(path), 0);
	/* new/ a link, swapped in after staging */
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
	maildir_write(&d, "x\n", 2);
	snprintf(path, sizeof(path), "%s/new", dir_b);
	ck_assert_int_eq(rmdir(path), 0);
	ck_assert_int_eq(symlink(outside, path), 0);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(outside, ""), 0);
	ck_assert_int_eq(count(dir_b, "tmp"), 0);
	/* a folder that is a link */
	snprintf(path, sizeof(path), "%s/.f", dir_b);
	ck_assert_int_eq(symlink(outside, path), 0);
	ck_assert_int_eq(maildir_begin(&d, 1), DELIVER_OK);
	ck_assert_int_eq(maildir_stage(&d, dir_b, ".f"), DELIVER_TEMPFAIL);
	ck_assert_int_eq(maildir_make_folder(dir_b, ".f"), -1);
	ck_assert_int_eq(count(outside, ""), 0);
	/* the Maildir itself a link, with and without a trailing slash */
	snprintf(link_maildir, sizeof(link_maildir), "%s/linked", top);
	ck_assert_int_eq(symlink(outside, link_maildir), 0);
	dirs[0] = link_maildir;
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_TEMPFAIL);
	snprintf(path, sizeof(path), "%s/", link_maildir);
	dirs[0] = path;
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(outside, ""), 0);
}
END_TEST

/* Links above the Maildir are the administrator's: followed. */
START_TEST(links_above_a_maildir_are_followed)
{
	char real[160], via[160], maildir[200];
	const char *dirs[] = { maildir };

	snprintf(real, sizeof(real), "%s/real", top);
	snprintf(via, sizeof(via), "%s/via", top);
	snprintf(maildir, sizeof(maildir), "%s/M", via);
	make_dir_at(real, "");
	ck_assert_int_eq(symlink(real, via), 0);
	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
	maildir_write(&d, "x\n", 2);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	snprintf(maildir, sizeof(maildir), "%s/M", real);
	ck_assert_int_eq(count(maildir, "new"), 1);
}
END_TEST

/* The single file in DIR/new, whole, NUL-terminated; its length in *len. */
static char *
delivered(const char *dir, size_t *len)
{
	char path[512];
	struct dirent *e;
	struct stat st;
	char *buf;
	DIR *dp;
	FILE *f;

	snprintf(path, sizeof(path), "%s/new", dir);
	ck_assert_ptr_nonnull(dp = opendir(path));
	while ((e = readdir(dp)) != NULL && e->d_name[0] == '.')
		;
	ck_assert_ptr_nonnull(e);
	snprintf(path, sizeof(path), "%s/new/%s", dir, e->d_name);
	closedir(dp);
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_ptr_nonnull(buf = malloc((size_t)st.st_size + 1));
	ck_assert_ptr_nonnull(f = fopen(path, "r"));
	ck_assert_uint_eq(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
	fclose(f);
	buf[st.st_size] = '\0';
	*len = (size_t)st.st_size;
	return buf;
}

static const char trace[] = "Return-Path: <a@example.org>\nReceived: from x by y id 1\n";

/* What a filter reads: everything written, the buffered tail too, read-only. */
START_TEST(open_staged_reads_everything_written)
{
	const char *dirs[] = { dir_a };
	char buf[256];
	ssize_t n;
	int fd;

	ck_assert_int_eq(harness_begin(&d, dirs, 1), DELIVER_OK);
	maildir_write(&d, trace, sizeof(trace) - 1);
	maildir_write(&d, "Subject: s\n\nbody\n", 18);
	fd = maildir_open_staged(&d);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	n = read(fd, buf, sizeof(buf));
	ck_assert_int_eq(n, (ssize_t)(sizeof(trace) - 1 + 18));
	ck_assert(memcmp(buf, trace, sizeof(trace) - 1) == 0);
	ck_assert(memcmp(buf + sizeof(trace) - 1, "Subject: s\n\nbody\n", 18) == 0);
	ck_assert_int_eq(write(fd, "x", 1), -1);
	close(fd);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	ck_assert_int_eq(count(dir_a, "new"), 1);
}
END_TEST

/* Filter header fields land after the trace lines of every copy, body intact. */
START_TEST(insert_goes_after_the_trace_lines_in_every_copy)
{
	const char *dirs[] = { dir_a, dir_b };
	static const char fields[] = "X-Spam-Status: No, score=0.1\nX-Spam-Score: 0.1\n";
	static char body[300000];
	size_t tn = sizeof(trace) - 1, fn = sizeof(fields) - 1, len;
	int fd;

	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = i % 80 == 79 ? '\n' : (char)('a' + i % 26);
	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, trace, tn);
	maildir_write(&d, body, sizeof(body));
	ck_assert_int_ne(fd = maildir_open_staged(&d), -1);
	ck_assert_int_eq(maildir_insert(&d, (off_t)tn, fields, fn), 0);
	ck_assert_int_eq(count(dir_a, "tmp"), 1);	/* replaced, not added */
	ck_assert_int_eq(maildir_commit(&d), DELIVER_OK);
	close(fd);
	for (int i = 0; i < 2; i++) {
		char *m = delivered(dirs[i], &len);

		ck_assert_uint_eq(len, tn + fn + sizeof(body));
		ck_assert(memcmp(m, trace, tn) == 0);
		ck_assert(memcmp(m + tn, fields, fn) == 0);
		ck_assert(memcmp(m + tn + fn, body, sizeof(body)) == 0);
		free(m);
		ck_assert_int_eq(count(dirs[i], "tmp"), 0);
	}
}
END_TEST

START_TEST(insert_then_abort_leaves_nothing)
{
	const char *dirs[] = { dir_a, dir_b };

	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, trace, sizeof(trace) - 1);
	ck_assert_int_eq(maildir_insert(&d, 3, "X: y\n", 5), 0);
	maildir_abort(&d);
	ck_assert_int_eq(count(dir_a, "tmp") + count(dir_a, "new"), 0);
	ck_assert_int_eq(count(dir_b, "tmp") + count(dir_b, "new"), 0);
}
END_TEST

/* An offset past the end, or a copy that cannot be rewritten: commit fails cleanly. */
START_TEST(a_failed_insert_fails_the_commit)
{
	const char *dirs[] = { dir_a, dir_b };
	char tmp[160], moved[160];

	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, trace, sizeof(trace) - 1);
	ck_assert_int_eq(maildir_insert(&d, (off_t)sizeof(trace), "X: y\n", 5), -1);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(dir_a, "tmp") + count(dir_a, "new"), 0);
	ck_assert_int_eq(count(dir_b, "tmp") + count(dir_b, "new"), 0);

	ck_assert_int_eq(harness_begin(&d, dirs, 2), DELIVER_OK);
	maildir_write(&d, trace, sizeof(trace) - 1);
	snprintf(tmp, sizeof(tmp), "%s/tmp", dir_b);
	snprintf(moved, sizeof(moved), "%s/tmp.gone", dir_b);
	ck_assert_int_eq(rename(tmp, moved), 0);	/* the second copy cannot be rewritten */
	ck_assert_int_eq(maildir_insert(&d, 0, "X: y\n", 5), -1);
	ck_assert_int_eq(maildir_commit(&d), DELIVER_TEMPFAIL);
	ck_assert_int_eq(count(dir_a, "tmp") + count(dir_a, "new"), 0);
	ck_assert_int_eq(count(dir_b, "new"), 0);
}
END_TEST

static Suite *
maildir_suite(void)
{
	Suite *s = suite_create("maildir");
	TCase *tc = tcase_create("maildir");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, a_message_lands_in_new_with_private_modes);
	tcase_add_test(tc, large_messages_stream_through_the_buffer);
	tcase_add_test(tc, each_delivery_gets_a_new_name_and_id);
	tcase_add_test(tc, abort_leaves_nothing);
	tcase_add_test(tc, a_failed_publish_undoes_the_earlier_ones);
	tcase_add_test(tc, an_unusable_maildir_fails_begin_cleanly);
	tcase_add_test(tc, two_spellings_of_one_maildir_get_one_copy);
	tcase_add_test(tc, what_a_folder_is);
	tcase_add_test(tc, making_a_folder);
	tcase_add_test(tc, staging_in_a_folder);
	tcase_add_test(tc, links_at_or_below_a_maildir_are_refused);
	tcase_add_test(tc, links_above_a_maildir_are_followed);
	tcase_add_test(tc, open_staged_reads_everything_written);
	tcase_add_test(tc, insert_goes_after_the_trace_lines_in_every_copy);
	tcase_add_test(tc, insert_then_abort_leaves_nothing);
	tcase_add_test(tc, a_failed_insert_fails_the_commit);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(maildir_suite());
}
