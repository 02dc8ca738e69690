/*
 * libsystemd.h: the libsystemd call smtpd makes, with the library
 * loaded (dlopen) only by the process that needs it. Linking it instead
 * would map libsystemd and its compression and crypto libraries into every
 * connection's process: about 1.4 MiB of resident memory and a measurable
 * share of the time to the greeting (bench/ACTIVATION.md).
 */
#ifndef SMTPD_LIBSYSTEMD_H
#define SMTPD_LIBSYSTEMD_H

/*
 * sd_listen_fds(1): how many sockets systemd passed, from fd 3 on, with
 * the LISTEN_* variables then removed. 0 without loading anything unless
 * LISTEN_PID names this process; -1 when the library cannot be loaded.
 */
int libsystemd_listen_fds(void);

#endif
