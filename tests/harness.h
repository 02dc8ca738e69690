/* harness.h: run a whole session in-process over files, as if a socket. */
#ifndef SMTPD_HARNESS_H
#define SMTPD_HARNESS_H

#include <check.h>
#include <stddef.h>

#include "maildir.h"
#include "route.h"
#include "session.h"

#define HARNESS_REPLIES 2048

struct harness {
	char	dir[64];		/* private temporary directory */
	char	maildir[128];		/* dir/Maildir, the default destination */
	struct routes routes;
	struct session_config cfg;
	char	*out;			/* everything the server wrote */
	size_t	out_len;
	char	*lines;			/* a copy, cut into reply lines */
	char	*reply[HARNESS_REPLIES];	/* last line of each reply */
	size_t	nreplies;
	int	status;			/* session_run's return */
};

/* Make the directory and a default configuration; change h->cfg before running. */
void harness_init(struct harness *h);

/* Run a session on input (whole, or read_limit bytes per read(2)). */
void harness_run(struct harness *h, const char *input, size_t len, size_t read_limit);

/* harness_init + harness_run on a C string, read whole. */
void harness_start(struct harness *h, const char *input);

/* Reply i (0 is the greeting); the last line of a multi-line reply. "" if none. */
const char *harness_reply(const struct harness *h, size_t i);

/* Files in dir/Maildir/SUB (SUB is "new" or "tmp"). */
int harness_count(const struct harness *h, const char *sub);

/*
 * Contents of the only file in MAILDIR/new (NULL: h->maildir), NUL-terminated,
 * its length in *len when len is not NULL; NULL unless there is exactly one.
 */
char *harness_message(const struct harness *h, const char *maildir, size_t *len);

/* Log lines written since harness_init that contain needle. */
size_t harness_log_count(const char *needle);

/* maildir_begin, then maildir_stage in each of dirs[0..n) (no folder): the first failure. */
enum deliver_result harness_begin(struct delivery *d, const char *const *dirs, size_t n);

/* Run one Check suite; the exit status for main(). */
int harness_run_suite(Suite *suite);

/* Run tests (NULL-terminated) as one suite of one case called name. */
int harness_run_tests(const char *name, const TTest *const *tests);

/* Remove the directory. */
void harness_finish(struct harness *h);

#endif
