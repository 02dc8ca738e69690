/*
 * durable.c: the small steps every durable file write repeats: write it
 * all, fsync before close, and fsync the directory that names the file,
 * without which a rename or link may be lost in a crash (fsync(2)).
 * Leaves to its callers which files, in which order.
 */
#include "durable.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

int
durable_write_all(int fd, const void *buf, size_t n)
{
	const char *p = buf;

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

int
durable_sync_close(int fd)
{
	int rc = fsync(fd);
	int err = errno;

	if (close(fd) == -1 && rc == 0) {
		rc = -1;
		err = errno;
	}
	errno = err;
	return rc;
}

int
durable_sync_parent(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len = slash == NULL || slash == path ? 1 : (size_t)(slash - path);
	int fd;

	if (len >= sizeof(dir)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(dir, slash == NULL ? "." : path, len);
	dir[len] = '\0';
	if ((fd = openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return -1;
	return durable_sync_close(fd);
}
