# smtpd: make builds ./smtpd; make check runs every test; make asan / ubsan
# run them again under the sanitizers.
CFLAGS ?= -O2 -g
STRICT  = -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Wpedantic -Wshadow \
          -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes -Wvla -Werror
OBJS    = config.o session.o reader.o reply.o stop.o maildir.o address.o route.o log.o \
          activation.o dynlib.o proxy.o filter.o tls.o durable.o text.o
TESTS   = tests/check_reply tests/check_reader tests/check_config \
          tests/check_maildir tests/check_session \
          tests/check_address tests/check_log tests/check_route tests/check_proxy \
          tests/check_filter tests/check_tls tests/check_activation
PREFIX ?= /usr/local
SBINDIR ?= $(PREFIX)/sbin
SYSCONFDIR ?= $(PREFIX)/etc
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/smtpd
UNITDIR ?= $(PREFIX)/lib/systemd/system
SHAREDIR ?= $(PREFIX)/share/smtpd
FILTERS = filters/spamassassin filters/rspamd
# route.o needs libcdb (the compiled map); address.o opens libidn2 with
# dlopen when a non-ASCII domain first needs it (idn2.h for the types only),
# tls.o opens libssl and libcrypto the same way when a client says STARTTLS.
# tinycdb's PIC archive is linked in where it exists: one shared library less
# to load costs every connection about 18,000 instructions less
# (bench/RESULTS-shape.md); a libcdb update then needs a rebuild.
CDB_PIC := $(shell $(CC) -print-file-name=libcdb_pic.a)
MAPLIBS = $(if $(filter /%,$(CDB_PIC)),$(CDB_PIC),$$(pkg-config --libs libcdb))

all: smtpd

# No .eh_frame in the plain build: C needs no unwinding, and those tables
# were a third of the binary's read-only pages that every connection maps
# (bench/RESULTS-shape.md); -g keeps the frames for debuggers in .debug_frame.
# The sanitizers keep them: their reports unwind through .eh_frame.
LEAN = $(if $(SAN),,-fno-asynchronous-unwind-tables)

# Rebuild everything when the compiler flags change (plain, asan, ubsan).
FLAGS := $(CC) $(CFLAGS) $(SAN) $(LEAN)
$(shell echo '$(FLAGS)' | cmp -s - .flags || echo '$(FLAGS)' > .flags)
# make may have looked at the directory before the line above wrote .flags
# (right after a clean): without a rule it then takes .flags as missing and
# falls back to its built-in %.o rule, losing STRICT and SAN.
.flags:
	echo '$(FLAGS)' > $@

# STARTTLS and PROXY code is built for size: a plain session never runs it,
# but its pages are mapped into every connection all the same (the kernel
# maps the cached pages around each fault), so its size is every session's
# memory (bench/RESULTS-shape.md).
tls.o proxy.o: CFLAGS += -Os

%.o: %.c .flags
	$(CC) $(STRICT) $(CFLAGS) $(SAN) $(LEAN) -MMD -MP -c -o $@ $<

# DT_RELR (binutils 2.38, glibc 2.36): the loader applies the binary's
# relative relocations from a bitmap, about 1,900 instructions fewer per
# connection (bench/RESULTS-shape.md); left out where the linker lacks it.
RELR := $(shell printf 'int main(void){return 0;}' | $(CC) -x c - -o /dev/null \
    -Wl,-z,pack-relative-relocs 2>/dev/null && echo -Wl,-z,pack-relative-relocs)

smtpd: smtpd.o $(OBJS)
	$(CC) $(SAN) $(LDFLAGS) $(RELR) -o $@ smtpd.o $(OBJS) $(MAPLIBS) -ldl

tests/check_%: tests/check_%.c tests/harness.c $(OBJS) .flags
	$(CC) $(STRICT) $(CFLAGS) $(SAN) -I. $$(pkg-config --cflags check) \
	    -o $@ tests/check_$*.c tests/harness.c $(OBJS) $(MAPLIBS) \
	    $$(pkg-config --libs check) -ldl

# The TLS test's client is OpenSSL itself, linked; tls.o still opens it by dlopen.
tests/check_tls: tests/check_tls.c tests/harness.c $(OBJS) .flags
	$(CC) $(STRICT) $(CFLAGS) $(SAN) -I. $$(pkg-config --cflags check) \
	    -o $@ tests/check_tls.c tests/harness.c $(OBJS) $(MAPLIBS) \
	    $$(pkg-config --libs check) $$(pkg-config --libs openssl) -ldl

check: smtpd $(TESTS) tests/fault/fault.so
	tests/run-units $(TESTS)
	tests/run-transcripts ./smtpd tests/transcripts/*.txt
	tests/run-e2e ./smtpd
	tests/run-hostile ./smtpd
	tests/fault/run-faults ./smtpd tests/fault/fault.so
	tests/run-crash ./smtpd 200
	@# Memory figures and valgrind mean something only for the plain build.
	if [ -z "$(SAN)" ]; then bench/rss ./smtpd && \
	    tests/run-valgrind ./smtpd tests/transcripts/*.txt; \
	else echo "bench/rss and valgrind: skipped for SAN=$(SAN)"; fi

# Not part of check: the e2e, hostile, fault and crash runners SOAK times
# in a row (20 unless told), stopping at the first failure (tests/run-soak).
SOAK ?= 20
soak: smtpd tests/fault/fault.so
	tests/run-soak ./smtpd tests/fault/fault.so $(SOAK)

# The fault shim is never built with a sanitizer: it only wraps libc calls.
tests/fault/fault.so: tests/fault/fault.c
	$(CC) -std=c11 -D_DEFAULT_SOURCE -Wall -Wextra -Werror -O2 -g -shared -fPIC \
	    -o $@ tests/fault/fault.c

# The units, examples and man page name the /usr/local paths; the installed
# copies name the ones chosen here.
INSTALL_PATHS = sed -e 's|/usr/local/sbin|$(SBINDIR)|g' \
    -e 's|/usr/local/etc|$(SYSCONFDIR)|g' -e 's|/usr/local/lib/systemd/system|$(UNITDIR)|g' \
    -e 's|/usr/local/share/doc/smtpd|$(DOCDIR)|g' -e 's|/usr/local/share/man|$(MANDIR)|g' \
    -e 's|/usr/local/share/smtpd|$(SHAREDIR)|g'
INSTALL_DOCS  = units/inetd.conf units/xinetd.conf units/tcpserver.run
# The TLS drop-in is an example: installed as a unit, it would stop a host
# without a certificate from starting sessions.
INSTALL_UNITS = units/smtpd.socket units/smtpd@.service \
    units/smtpd-ticket-keys.service units/smtpd-ticket-keys.timer

install: smtpd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
	    $(DESTDIR)$(DOCDIR)
	install -m 0755 smtpd $(DESTDIR)$(SBINDIR)/smtpd
	$(INSTALL_PATHS) smtpd.8 > $(DESTDIR)$(MANDIR)/man8/smtpd.8
	for f in $(INSTALL_UNITS); do \
	    $(INSTALL_PATHS) $$f > $(DESTDIR)$(UNITDIR)/$${f#units/} || exit 1; \
	    chmod 0644 $(DESTDIR)$(UNITDIR)/$${f#units/}; done
	for f in $(INSTALL_DOCS); do \
	    $(INSTALL_PATHS) $$f > $(DESTDIR)$(DOCDIR)/$${f#units/} || exit 1; done
	$(INSTALL_PATHS) units/smtpd@.service.d/tls.conf > $(DESTDIR)$(DOCDIR)/tls.conf
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/smtpd.8 $(DESTDIR)$(DOCDIR)/*
	chmod 0755 $(DESTDIR)$(DOCDIR)/tcpserver.run
	install -d $(DESTDIR)$(SHAREDIR)/filters
	for f in $(FILTERS); do \
	    $(INSTALL_PATHS) $$f > $(DESTDIR)$(SHAREDIR)/$$f || exit 1; done
	chmod 0755 $(DESTDIR)$(SHAREDIR)/filters/*

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/smtpd $(DESTDIR)$(MANDIR)/man8/smtpd.8
	for f in $(INSTALL_UNITS); do rm -f $(DESTDIR)$(UNITDIR)/$${f#units/}; done
	for f in $(INSTALL_DOCS); do rm -f $(DESTDIR)$(DOCDIR)/$${f#units/}; done
	rm -f $(DESTDIR)$(DOCDIR)/tls.conf
	-rmdir $(DESTDIR)$(DOCDIR)
	for f in $(FILTERS); do rm -f $(DESTDIR)$(SHAREDIR)/$$f; done
	-rmdir $(DESTDIR)$(SHAREDIR)/filters $(DESTDIR)$(SHAREDIR)

# libFuzzer over the real session code: clang, ASan and UBSan (fuzz/).
# fuzz-smoke is the short run CI makes; FUZZ_TIME=3600 for a long one.
# (clang, unlike gcc, wants a format attribute on every vprintf wrapper.)
FUZZ_FLAGS = -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
             -Wno-format-nonliteral
# tls.c gives way to a stub: no fuzz input survives a real handshake.
FUZZ_SRCS  = $(filter-out tls.c,$(OBJS:.o=.c)) fuzz/tls_stub.c
FUZZ_TIME ?= 60

fuzz/fuzz-session: fuzz/fuzz_session.c $(FUZZ_SRCS) *.h fuzz/*.h
	clang $(STRICT) $(FUZZ_FLAGS) -I. \
	    -o $@ fuzz/fuzz_session.c $(FUZZ_SRCS) $(MAPLIBS)

# The PROXY header and proxy-from parsers alone (proxy.c), run as
# fuzz-proxy: the PROXY header parser alone (fuzz/fuzz_proxy.c).
fuzz/fuzz-proxy: fuzz/fuzz_proxy.c proxy.c proxy.h
	clang $(STRICT) $(FUZZ_FLAGS) -I. -o $@ fuzz/fuzz_proxy.c proxy.c

fuzz-smoke: fuzz/fuzz-session fuzz/fuzz-proxy
	rm -rf fuzz/seeds && fuzz/make-seeds fuzz/seeds
	mkdir -p fuzz/corpus fuzz/corpus-proxy
	fuzz/fuzz-session -max_total_time=$(FUZZ_TIME) -max_len=4096 -timeout=10 \
	    -rss_limit_mb=1024 -print_final_stats=1 -artifact_prefix=fuzz/ \
	    fuzz/corpus fuzz/seeds
	fuzz/fuzz-proxy -max_total_time=$$(( $(FUZZ_TIME) / 3 + 1 )) -max_len=800 -timeout=10 \
	    -dict=fuzz/proxy.dict -print_final_stats=1 -artifact_prefix=fuzz/ fuzz/corpus-proxy

# Line coverage of what the corpus reaches (fuzz/RESULTS.md): each input
# in fuzz/corpus and fuzz/seeds runs once in a build with clang's profiling.
fuzz/fuzz-coverage: fuzz/fuzz_session.c $(FUZZ_SRCS) *.h fuzz/*.h
	clang $(STRICT) -O1 -g -fsanitize=fuzzer -fprofile-instr-generate \
	    -fcoverage-mapping -Wno-format-nonliteral -I. \
	    -o $@ fuzz/fuzz_session.c $(FUZZ_SRCS) $(MAPLIBS)

fuzz-coverage: fuzz/fuzz-coverage
	rm -f fuzz/coverage.profraw
	mkdir -p fuzz/corpus fuzz/seeds
	LLVM_PROFILE_FILE=fuzz/coverage.profraw fuzz/fuzz-coverage -runs=0 \
	    fuzz/corpus fuzz/seeds
	llvm-profdata merge -sparse -o fuzz/coverage.profdata fuzz/coverage.profraw
	llvm-cov report fuzz/fuzz-coverage -instr-profile=fuzz/coverage.profdata \
	    $(FUZZ_SRCS)

asan:
	$(MAKE) clean && $(MAKE) check \
	    SAN='-fsanitize=address -fno-omit-frame-pointer'
ubsan:
	$(MAKE) clean && $(MAKE) check \
	    SAN='-fsanitize=undefined -fno-sanitize-recover=all'

clean:
	rm -f smtpd *.o *.d tests/*.d $(TESTS) .flags tests/fault/fault.so fuzz/fuzz-session fuzz/fuzz-proxy fuzz/fuzz-coverage \
	    fuzz/coverage.profraw fuzz/coverage.profdata

.PHONY: all check soak install uninstall asan ubsan clean fuzz-smoke fuzz-coverage
-include *.d
