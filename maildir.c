/*
 * maildir.c: durable delivery into Maildir.
 *
 * Promises: a message is in new/ only when it is complete and on disk,
 * and when maildir_commit says DELIVER_OK; after any failure nothing of it
 * is left in tmp/ or new/. Only the directories it is given are written,
 * and no symbolic link at or below a Maildir is followed (maildir.h).
 * Knows nothing of SMTP: the caller decides what the bytes are and what
 * to answer.
 */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

#include "durable.h"

#define DIR_FLAGS	(O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
#define PATH_FLAGS	(O_RDONLY | O_DIRECTORY | O_CLOEXEC)	/* above a Maildir: links followed */

static const char *const subdirs[] = { "tmp", "new", "cur" };

static unsigned long deliveries;	/* Q<n> in unique names */

/* gethostname() with / and : escaped, as the Maildir spec asks. */
static const char *
unique_host(void)
{
	static char host[256 * 4 + 1];
	char raw[256];
	size_t o = 0;

	if (host[0] != '\0')
		return host;
	if (gethostname(raw, sizeof(raw)) == -1)
		snprintf(raw, sizeof(raw), "localhost");
	raw[sizeof(raw) - 1] = '\0';
	for (const char *p = raw; *p != '\0'; p++) {
		if (*p == '/' || *p == ':') {
			snprintf(host + o, 5, "\\%03o", (unsigned char)*p);
			o += 4;
		} else {
			host[o++] = *p;
		}
	}
	host[o] = '\0';
	return host;
}

/* close(2) that leaves errno as it was: for clean-up after a failure. */
static void
close_quietly(int fd)
{
	int err = errno;

	if (fd != -1)
		close(fd);
	errno = err;
}

/* name in the directory dirfd, never through a link; dirfd is closed, errno kept. */
static int
open_below(int dirfd, const char *name)
{
	int fd = openat(dirfd, name, DIR_FLAGS);

	close_quietly(dirfd);
	return fd;
}

/*
 * mkdir -p of a configured Maildir, mode 0700; each new directory is
 * synced into its parent. If that sync fails the new directory is removed
 * again: a later delivery finding it would never sync it, and a 250 into a
 * directory a crash can lose would be a broken promise.
 */
static int
make_dirs(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);

	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (mkdir(buf, 0700) == 0) {
			if (durable_sync_parent(buf) == -1) {
				int err = errno;

				rmdir(buf);
				errno = err;
				return -1;
			}
		} else if (errno != EEXIST) {
			return -1;
		}
		buf[i] = i < n ? '/' : '\0';
	}
	return 0;
}

/*
 * The configured Maildir: its parent is opened as written (links above the
 * Maildir are the administrator's), the Maildir itself with O_NOFOLLOW.
 * Trailing slashes go first: "M/" would follow a link M.
 */
static int
open_maildir(const char *path)
{
	char buf[PATH_MAX];
	size_t n = strlen(path);
	const char *name = buf;
	char *slash;
	int parent;

	while (n > 1 && path[n - 1] == '/')
		n--;
	if (n == 0 || n >= sizeof(buf)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(buf, path, n);
	buf[n] = '\0';
	while (n > 0 && buf[n - 1] != '/')
		n--;
	slash = n > 0 ? buf + n - 1 : NULL;	/* the last '/' */
	if (slash == NULL) {
		parent = openat(AT_FDCWD, ".", PATH_FLAGS);
	} else if (slash[1] == '\0') {
		return openat(AT_FDCWD, "/", PATH_FLAGS);	/* the Maildir is "/" */
	} else {
		name = slash + 1;
		if (slash == buf)
			slash++;	/* "/M": the parent is "/" */
		*slash = '\0';
		parent = openat(AT_FDCWD, buf, PATH_FLAGS);
	}
	return parent == -1 ? -1 : open_below(parent, name);
}

/* The Maildir, made first (with its missing parents) when it is missing. */
static int
open_or_make_maildir(const char *path)
{
	int fd = open_maildir(path);

	if (fd == -1 && errno == ENOENT && make_dirs(path) == 0)
		fd = open_maildir(path);
	return fd;
}

/* A folder is one name in its Maildir: never "/", ".", "..". */
static bool
folder_name_ok(const char *folder)
{
	return folder[0] == '.' && strchr(folder, '/') == NULL && strcmp(folder, ".") != 0 &&
	    strcmp(folder, "..") != 0;
}

/* The directory a copy goes to: the Maildir, or its folder. */
static int
open_dest(const char *maildir, const char *folder, bool make)
{
	int mfd;

	if (folder[0] != '\0' && !folder_name_ok(folder)) {
		errno = EINVAL;
		return -1;
	}
	if ((mfd = make ? open_or_make_maildir(maildir) : open_maildir(maildir)) == -1 ||
	    folder[0] == '\0')
		return mfd;
	return open_below(mfd, folder);
}

/*
 * tmp/, new/ and cur/ in dirfd: each must be a directory (a link is
 * refused), made with mode 0700 when missing. New entries are synced into
 * dirfd, or removed again when that fails.
 */
static int
complete_dirs(int dirfd)
{
	bool made[3] = { false, false, false }, any = false;
	struct stat st;
	int err;

	for (size_t i = 0; i < 3; i++) {
		if (fstatat(dirfd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) == -1) {
			if (errno != ENOENT)
				goto undo;
			if (mkdirat(dirfd, subdirs[i], 0700) == 0) {
				made[i] = any = true;
				continue;
			}
			/* EEXIST: another session made it between our look and ours. */
			if (errno != EEXIST || fstatat(dirfd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) == -1)
				goto undo;
		}
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			goto undo;
		}
	}
	if (!any || fsync(dirfd) == 0)
		return 0;
undo:
	err = errno;
	for (size_t i = 0; i < 3; i++)
		if (made[i])
			unlinkat(dirfd, subdirs[i], AT_REMOVEDIR);
	errno = err;
	return -1;
}

static bool
real_folder(int fd)
{
	struct stat st;

	if (fstatat(fd, "maildirfolder", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
		return true;
	for (size_t i = 0; i < 3; i++)
		if (fstatat(fd, subdirs[i], &st, AT_SYMLINK_NOFOLLOW) == -1 || !S_ISDIR(st.st_mode))
			return false;
	return true;
}

bool
maildir_is_folder(const char *maildir, const char *folder)
{
	int fd = open_dest(maildir, folder, false);
	bool real;

	if (fd == -1 || folder[0] == '\0') {
		close_quietly(fd);
		return false;
	}
	real = real_folder(fd);
	close(fd);
	return real;
}

/* The new folder's contents: its marker, tmp/, new/, cur/, all synced. */
static int
fill_folder(int fd)
{
	int marker = openat(fd, "maildirfolder", O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW |
	    O_CLOEXEC, 0600);

	if (marker == -1 || close(marker) == -1)
		return -1;
	return complete_dirs(fd);
}

/* Take a folder made by maildir_make_folder back out (best effort). */
static void
unmake_folder(const char *maildir, const char *folder)
{
	int mfd = open_maildir(maildir), fd;

	if (mfd == -1)
		return;
	if ((fd = openat(mfd, folder, DIR_FLAGS)) != -1) {
		for (size_t i = 0; i < 3; i++)
			unlinkat(fd, subdirs[i], AT_REMOVEDIR);
		unlinkat(fd, "maildirfolder", 0);
		close(fd);
	}
	unlinkat(mfd, folder, AT_REMOVEDIR);
	close(mfd);
}

int
maildir_make_folder(const char *maildir, const char *folder)
{
	int mfd, fd, err, rc;

	if (!folder_name_ok(folder)) {
		errno = EINVAL;
		return -1;
	}
	/* A folder belongs to a whole Maildir (Maildir++). */
	if ((mfd = open_or_make_maildir(maildir)) == -1)
		return -1;
	if (complete_dirs(mfd) == -1 || mkdirat(mfd, folder, 0700) == -1) {
		err = errno;
		rc = err == EEXIST && maildir_is_folder(maildir, folder) ? 0 : -1;
		close(mfd);
		errno = err;
		return rc;
	}
	fd = openat(mfd, folder, DIR_FLAGS);
	rc = fd != -1 && fill_folder(fd) == 0 ? 0 : -1;
	if (fd != -1 && close(fd) == -1)
		rc = -1;
	if (rc == 0)
		rc = durable_sync_close(mfd);
	else
		close_quietly(mfd);
	if (rc == 0)
		return 1;
	/* Not durable: take it back out, so no later delivery trusts it. */
	err = errno;
	unmake_folder(maildir, folder);
	errno = err;
	return -1;
}

static enum deliver_result
result_of(int err)
{
	return (err == ENOSPC || err == EDQUOT) ? DELIVER_NOSPACE : DELIVER_TEMPFAIL;
}

/* tmp/ and new/ of a copy's directory, never through a link. */
static int
open_tmp_new(const struct maildir_copy *c, int *tmpfd, int *newfd)
{
	int fd = open_dest(c->maildir, c->folder, false);

	*tmpfd = *newfd = -1;
	if (fd == -1)
		return -1;
	if ((*tmpfd = openat(fd, "tmp", DIR_FLAGS)) == -1 ||
	    (*newfd = openat(fd, "new", DIR_FLAGS)) == -1) {
		close_quietly(*tmpfd);
		close_quietly(fd);
		*tmpfd = -1;
		return -1;
	}
	close(fd);
	return 0;
}

/* Unlink name in sub/ of fd, then sync sub/ when asked; best effort. */
static void
unlink_in(int fd, const char *sub, const char *name, bool sync)
{
	int subfd = openat(fd, sub, DIR_FLAGS);

	if (subfd == -1)
		return;
	if (unlinkat(subfd, name, 0) == 0 && sync)
		fsync(subfd);
	close(subfd);
}

static void
drop_copy(const struct delivery *d, struct maildir_copy *c)
{
	int fd;

	if (c->fd != -1)
		close(c->fd);
	c->fd = -1;
	if ((c->staged || c->published) && (fd = open_dest(c->maildir, c->folder, false)) != -1) {
		if (c->staged)
			unlink_in(fd, "tmp", d->name, false);
		if (c->published)	/* already linked: take it back out of new/, durably */
			unlink_in(fd, "new", d->name, true);
		close(fd);
	}
	c->staged = c->published = false;
}

void
maildir_abort(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies; i++)
		drop_copy(d, &d->copies[i]);
	free(d->copies);
	d->copies = NULL;
	d->ncopies = d->room = 0;
	d->len = 0;
}

/*
 * Is the directory fd one already staged under another spelling ("M" and
 * "M/", or a folder that fell back to its Maildir)? Two copies there would
 * collide on the same tmp/ name.
 */
static bool
staged_already(const struct delivery *d, int fd, struct maildir_copy *c)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return false;	/* the open below reports the problem */
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	for (size_t i = 0; i + 1 < d->ncopies; i++)
		if (d->copies[i].dev == c->dev && d->copies[i].ino == c->ino)
			return true;
	return false;
}

/* Stage the next copy: 0 staged, 1 the same directory as an earlier one, -1 error. */
static int
stage_copy(struct delivery *d, const char *maildir, const char *folder)
{
	struct maildir_copy *c = &d->copies[d->ncopies++];
	int fd, tmpfd;

	c->maildir = maildir;
	c->folder = folder;
	c->fd = -1;
	if ((fd = open_dest(maildir, folder, true)) == -1)
		return -1;
	if (complete_dirs(fd) == -1) {
		close_quietly(fd);
		return -1;
	}
	if (staged_already(d, fd, c)) {
		d->ncopies--;
		return close(fd) == 0 ? 1 : -1;
	}
	tmpfd = openat(fd, "tmp", DIR_FLAGS);
	/* complete_dirs may have synced fd: its close can report a late error. */
	if (close(fd) == -1 || tmpfd == -1) {
		close_quietly(tmpfd);
		return -1;
	}
	c->fd = openat(tmpfd, d->name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	close_quietly(tmpfd);
	if (c->fd == -1)
		return -1;	/* not ours: never unlink it */
	c->staged = true;
	return 0;
}

enum deliver_result
maildir_begin(struct delivery *d, size_t n)
{
	struct timeval tv;

	d->error = 0;
	d->len = 0;
	d->ncopies = 0;
	d->room = n;
	d->copies = calloc(n > 0 ? n : 1, sizeof(*d->copies));
	if (d->copies == NULL)
		return DELIVER_TEMPFAIL;
	gettimeofday(&tv, NULL);
	deliveries++;
	snprintf(d->id, sizeof(d->id), "%lldM%06ldP%ldQ%lu", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), deliveries);
	snprintf(d->name, sizeof(d->name), "%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), deliveries, unique_host());
	return DELIVER_OK;
}

enum deliver_result
maildir_stage(struct delivery *d, const char *maildir, const char *folder)
{
	int err = EINVAL;	/* more copies than maildir_begin was told */

	if (d->ncopies < d->room) {
		if (stage_copy(d, maildir, folder) != -1)
			return DELIVER_OK;
		err = errno;
	}
	maildir_abort(d);
	return result_of(err);
}

static void
flush_buffer(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies && d->error == 0; i++)
		if (durable_write_all(d->copies[i].fd, d->buf, d->len) == -1)
			d->error = errno;
	d->len = 0;
}

void
maildir_write(struct delivery *d, const char *p, size_t n)
{
	while (n > 0 && d->error == 0) {
		size_t room = sizeof(d->buf) - d->len;
		size_t k = n < room ? n : room;

		memcpy(d->buf + d->len, p, k);
		d->len += k;
		p += k;
		n -= k;
		if (d->len == sizeof(d->buf))
			flush_buffer(d);
	}
}

/* fsync and close one staged copy. */
static int
seal_copy(struct maildir_copy *c)
{
	int rc = durable_sync_close(c->fd);

	c->fd = -1;
	return rc;
}

/*
 * tmp/ to new/, then new/ synced: link(2) never replaces an existing file,
 * unlike rename(2); file systems without hard links get rename(2).
 */
static int
publish_copy(const struct delivery *d, struct maildir_copy *c)
{
	int tmpfd, newfd, rc = -1;

	if (open_tmp_new(c, &tmpfd, &newfd) == -1)
		return -1;
	if (linkat(tmpfd, d->name, newfd, d->name, 0) == 0) {
		unlinkat(tmpfd, d->name, 0);
		rc = 0;
	} else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
		rc = renameat(tmpfd, d->name, newfd, d->name);
	}
	close_quietly(tmpfd);
	if (rc == -1) {
		close_quietly(newfd);
		return -1;
	}
	c->staged = false;
	c->published = true;
	return durable_sync_close(newfd);
}

enum deliver_result
maildir_commit(struct delivery *d)
{
	int err;

	if (d->len > 0)
		flush_buffer(d);
	for (size_t i = 0; i < d->ncopies && d->error == 0; i++)
		if (seal_copy(&d->copies[i]) == -1)
			d->error = errno;
	for (size_t i = 0; i < d->ncopies && d->error == 0; i++)
		if (publish_copy(d, &d->copies[i]) == -1)
			d->error = errno;
	if ((err = d->error) != 0) {
		maildir_abort(d);
		return result_of(err);
	}
	free(d->copies);
	d->copies = NULL;
	d->ncopies = d->room = 0;
	return DELIVER_OK;
}

/* Is fd the file staged as c (not another file put under its name)? */
static bool
is_staged_file(const struct maildir_copy *c, int fd)
{
	struct stat a, b;

	if (fstat(fd, &a) == -1 || fstat(c->fd, &b) == -1)
		return false;
	return a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

/* tmp/ of a copy's directory, never through a link; -1 with errno set. */
static int
open_tmp(const struct maildir_copy *c)
{
	int tmpfd, newfd;

	if (open_tmp_new(c, &tmpfd, &newfd) == -1)
		return -1;
	close(newfd);
	return tmpfd;
}

/* The staged file of c opened again, read-only; -1 with errno set. */
static int
open_copy_readonly(const struct delivery *d, const struct maildir_copy *c)
{
	int tmpfd = open_tmp(c), fd;

	if (tmpfd == -1)
		return -1;
	fd = openat(tmpfd, d->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	close(tmpfd);
	if (fd != -1 && !is_staged_file(c, fd)) {
		close(fd);
		errno = EIO;
		return -1;
	}
	return fd;
}

int
maildir_open_staged(struct delivery *d)
{
	int fd;

	if (d->len > 0)
		flush_buffer(d);
	if (d->error != 0 || d->ncopies == 0)
		return -1;
	if ((fd = open_copy_readonly(d, &d->copies[0])) == -1)
		d->error = errno;
	return fd;
}

#define COPY_CHUNK	(1LL << 30)	/* bytes per copy_file_range call */

/*
 * n bytes from src at off to dst's file position: copy_file_range(2) keeps
 * them in the kernel (or shares the blocks); where it cannot (older
 * kernels, some file systems) pread and write through d->buf, which is
 * empty after flush_buffer.
 */
static int
copy_range(struct delivery *d, int src, long long off, int dst, long long n)
{
	bool in_kernel = true;

	while (n > 0) {
		size_t want = n < (long long)sizeof(d->buf) ? (size_t)n : sizeof(d->buf);
		ssize_t k;

		if (in_kernel) {
			k = syscall(SYS_copy_file_range, src, &off, dst, NULL,
			    n < COPY_CHUNK ? (size_t)n : (size_t)COPY_CHUNK, 0u);
			if (k == -1 && (errno == ENOSYS || errno == EXDEV || errno == EINVAL ||
			    errno == EOPNOTSUPP)) {
				in_kernel = false;
				continue;
			}
		} else if ((k = pread(src, d->buf, want, off)) > 0) {
			if (durable_write_all(dst, d->buf, (size_t)k) == -1)
				return -1;
			off += k;
		}
		if (k == -1 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = EIO;	/* the staged file shrank under us */
			return -1;
		}
		n -= k;
	}
	return 0;
}

/* Write head, p, tail of src into dst. */
static int
copy_with_insert(struct delivery *d, int src, int dst, off_t at, const char *p, size_t n)
{
	struct stat st;

	if (fstat(src, &st) == -1)
		return -1;
	if (at < 0 || at > st.st_size) {
		errno = EINVAL;
		return -1;
	}
	if (copy_range(d, src, 0, dst, at) == -1 || durable_write_all(dst, p, n) == -1)
		return -1;
	return copy_range(d, src, at, dst, st.st_size - at);
}

/* Rewrite one staged copy with p inserted at at; the old file goes. */
static int
restage_copy(struct delivery *d, struct maildir_copy *c, off_t at, const char *p, size_t n)
{
	char name[MAILDIR_NAME_MAX + sizeof(",insert")];
	int src, dst = -1, tmpfd, err = 0;

	snprintf(name, sizeof(name), "%s,insert", d->name);
	if ((tmpfd = open_tmp(c)) == -1)
		return -1;
	if ((src = open_copy_readonly(d, c)) == -1) {
		close(tmpfd);
		return -1;
	}
	dst = openat(tmpfd, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (dst == -1 || copy_with_insert(d, src, dst, at, p, n) == -1 ||
	    renameat(tmpfd, name, tmpfd, d->name) == -1) {
		err = errno;
		if (dst != -1) {
			close(dst);
			unlinkat(tmpfd, name, 0);
		}
	} else {
		close(c->fd);	/* the old file, already unlinked by renameat */
		c->fd = dst;
	}
	close(src);
	close(tmpfd);
	errno = err;
	return err == 0 ? 0 : -1;
}

int
maildir_insert(struct delivery *d, off_t at, const char *p, size_t n)
{
	if (d->len > 0)
		flush_buffer(d);
	for (size_t i = 0; i < d->ncopies && d->error == 0 && n > 0; i++)
		if (restage_copy(d, &d->copies[i], at, p, n) == -1)
			d->error = errno;
	return d->error == 0 ? 0 : -1;
}
