/* durable.h: writes a crash cannot half-undo, for maildir.c and tls.c. */
#ifndef SMTPD_DURABLE_H
#define SMTPD_DURABLE_H

#include <stddef.h>

/* All n bytes, through short writes and EINTR; -1 with errno (EIO for a 0 write). */
int durable_write_all(int fd, const void *p, size_t n);

/*
 * fsync(2), then close(2), which can report a late write error too: -1
 * when either fails, errno from the first failure. fd is closed either way.
 */
int durable_sync_close(int fd);

/*
 * fsync the directory that holds path (links followed), so a new or
 * renamed entry there survives a crash; path itself is not touched.
 */
int durable_sync_parent(const char *path);

#endif
