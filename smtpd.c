/*
 * smtpd.c: the process around one SMTP session.
 *
 * Promises: options and the config file are read before the first byte is
 * sent; a bad configuration still speaks SMTP (421 4.3.0, a log line,
 * exit 78) rather than dropping the client; the connection is fd 3 when
 * systemd passed exactly one (sd_listen_fds), else stdin/stdout. Knows no
 * SMTP grammar: session.c does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "address.h"
#include "log.h"
#include "reply.h"
#include "route.h"
#include "session.h"

#define EXIT_CONFIG	78	/* sysexits.h EX_CONFIG */
#define CONFIG_LINE_MAX	4096

struct settings {
	struct session_config session;
	struct routes routes;
	const char *config_file;
	const char *maildir_option;	/* -m wins over `maildir` */
	const char *hostname_option;	/* -h wins over `hostname` */
	const char *user;		/* `user`: who to become when started as root */
	char	hostname[256];
	char	error[512];		/* why the configuration is refused */
};

static int
config_error(struct settings *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int
config_error(struct settings *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->error, sizeof(st->error), fmt, ap);
	va_end(ap);
	return -1;
}

/* A decimal number in [min, max], and nothing else. */
static int
parse_number(const char *s, unsigned long long min, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long v = 0;

	if (*s == '\0')
		return -1;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9' || v > (max - (unsigned)(*s - '0')) / 10)
			return -1;
		v = v * 10 + (unsigned)(*s - '0');
	}
	if (v < min)
		return -1;
	*out = v;
	return 0;
}

/* "local@domain" or "@domain", checked with the SMTP grammar. */
static int
valid_mailbox_key(const char *key)
{
	const char *at = strrchr(key, '@');
	char path[SMTP_PATH_MAX + 8];
	struct address a;
	size_t used;

	if (at == NULL)
		return 0;
	if (at == key)
		return address_valid_domain(at + 1, strlen(at + 1), true);
	if (snprintf(path, sizeof(path), "<%s>", key) >= (int)sizeof(path))
		return 0;
	return address_parse_path(path, strlen(path), PATH_FORWARD, true, &a, &used) ==
	    ADDRESS_OK && used == strlen(path);
}

static int
apply_number(struct settings *st, const char *key, const char *value, unsigned lineno)
{
	static const struct {
		const char *key;
		unsigned long long min, max;
	} limits[] = {
		{ "max-message-size", 1, 1ULL << 40 },
		{ "max-recipients", 1, 1000000 },
		{ "timeout", 1, 86400 },
		{ "session-timeout", 1, 7 * 86400 },
	};
	unsigned long long v;

	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		if (strcmp(key, limits[i].key) != 0)
			continue;
		if (parse_number(value, limits[i].min, limits[i].max, &v) == -1)
			return config_error(st, "%s line %u: %s needs a number from %llu to %llu",
			    st->config_file, lineno, key, limits[i].min, limits[i].max);
		if (i == 0)
			st->session.max_message_size = v;
		else if (i == 1)
			st->session.max_recipients = (unsigned)v;
		else if (i == 2)
			st->session.timeout = (unsigned)v;
		else
			st->session.session_timeout = (unsigned)v;
		return 0;
	}
	return config_error(st, "%s line %u: unknown key %s", st->config_file, lineno, key);
}

/* One "key value" line; words are separated by blanks. */
static int
apply_line(struct settings *st, char *line, unsigned lineno)
{
	char *key, *value, *extra, *save = NULL;

	key = strtok_r(line, " \t", &save);
	if (key == NULL || key[0] == '#')
		return 0;
	value = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);
	if (value == NULL)
		return config_error(st, "%s line %u: %s needs a value", st->config_file, lineno, key);
	if (strcmp(key, "mailbox") == 0) {
		if (extra == NULL)
			return config_error(st, "%s line %u: mailbox needs an address and a directory",
			    st->config_file, lineno);
		if (!valid_mailbox_key(value))
			return config_error(st, "%s line %u: bad mailbox address %s",
			    st->config_file, lineno, value);
		if (routes_add_mailbox(&st->routes, value, extra, lineno) == -1)
			return config_error(st, "out of memory");
		extra = strtok_r(NULL, " \t", &save);
	} else if (strcmp(key, "hostname") == 0) {
		if (!address_valid_domain(value, strlen(value), false) ||
		    snprintf(st->hostname, sizeof(st->hostname), "%s", value) >= (int)sizeof(st->hostname))
			return config_error(st, "%s line %u: bad hostname", st->config_file, lineno);
	} else if (strcmp(key, "domain") == 0) {
		if (!address_valid_domain(value, strlen(value), true))
			return config_error(st, "%s line %u: bad domain %s", st->config_file, lineno, value);
		if (routes_add_domain(&st->routes, value) == -1)
			return config_error(st, "out of memory");
	} else if (strcmp(key, "user") == 0) {
		if ((st->user = strdup(value)) == NULL)
			return config_error(st, "out of memory");
	} else if (strcmp(key, "maildir") == 0) {
		if ((st->routes.default_maildir = strdup(value)) == NULL)
			return config_error(st, "out of memory");
	} else if (apply_number(st, key, value, lineno) == -1) {
		return -1;
	}
	if (extra != NULL)
		return config_error(st, "%s line %u: too many words", st->config_file, lineno);
	return 0;
}

static int
read_config(struct settings *st)
{
	char line[CONFIG_LINE_MAX];
	unsigned lineno = 0;
	FILE *f = fopen(st->config_file, "re");
	int rc = 0;

	if (f == NULL)
		return config_error(st, "cannot open %s: %s", st->config_file, strerror(errno));
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);

		lineno++;
		if (n > 0 && line[n - 1] != '\n' && !feof(f))
			rc = config_error(st, "%s line %u: line too long", st->config_file, lineno);
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		if (rc == 0)
			rc = apply_line(st, line, lineno);
	}
	if (rc == 0 && ferror(f))
		rc = config_error(st, "cannot read %s", st->config_file);
	fclose(f);
	return rc;
}

/* After the file: command-line options win, then the checks of the whole. */
static int
finish_config(struct settings *st)
{
	unsigned dup;

	if (st->maildir_option != NULL)
		st->routes.default_maildir = st->maildir_option;
	if (st->hostname_option != NULL) {
		if (!address_valid_domain(st->hostname_option, strlen(st->hostname_option), false))
			return config_error(st, "bad hostname given with -h");
		snprintf(st->hostname, sizeof(st->hostname), "%s", st->hostname_option);
	}
	if (st->hostname[0] == '\0' && gethostname(st->hostname, sizeof(st->hostname) - 1) == -1)
		snprintf(st->hostname, sizeof(st->hostname), "localhost");
	if (!routes_have_destination(&st->routes))
		return config_error(st, "no destination: give -m, a maildir or a mailbox line");
	if ((dup = routes_finish(&st->routes)) != 0)
		return config_error(st, "%s line %u: duplicate mailbox address",
		    st->config_file, dup);
	return 0;
}

static int
parse_options(struct settings *st, int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "c:m:h:")) != -1) {
		switch (ch) {
		case 'c':
			st->config_file = optarg;
			break;
		case 'm':
			st->maildir_option = optarg;
			break;
		case 'h':
			st->hostname_option = optarg;
			break;
		default:
			return config_error(st, "usage: smtpd [-c FILE] [-m MAILDIR] [-h HOSTNAME]");
		}
	}
	if (optind != argc)
		return config_error(st, "usage: smtpd [-c FILE] [-m MAILDIR] [-h HOSTNAME]");
	return 0;
}

/*
 * Become `user` and its groups, so that no parser bug ever runs as root.
 * Called after the config and the connection are set up and before the
 * first byte is read from the client. Not root: stay, if already that user.
 */
static int
drop_privileges(struct settings *st)
{
	struct passwd *pw;

	if (st->user == NULL)
		return 0;
	errno = 0;
	if ((pw = getpwnam(st->user)) == NULL)
		return config_error(st, "unknown user %s", st->user);
	if (geteuid() != 0) {
		if (getuid() == pw->pw_uid && geteuid() == pw->pw_uid)
			return 0;
		return config_error(st, "cannot become user %s: not started as root", st->user);
	}
	/* Groups first: after setuid() there is no right left to change them. */
	if (initgroups(pw->pw_name, pw->pw_gid) == -1 || setgid(pw->pw_gid) == -1 ||
	    setuid(pw->pw_uid) == -1)
		return config_error(st, "cannot become user %s: %s", st->user, strerror(errno));
	/* Verify: the change must be complete and irreversible. */
	if (pw->pw_uid != 0 && (setuid(0) != -1 || geteuid() != pw->pw_uid ||
	    getuid() != pw->pw_uid || getegid() != pw->pw_gid || getgid() != pw->pw_gid))
		return config_error(st, "cannot become user %s: still privileged", st->user);
	return 0;
}

/* The client's address, for logs and Received; never from DNS. */
static void
find_peer(int fd, char *peer, size_t size, char *literal, size_t lsize)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	char ip[INET6_ADDRSTRLEN];
	const char *env;
	struct in6_addr a6;
	struct in_addr a4;

	int rc;

	snprintf(peer, size, "local");
	literal[0] = '\0';
	memset(&ss, 0, sizeof(ss));
	rc = getpeername(fd, (struct sockaddr *)&ss, &len);
	if (rc == 0 && ss.ss_family == AF_INET) {
		inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
	} else if (rc == 0 && ss.ss_family == AF_INET6) {
		struct in6_addr *in6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(in6))
			inet_ntop(AF_INET, &in6->s6_addr[12], ip, sizeof(ip));
		else
			inet_ntop(AF_INET6, in6, ip, sizeof(ip));
	} else if (((env = getenv("REMOTE_ADDR")) != NULL || (env = getenv("TCPREMOTEIP")) != NULL) &&
	    (inet_pton(AF_INET, env, &a4) == 1 || inet_pton(AF_INET6, env, &a6) == 1)) {
		snprintf(ip, sizeof(ip), "%s", env);
	} else {
		return;
	}
	if (strncmp(ip, "::ffff:", 7) == 0 && strchr(ip + 7, ':') == NULL)
		memmove(ip, ip + 7, strlen(ip + 7) + 1);
	if (strchr(ip, ':') != NULL) {
		snprintf(peer, size, "IPv6:%s", ip);
		snprintf(literal, lsize, "[IPv6:%s]", ip);
	} else {
		snprintf(peer, size, "%s", ip);
		snprintf(literal, lsize, "[%s]", ip);
	}
}

static void
on_stop_signal(int sig)
{
	(void)sig;
	session_stop();
}

static void
install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;	/* no SA_RESTART: a wait must end */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);	/* a vanished client is an error return */
}

/* Setup faults still speak SMTP: 421 4.3.0, one log line, exit 78. */
static int
refuse_setup(int out_fd, const char *reason)
{
	struct reply out;

	log_error("configuration error: %s", reason);
	reply_init(&out, out_fd, 10000);
	reply_send(&out, 421, "4.3.0", "%s", reason);
	reply_flush(&out);
	return EXIT_CONFIG;
}

int
main(int argc, char **argv)
{
	static struct settings st;
	char peer[INET6_ADDRSTRLEN + 8], literal[INET6_ADDRSTRLEN + 8];
	int in_fd = 0, out_fd = 1;

	log_open("smtpd");
	/* systemd Accept=yes without StandardInput=socket: fd 3 is the client. */
	if (sd_listen_fds(1) == 1)
		in_fd = out_fd = SD_LISTEN_FDS_START;
	install_signals();
	st.session.max_message_size = 26214400;
	st.session.max_recipients = 100;
	st.session.timeout = 300;
	st.session.session_timeout = 3600;
	if (parse_options(&st, argc, argv) == -1 ||
	    (st.config_file != NULL && read_config(&st) == -1) || finish_config(&st) == -1)
		return refuse_setup(out_fd, st.error);
	find_peer(in_fd, peer, sizeof(peer), literal, sizeof(literal));
	if (drop_privileges(&st) == -1)
		return refuse_setup(out_fd, st.error);
	st.session.hostname = st.hostname;
	st.session.routes = &st.routes;
	st.session.peer = peer;
	st.session.peer_literal = literal[0] != '\0' ? literal : NULL;
	return session_run(&st.session, in_fd, out_fd);
}
