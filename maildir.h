/* maildir.h: durable delivery of one message into one or more Maildirs. */
#ifndef SMTPD_MAILDIR_H
#define SMTPD_MAILDIR_H

#include <stddef.h>
#include <sys/types.h>

#define MAILDIR_BUFFER	65536

enum deliver_result { DELIVER_OK, DELIVER_TEMPFAIL, DELIVER_NOSPACE };

struct maildir_copy {
	const char *dir;	/* the Maildir; not owned */
	char	*tmp_path;	/* DIR/tmp/NAME while staged */
	char	*new_path;	/* DIR/new/NAME once renamed */
	int	fd;
	dev_t	dev;		/* the Maildir's identity, to stage each only once */
	ino_t	ino;
	int	published;	/* linked into new/: undo by unlinking new_path */
};

struct delivery {
	char	id[64];		/* message id for Received, replies and logs */
	struct maildir_copy *copies;
	size_t	ncopies;
	int	error;		/* first errno seen; 0 while all is well */
	size_t	len;		/* bytes held in buf */
	char	buf[MAILDIR_BUFFER];
};

/*
 * Stage a new message in each of dirs[0..n) (distinct Maildirs, created
 * with missing parents, mode 0700, when absent): a new file in tmp/ with a
 * unique name, O_EXCL, mode 0600. DELIVER_OK or a failure, then nothing is
 * left behind. Sets d->id, unique on this host.
 */
enum deliver_result maildir_begin(struct delivery *d, const char *const *dirs, size_t n);

/*
 * Create DIR, DIR/tmp, DIR/new and DIR/cur (missing parents too, mode 0700)
 * when any is missing; each new directory is synced into its parent, or
 * removed again. -1 with errno set on failure.
 */
int maildir_create(const char *dir);

/* fsync a directory, so the entries made in it survive a crash. -1 on failure. */
int maildir_sync_dir(const char *dir);

/* Append to every staged copy. Failures are kept for maildir_commit. */
void maildir_write(struct delivery *d, const char *p, size_t n);

/*
 * The promise behind 250 (protocol.md 4.2): flush, fsync and close every
 * copy, rename each into new/, fsync each new/. On any failure every copy
 * is removed from tmp/ and new/. ENOSPC and EDQUOT give DELIVER_NOSPACE.
 */
enum deliver_result maildir_commit(struct delivery *d);

/* Drop every staged copy (client gone, message refused). */
void maildir_abort(struct delivery *d);

/*
 * A read-only descriptor (O_CLOEXEC, at offset 0) of the first staged copy
 * holding everything written so far, for a content filter to read; the
 * caller closes it. -1 on failure, which maildir_commit then reports.
 */
int maildir_open_staged(struct delivery *d);

/*
 * Insert p[0..n) at byte offset at of every staged copy (a filter's header
 * fields after our trace lines), after the last maildir_write and before
 * maildir_commit. Each copy is rewritten as a new file in its tmp/: the
 * bytes before at, p, then the rest, copied by copy_file_range(2) and so
 * never through our memory; rename(2) puts it in the old one's place and
 * maildir_commit syncs it as usual. -1 on failure, which maildir_commit
 * then reports; a descriptor from maildir_open_staged still reads the old.
 */
int maildir_insert(struct delivery *d, off_t at, const char *p, size_t n);

#endif
