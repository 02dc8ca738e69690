/* maildir.h: durable delivery of one message into one or more Maildirs. */
#ifndef SMTPD_MAILDIR_H
#define SMTPD_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MAILDIR_BUFFER	65536
#define MAILDIR_NAME_MAX	(64 + 256 * 4)	/* a unique name, escaped host name included */

enum deliver_result { DELIVER_OK, DELIVER_TEMPFAIL, DELIVER_NOSPACE };

struct maildir_copy {
	const char *maildir;	/* borrowed from maildir_stage's caller until commit or abort */
	const char *folder;	/* borrowed likewise: "" or a Maildir++ folder ".NAME" in it */
	int	fd;		/* tmp/NAME while it is written */
	dev_t	dev;		/* the directory's identity, to stage each only once */
	ino_t	ino;
	bool	staged;		/* tmp/NAME is ours: unlink it on failure */
	bool	published;	/* linked into new/: undo by unlinking new/NAME */
};

struct delivery {
	char	id[64];		/* message id for Received, replies and logs */
	char	name[MAILDIR_NAME_MAX];	/* the file's name in tmp/ and new/ */
	struct maildir_copy *copies;	/* owned: room for the n of maildir_begin */
	size_t	ncopies, room;
	int	error;		/* first errno seen; 0 while all is well */
	size_t	len;		/* bytes held in buf */
	char	buf[MAILDIR_BUFFER];
};

/*
 * Symbolic links: the directories above a configured Maildir are the
 * administrator's and are followed; the Maildir itself and everything in
 * it (tmp/, new/, cur/, folders, their tmp/, new/, cur/, the files) are
 * opened relative to it with O_NOFOLLOW, so whoever can write inside a
 * Maildir cannot make these writes land anywhere else. A link there is an
 * error (ELOOP or ENOTDIR).
 */

/*
 * Start a message for up to n copies: sets d->id and the file name, both
 * unique on this host. DELIVER_TEMPFAIL when out of memory.
 */
enum deliver_result maildir_begin(struct delivery *d, size_t n);

/*
 * Stage the message in the Maildir maildir, or in its folder when folder
 * is not "": a new file in tmp/, O_EXCL, mode 0600. A missing Maildir is
 * created with its missing parents (mode 0700) and tmp/, new/ and cur/ are
 * made in it, or in the folder, when missing; each new directory is synced
 * into its parent. The folder itself must exist. A second copy for a
 * directory already staged (another spelling of it) is skipped. On a
 * failure every copy of d is dropped and nothing is left behind. Both
 * strings are borrowed until commit or abort.
 */
enum deliver_result maildir_stage(struct delivery *d, const char *maildir, const char *folder);

/*
 * Is folder (".NAME") in the Maildir a real Maildir++ folder: a directory,
 * not a link, with its "maildirfolder" file (Courier's maildir(5)) or with
 * cur/, new/ and tmp/ all present?
 */
bool maildir_is_folder(const char *maildir, const char *folder);

/*
 * create-folders: make folder (".NAME") in the Maildir, with its
 * "maildirfolder" file and tmp/, new/ and cur/ (and the Maildir itself when
 * missing), every new entry synced. 1 when made, 0 when it is a real folder
 * already; -1 with errno set, EEXIST for something else by that name, and
 * then nothing new is left.
 */
int maildir_make_folder(const char *maildir, const char *folder);

/* Append to every staged copy. Failures are kept for maildir_commit. */
void maildir_write(struct delivery *d, const char *p, size_t n);

/*
 * The promise behind 250 (RFC 5321 6.1: with it we take responsibility
 * for the message): flush, fsync and close every copy, link each into
 * new/, fsync each new/. On any failure every copy is removed from tmp/ and new/. ENOSPC and
 * EDQUOT give DELIVER_NOSPACE.
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
