/* stop.h: the signals that ask smtpd to stop, and waits they can cut short. */
#ifndef SMTPD_STOP_H
#define SMTPD_STOP_H

#include <poll.h>
#include <signal.h>
#include <stdbool.h>

/*
 * How a wait for the client is cut short: a stop signal stays blocked
 * except inside stop_poll (or stop_let_in), where `mask` is the signal
 * mask, and its handler sets *flag.
 */
struct stop_wait {
	const volatile sig_atomic_t *flag;
	sigset_t mask;
};

/*
 * From now on SIGTERM, SIGINT and SIGHUP set a flag instead of ending the
 * process, and are blocked so that they arrive only during a wait. Call it
 * as the session starts: until then they keep the action smtpd was started
 * with (by default, ending the process), because before the session nothing
 * looks at a flag. NULL when they cannot be caught (they keep that action).
 */
const struct stop_wait *stop_catch(void);

/* Has a stop been asked for? Never, with a NULL w. */
bool stop_requested(const struct stop_wait *w);

/*
 * ppoll(2) on one descriptor for at most ms milliseconds, with stop signals
 * let in (a NULL w lets nothing in). As ppoll: -1 with EINTR after a signal.
 */
int stop_poll(const struct stop_wait *w, struct pollfd *pfd, long long ms);

/* Let pending stop signals run their handler, without waiting. */
void stop_let_in(const struct stop_wait *w);

#endif
