/*
 * maildir.c: durable delivery into Maildir (protocol.md 4).
 *
 * Promises: a message is in new/ only when it is complete and on disk,
 * and when maildir_commit says DELIVER_OK; after any failure nothing of it
 * is left in tmp/ or new/. Only the directories it is given are written.
 * Knows nothing of SMTP: the caller decides what the bytes are and what
 * to answer.
 */
#include "maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <unistd.h>

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

static char *
join(const char *dir, const char *sub, const char *name)
{
	size_t n = strlen(dir) + strlen(sub) + strlen(name) + 3;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s/%s%s%s", dir, sub, *name ? "/" : "", name);
	return p;
}

/* Make the file system remember a new entry in dir. */
int
maildir_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc;

	if (fd == -1)
		return -1;
	rc = fsync(fd);
	if (close(fd) == -1)
		rc = -1;
	return rc;
}

/* Sync the directory that holds path (path itself is left as it was). */
static int
sync_parent(char *path)
{
	char *slash = strrchr(path, '/');
	int rc;

	if (slash == NULL)
		return maildir_sync_dir(".");
	if (slash == path)
		return maildir_sync_dir("/");
	*slash = '\0';
	rc = maildir_sync_dir(path);
	*slash = '/';
	return rc;
}

/*
 * mkdir -p with mode 0700; each new directory is synced into its parent.
 * If that sync fails the new directory is removed again: a later delivery
 * finding it would never sync it, and a 250 into a directory a crash can
 * lose would be a broken promise.
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
			if (sync_parent(buf) == -1) {
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

int
maildir_create(const char *dir)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	struct stat st;
	int rc = 0;

	for (size_t i = 0; i < 3 && rc == 0; i++) {
		char *sub = join(dir, subs[i], "");

		if (sub == NULL)
			return -1;
		if (stat(sub, &st) == -1 || !S_ISDIR(st.st_mode))
			rc = make_dirs(sub);
		free(sub);
	}
	return rc;
}

static enum deliver_result
result_of(int err)
{
	return (err == ENOSPC || err == EDQUOT) ? DELIVER_NOSPACE : DELIVER_TEMPFAIL;
}

static void
drop_copy(struct maildir_copy *c)
{
	if (c->fd != -1)
		close(c->fd);
	if (c->tmp_path != NULL)
		unlink(c->tmp_path);
	if (c->published) {
		/* Already renamed: take it back out of new/, durably. */
		char *newdir = join(c->dir, "new", "");

		unlink(c->new_path);
		if (newdir != NULL)
			maildir_sync_dir(newdir);
		free(newdir);
	}
	free(c->tmp_path);
	free(c->new_path);
	c->tmp_path = c->new_path = NULL;
	c->fd = -1;
	c->published = 0;
}

void
maildir_abort(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies; i++)
		drop_copy(&d->copies[i]);
	free(d->copies);
	d->copies = NULL;
	d->ncopies = 0;
	d->len = 0;
}

/*
 * Is dir a Maildir already staged under another spelling ("M" and "M/",
 * or a symlink)? Two copies there would collide on the same tmp/ name.
 */
static bool
staged_already(const struct delivery *d, const char *dir, struct maildir_copy *c)
{
	struct stat st;

	if (stat(dir, &st) == -1)
		return false;	/* the open below reports the problem */
	c->dev = st.st_dev;
	c->ino = st.st_ino;
	for (size_t i = 0; i + 1 < d->ncopies; i++)
		if (d->copies[i].dev == c->dev && d->copies[i].ino == c->ino)
			return true;
	return false;
}

/* Stage the next copy: 0 staged, 1 the same Maildir as an earlier one, -1 error. */
static int
stage_copy(struct delivery *d, const char *dir, const char *name)
{
	struct maildir_copy *c = &d->copies[d->ncopies++];

	c->dir = dir;
	c->fd = -1;
	if (maildir_create(dir) == -1)
		return -1;
	if (staged_already(d, dir, c)) {
		d->ncopies--;
		return 1;
	}
	c->tmp_path = join(dir, "tmp", name);
	c->new_path = join(dir, "new", name);
	if (c->tmp_path == NULL || c->new_path == NULL)
		return -1;
	c->fd = open(c->tmp_path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (c->fd == -1) {
		free(c->tmp_path);	/* not ours: never unlink it */
		c->tmp_path = NULL;
		return -1;
	}
	return 0;
}

enum deliver_result
maildir_begin(struct delivery *d, const char *const *dirs, size_t n)
{
	char name[64 + 256 * 4];
	struct timeval tv;

	d->error = 0;
	d->len = 0;
	d->ncopies = 0;
	d->copies = calloc(n, sizeof(*d->copies));
	if (d->copies == NULL)
		return DELIVER_TEMPFAIL;
	gettimeofday(&tv, NULL);
	deliveries++;
	snprintf(d->id, sizeof(d->id), "%lldM%06ldP%ldQ%lu", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), deliveries);
	snprintf(name, sizeof(name), "%lld.M%06ldP%ldQ%lu.%s", (long long)tv.tv_sec,
	    (long)tv.tv_usec, (long)getpid(), deliveries, unique_host());
	for (size_t i = 0; i < n; i++) {
		if (stage_copy(d, dirs[i], name) == -1) {
			int err = errno;

			maildir_abort(d);
			return result_of(err);
		}
	}
	return DELIVER_OK;
}

/* write(2) until done: short writes and EINTR are normal, not errors. */
static int
write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w == -1 && errno == EINTR)
			continue;
		if (w <= 0) {
			if (w == 0)
				errno = EIO;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static void
flush_buffer(struct delivery *d)
{
	for (size_t i = 0; i < d->ncopies && d->error == 0; i++)
		if (write_all(d->copies[i].fd, d->buf, d->len) == -1)
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

/* fsync and close one staged copy; close() can report a late error too. */
static int
seal_copy(struct maildir_copy *c)
{
	int rc = fsync(c->fd);
	int err = errno;

	if (close(c->fd) == -1 && rc == 0) {
		rc = -1;
		err = errno;
	}
	c->fd = -1;
	errno = err;
	return rc;
}

/*
 * tmp/ to new/: link(2) never replaces an existing file, unlike rename(2);
 * file systems without hard links get rename(2).
 */
static int
publish_copy(struct maildir_copy *c)
{
	if (link(c->tmp_path, c->new_path) == 0) {
		unlink(c->tmp_path);
	} else if (errno == EPERM || errno == EOPNOTSUPP || errno == ENOSYS) {
		if (rename(c->tmp_path, c->new_path) == -1)
			return -1;
	} else {
		return -1;
	}
	free(c->tmp_path);
	c->tmp_path = NULL;
	c->published = 1;
	return 0;
}

static int
sync_new_dir(const struct maildir_copy *c)
{
	char *newdir = join(c->dir, "new", "");
	int rc = newdir != NULL ? maildir_sync_dir(newdir) : -1;

	free(newdir);
	return rc;
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
		if (publish_copy(&d->copies[i]) == -1)
			d->error = errno;
	for (size_t i = 0; i < d->ncopies && d->error == 0; i++)
		if (sync_new_dir(&d->copies[i]) == -1)
			d->error = errno;
	if ((err = d->error) != 0) {
		maildir_abort(d);
		return result_of(err);
	}
	for (size_t i = 0; i < d->ncopies; i++)
		free(d->copies[i].new_path);
	free(d->copies);
	d->copies = NULL;
	d->ncopies = 0;
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

/* The staged file of c opened again, read-only; -1 with errno set. */
static int
open_copy_readonly(const struct maildir_copy *c)
{
	int fd = open(c->tmp_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

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
	if ((fd = open_copy_readonly(&d->copies[0])) == -1)
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
			if (write_all(dst, d->buf, (size_t)k) == -1)
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
	if (copy_range(d, src, 0, dst, at) == -1 || write_all(dst, p, n) == -1)
		return -1;
	return copy_range(d, src, at, dst, st.st_size - at);
}

/* Rewrite one staged copy with p inserted at at; the old file goes. */
static int
restage_copy(struct delivery *d, struct maildir_copy *c, off_t at, const char *p, size_t n)
{
	size_t len = strlen(c->tmp_path) + sizeof(",insert");
	char *path = malloc(len);
	int src, dst = -1, err = 0;

	if (path == NULL)
		return -1;
	snprintf(path, len, "%s,insert", c->tmp_path);
	if ((src = open_copy_readonly(c)) == -1) {
		free(path);
		return -1;
	}
	dst = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (dst == -1 || copy_with_insert(d, src, dst, at, p, n) == -1 ||
	    rename(path, c->tmp_path) == -1) {
		err = errno;
		if (dst != -1) {
			close(dst);
			unlink(path);
		}
	} else {
		close(c->fd);	/* the old file, already unlinked by rename */
		c->fd = dst;
	}
	close(src);
	free(path);
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
