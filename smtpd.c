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
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>	/* SD_LISTEN_FDS_START only: nothing is linked */
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "libsystemd.h"
#include "log.h"
#include "reply.h"
#include "route.h"
#include "session.h"
#include "stop.h"

#define EXIT_CONFIG	78	/* sysexits.h EX_CONFIG */
#define CONFIG_LINE_MAX	4096
#define USAGE "usage: smtpd [-c FILE] [-m MAILDIR] [-h HOSTNAME] | smtpd -C FILE"

struct settings {
	struct session_config session;
	struct routes routes;
	const char *config_file;
	const char *maildir_option;	/* -m wins over `maildir` */
	const char *hostname_option;	/* -h wins over `hostname` */
	const char *user;		/* `user`: who to become when started as root */
	const char *compile_file;	/* -C FILE: write FILE.cdb and exit */
	char	*settings;		/* -C: the lines that are not domain or mailbox */
	size_t	settings_len, settings_size;
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

/* A yes/no setting. */
static int
parse_bool(const char *s, bool *out)
{
	if (strcmp(s, "yes") == 0 || strcmp(s, "no") == 0) {
		*out = s[0] == 'y';
		return 0;
	}
	return -1;
}

/*
 * recipient-delimiter: the characters that start a sub-address tag, any
 * one of them (default "+"); none at all turns sub-addresses off. Only
 * atext other than the dot, so that "user+tag" stays a Dot-string.
 */
static int
apply_delimiters(struct settings *st, const char *value, unsigned lineno)
{
	for (const char *p = value; p != NULL && *p != '\0'; p++)
		if (!((*p >= '!' && *p <= '~') && strchr("\"(),.:;<>@[\\]", *p) == NULL))
			return config_error(st, "%s line %u: recipient-delimiter takes characters such "
			    "as + or -, not %c", st->config_file, lineno, *p);
	free((char *)st->routes.delimiters);
	if ((st->routes.delimiters = strdup(value != NULL ? value : "")) == NULL)
		return config_error(st, "out of memory");
	return 0;
}

static int
apply_mailbox(struct settings *st, const char *address, const char *maildir, unsigned lineno)
{
	if (maildir == NULL)
		return config_error(st, "%s line %u: mailbox needs an address and a directory",
		    st->config_file, lineno);
	if (routes_add_mailbox(&st->routes, address, maildir, lineno) == 0)
		return 0;
	if (errno == EINVAL)
		return config_error(st, "%s line %u: bad mailbox address %s", st->config_file,
		    lineno, address);
	if (errno == ENAMETOOLONG)
		return config_error(st, "%s line %u: directory name too long", st->config_file,
		    lineno);
	return config_error(st, "out of memory");
}

/* -C keeps every line but the map's own, numbered, for the compiled map. */
static int
keep_setting(struct settings *st, const char *line, unsigned lineno)
{
	size_t need = strlen(line) + 16;
	int n;

	if (st->settings_size - st->settings_len < need) {
		size_t size = (st->settings_size + need) * 2;
		char *grown = realloc(st->settings, size);

		if (grown == NULL)
			return config_error(st, "out of memory");
		st->settings = grown;
		st->settings_size = size;
	}
	n = snprintf(st->settings + st->settings_len, st->settings_size - st->settings_len,
	    "%u %s\n", lineno, line);
	if (n < 0 || (size_t)n >= st->settings_size - st->settings_len)
		return config_error(st, "out of memory");
	st->settings_len += (size_t)n;
	return 0;
}

/* One "key value" line; words are separated by blanks. */
static int
apply_line(struct settings *st, char *line, unsigned lineno)
{
	char *key, *value, *extra, *save = NULL;
	char copy[CONFIG_LINE_MAX];

	if (st->compile_file != NULL)
		snprintf(copy, sizeof(copy), "%s", line);
	key = strtok_r(line, " \t", &save);
	if (key == NULL || key[0] == '#')
		return 0;
	value = strtok_r(NULL, " \t", &save);
	extra = strtok_r(NULL, " \t", &save);
	if (st->compile_file != NULL && strcmp(key, "mailbox") != 0 &&
	    strcmp(key, "domain") != 0 && keep_setting(st, copy, lineno) == -1)
		return -1;
	if (strcmp(key, "recipient-delimiter") == 0) {
		if (apply_delimiters(st, value, lineno) == -1)
			return -1;
	} else if (value == NULL) {
		return config_error(st, "%s line %u: %s needs a value", st->config_file, lineno, key);
	} else if (strcmp(key, "mailbox") == 0) {
		if (apply_mailbox(st, value, extra, lineno) == -1)
			return -1;
		extra = strtok_r(NULL, " \t", &save);
	} else if (strcmp(key, "hostname") == 0) {
		if (!address_valid_domain(value, strlen(value), false) ||
		    snprintf(st->hostname, sizeof(st->hostname), "%s", value) >= (int)sizeof(st->hostname))
			return config_error(st, "%s line %u: bad hostname", st->config_file, lineno);
	} else if (strcmp(key, "domain") == 0) {
		if (routes_add_domain(&st->routes, value) == -1)
			return config_error(st, errno == EINVAL ? "%s line %u: bad domain %s" :
			    "%s line %u: out of memory for domain %s", st->config_file, lineno, value);
	} else if (strcmp(key, "create-folders") == 0) {
		if (parse_bool(value, &st->routes.create_folders) == -1)
			return config_error(st, "%s line %u: create-folders is yes or no",
			    st->config_file, lineno);
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

/* The settings kept in a compiled map: "LINE TEXT\n" each, as keep_setting wrote them. */
static int
apply_map_settings(struct settings *st, const char *p, size_t n)
{
	char line[CONFIG_LINE_MAX];

	while (n > 0) {
		const char *nl = memchr(p, '\n', n);
		size_t len = nl != NULL ? (size_t)(nl - p) : n, i = 0;
		unsigned long lineno = 0;

		while (i < len && p[i] >= '0' && p[i] <= '9' && lineno < UINT_MAX / 10)
			lineno = lineno * 10 + (unsigned long)(p[i++] - '0');
		if (i == 0 || i >= len || p[i] != ' ' || len - i > sizeof(line))
			return config_error(st, "%s.cdb: damaged settings; run smtpd -C %s again",
			    st->config_file, st->config_file);
		memcpy(line, p + i + 1, len - i - 1);
		line[len - i - 1] = '\0';
		if (apply_line(st, line, (unsigned)lineno) == -1)
			return -1;
		p += len + (nl != NULL);
		n -= len + (nl != NULL);
	}
	return 0;
}

static bool
newer(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec > b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec > b->tv_nsec);
}

static int
map_path(struct settings *st, char *buf, size_t size, const char *suffix)
{
	int n = snprintf(buf, size, "%s.cdb%s", st->config_file, suffix);

	if (n < 0 || (size_t)n >= size)
		return config_error(st, "%s: name too long", st->config_file);
	return 0;
}

/*
 * -c FILE: FILE.cdb stands for FILE when it is newer (nanosecond mtimes),
 * so a large map costs one open and one mmap, not a parse. An older one is
 * ignored with a warning: someone edited FILE and forgot smtpd -C.
 */
static int
load_config(struct settings *st)
{
	char path[PATH_MAX];
	struct stat file, map;
	const char *settings;
	size_t len;
	int fd;

	if (stat(st->config_file, &file) == -1)
		return config_error(st, "cannot open %s: %s", st->config_file, strerror(errno));
	if (map_path(st, path, sizeof(path), "") == -1)
		return -1;
	if (stat(path, &map) == -1) {
		if (errno != ENOENT)
			return config_error(st, "cannot read %s: %s", path, strerror(errno));
		return read_config(st);
	}
	if (!newer(&map.st_mtim, &file.st_mtim)) {
		log_info("warning: %s is not newer than %s; parsing %s (run smtpd -C %s)",
		    path, st->config_file, st->config_file, st->config_file);
		return read_config(st);
	}
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return config_error(st, "cannot read %s: %s", path, strerror(errno));
	if (routes_open_map(&st->routes, fd, &settings, &len) == -1) {
		int err = errno;

		close(fd);
		return config_error(st, "cannot read %s: %s", path,
		    err == EPROTO ? "not a map made by smtpd -C" : strerror(err));
	}
	return apply_map_settings(st, settings, len);
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
	if ((dup = routes_finish(&st->routes)) == ROUTES_NOMEM)
		return config_error(st, "out of memory");
	if (dup != 0)
		return config_error(st, "%s line %u: duplicate mailbox address",
		    st->config_file, dup);
	return 0;
}

/*
 * -C FILE: check FILE as a session would, write FILE.cdb beside it through
 * a temporary file, fsync and rename it into place, so a session sees the
 * old map or the new one, never half of one. Not a session, so errors go
 * to stderr as well as to the log: an administrator is reading.
 */
static int
compile_map(struct settings *st)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	struct stat before, after, mine;
	int fd = -1, tries;

	st->config_file = st->compile_file;
	if (stat(st->config_file, &before) == -1)
		return config_error(st, "cannot open %s: %s", st->config_file, strerror(errno));
	if (read_config(st) == -1 || finish_config(st) == -1 ||
	    map_path(st, path, sizeof(path), "") == -1 || map_path(st, tmp, sizeof(tmp), ".tmp") == -1)
		return -1;
	unlink(tmp);	/* left by a compile that died; ours alone by O_EXCL below */
	if ((fd = open(tmp, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600)) == -1)
		return config_error(st, "cannot create %s: %s", tmp, strerror(errno));
	if (routes_write_map(&st->routes, fd, st->settings ? st->settings : "", st->settings_len) == -1 ||
	    fchmod(fd, before.st_mode & 0644) == -1 || fsync(fd) == -1)
		goto failed;
	/*
	 * The map must be strictly newer than FILE, but file times come from a
	 * coarse clock: within one tick, wait for the next (a few ms at most).
	 */
	for (tries = 0; tries < 2000; tries++) {
		struct timespec ms = { 0, 1000000 };

		if (futimens(fd, NULL) == -1 || fstat(fd, &mine) == -1)
			goto failed;
		if (newer(&mine.st_mtim, &before.st_mtim))
			break;
		nanosleep(&ms, NULL);
	}
	if (close(fd) == -1) {
		fd = -1;
		goto failed;
	}
	fd = -1;
	if (stat(st->config_file, &after) == -1 || newer(&after.st_mtim, &before.st_mtim) ||
	    after.st_size != before.st_size) {
		unlink(tmp);
		return config_error(st, "%s changed while it was compiled; run smtpd -C again",
		    st->config_file);
	}
	if (!newer(&mine.st_mtim, &before.st_mtim) || rename(tmp, path) == -1)
		goto failed;
	return 0;
failed:
	config_error(st, "cannot write %s: %s", tmp, strerror(errno));
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}

static int
parse_options(struct settings *st, int argc, char **argv)
{
	int ch;

	while ((ch = getopt(argc, argv, "c:m:h:C:")) != -1) {
		switch (ch) {
		case 'C':
			st->compile_file = optarg;
			break;
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
			return config_error(st, USAGE);
		}
	}
	if (optind != argc)
		return config_error(st, USAGE);
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

/* An address as text, an IPv4-mapped IPv6 one as the IPv4 it carries. */
static bool
address_text(int family, const void *addr, char *ip, size_t size)
{
	if (family == AF_INET6 && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *)addr)) {
		family = AF_INET;
		addr = (const unsigned char *)addr + 12;
	}
	return inet_ntop(family, addr, ip, (socklen_t)size) != NULL;
}

/* The connection's own peer, when it is a TCP socket. */
static bool
peer_from_socket(int fd, char *ip, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) == -1)
		return false;
	if (ss.ss_family == AF_INET)
		return address_text(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, size);
	if (ss.ss_family == AF_INET6)
		return address_text(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, size);
	return false;
}

/*
 * What the launcher says when the connection is not a socket we can ask
 * (a pipe from a TLS wrapper, a peer already gone): REMOTE_ADDR from
 * systemd, TCPREMOTEIP from tcpserver (protocol.md 5.3, 5.4).
 */
static bool
peer_from_environment(char *ip, size_t size)
{
	static const char *const names[] = { "REMOTE_ADDR", "TCPREMOTEIP" };
	unsigned char addr[sizeof(struct in6_addr)];
	const char *env;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if ((env = getenv(names[i])) == NULL)
			continue;
		if (inet_pton(AF_INET, env, addr) == 1)
			return address_text(AF_INET, addr, ip, size);
		if (inet_pton(AF_INET6, env, addr) == 1)
			return address_text(AF_INET6, addr, ip, size);
	}
	return false;
}

/*
 * The client's address for logs ("192.0.2.1", "IPv6:2001:db8::1", or
 * "local" on a pipe) and for Received (RFC 5321 4.1.3 address literal,
 * empty on a pipe). Never from DNS.
 */
static void
find_peer(int fd, char *peer, size_t size, char *literal, size_t lsize)
{
	char ip[INET6_ADDRSTRLEN];

	snprintf(peer, size, "local");
	literal[0] = '\0';
	if (!peer_from_socket(fd, ip, sizeof(ip)) && !peer_from_environment(ip, sizeof(ip)))
		return;
	if (strchr(ip, ':') != NULL) {
		snprintf(peer, size, "IPv6:%s", ip);
		snprintf(literal, lsize, "[IPv6:%s]", ip);
	} else {
		snprintf(peer, size, "%s", ip);
		snprintf(literal, lsize, "[%s]", ip);
	}
}

/* Setup faults still speak SMTP: 421 4.3.0, one log line, exit 78. */
static int
refuse_setup(int out_fd, const char *reason)
{
	struct reply out;

	log_error("configuration error: %s", reason);
	reply_init(&out, &(struct reply_options){ .fd = out_fd, .timeout_ms = 10000 });
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
	/*
	 * A vanished client is an error return, not a death by SIGPIPE. Stop
	 * signals keep their default action until the session (stop_catch):
	 * a stop while the configuration is read ends the process at once.
	 */
	signal(SIGPIPE, SIG_IGN);
	/* systemd Accept=yes without StandardInput=socket: fd 3 is the client. */
	switch (libsystemd_listen_fds()) {
	case 0:
		break;
	case 1:
		in_fd = out_fd = SD_LISTEN_FDS_START;
		break;
	case -1:
		log_error("LISTEN_PID is ours but libsystemd.so.0 cannot be loaded; using stdin");
		break;
	default:
		log_error("systemd passed several sockets; using stdin (Accept=yes passes one)");
		break;
	}
	st.session.max_message_size = 26214400;
	st.session.max_recipients = 100;
	st.session.timeout = 300;
	st.session.session_timeout = 3600;
	if (parse_options(&st, argc, argv) == -1)
		return refuse_setup(out_fd, st.error);
	if (st.compile_file != NULL) {
		if (compile_map(&st) == -1) {
			log_error("configuration error: %s", st.error);
			fprintf(stderr, "smtpd: %s\n", st.error);
			return EXIT_CONFIG;
		}
		return 0;
	}
	if ((st.config_file != NULL && load_config(&st) == -1) || finish_config(&st) == -1)
		return refuse_setup(out_fd, st.error);
	find_peer(in_fd, peer, sizeof(peer), literal, sizeof(literal));
	if (drop_privileges(&st) == -1)
		return refuse_setup(out_fd, st.error);
	st.session.hostname = st.hostname;
	st.session.routes = &st.routes;
	st.session.peer = peer;
	st.session.peer_literal = literal[0] != '\0' ? literal : NULL;
	st.session.stop = stop_catch();
	return session_run(&st.session, in_fd, out_fd);
}
