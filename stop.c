/*
 * stop.c: SIGTERM, SIGINT and SIGHUP, the signals that stop a session.
 *
 * Promises: the list of stop signals, their handler, their blocking and
 * the mask they are taken under live here and nowhere else. A stop signal
 * interrupts only a wait (stop_poll), never a write or a delivery half
 * done: systemd's SIGTERM must end a session with 421 4.3.2 (RFC 5321
 * 3.8), not cut a message in two. Leaves to reader.c and reply.c what a
 * stop means for the wait they were in.
 */
#define _GNU_SOURCE	/* ppoll */
#include "stop.h"

#include <string.h>
#include <time.h>

static const int stop_signals[] = { SIGTERM, SIGINT, SIGHUP };

static volatile sig_atomic_t stop_flag;
static struct stop_wait caught = { .flag = &stop_flag };

static void
on_stop_signal(int sig)
{
	(void)sig;
	stop_flag = 1;
}

const struct stop_wait *
stop_catch(void)
{
	struct sigaction sa;
	sigset_t stops;

	sigemptyset(&stops);
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++)
		sigaddset(&stops, stop_signals[i]);
	/* Block first: a signal from now on waits for the handler, never kills. */
	if (sigprocmask(SIG_BLOCK, &stops, &caught.mask) == -1)
		return NULL;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;	/* no SA_RESTART: a wait must end */
	sa.sa_mask = stops;
	for (size_t i = 0; i < sizeof(stop_signals) / sizeof(stop_signals[0]); i++) {
		if (sigaction(stop_signals[i], &sa, NULL) == -1) {
			sigprocmask(SIG_SETMASK, &caught.mask, NULL);
			return NULL;
		}
	}
	return &caught;
}

bool
stop_requested(const struct stop_wait *w)
{
	return w != NULL && *w->flag != 0;
}

int
stop_poll(const struct stop_wait *w, struct pollfd *pfd, long long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

	return ppoll(pfd, 1, &ts, w != NULL ? &w->mask : NULL);
}

void
stop_let_in(const struct stop_wait *w)
{
	sigset_t blocked;

	if (w != NULL && sigprocmask(SIG_SETMASK, &w->mask, &blocked) == 0)
		sigprocmask(SIG_SETMASK, &blocked, NULL);
}
