/*
 * activation.h: sockets passed by systemd's socket activation, read from
 * the environment as sd_listen_fds(3) documents it, without libsystemd:
 * loading the library for this one call cost every fd-3 connection about
 * 900,000 instructions and 1.2 MiB of resident memory (bench/RESULTS.md).
 */
#ifndef SMTPD_ACTIVATION_H
#define SMTPD_ACTIVATION_H

#define LISTEN_FDS_START	3	/* the first passed socket (sd_listen_fds(3)) */

/*
 * How many sockets systemd passed this process, from fd 3 on, each then
 * marked close-on-exec: 0 when LISTEN_PID is not this process (or either
 * variable is missing), -1 when LISTEN_FDS is not a positive count or a
 * descriptor it names is not open. With LISTEN_PID set, LISTEN_PID,
 * LISTEN_FDS and LISTEN_FDNAMES are then removed from the environment, as
 * sd_listen_fds(1) does, so no program smtpd starts takes them for its own.
 */
int activation_listen_fds(void);

#endif
