/* check_log.c: log lines as journal fields, and client text made safe. */
#include <check.h>
#include <string.h>

#include "harness.h"
#include "log.h"

static char buf[8192];
static struct iovec iov[LOG_FIELDS_MAX];

static const char *
field(size_t i)
{
	static char one[1024];
	size_t n = iov[i].iov_len < sizeof(one) - 1 ? iov[i].iov_len : sizeof(one) - 1;

	memcpy(one, iov[i].iov_base, n);
	one[n] = '\0';
	return one;
}

START_TEST(delivery_line_becomes_fields)
{
	size_t n = log_fields("delivered peer=IPv6:2001:db8::1 id=17Q1 from=\"a@b.example\" "
	    "rcpt=\"c@d.example\" nrcpt=2 size=120", iov, LOG_FIELDS_MAX, buf, sizeof(buf));

	ck_assert_uint_eq(n, 7);
	ck_assert_str_eq(field(0), "SMTPD_EVENT=delivered");
	ck_assert_str_eq(field(1), "SMTPD_PEER=IPv6:2001:db8::1");
	ck_assert_str_eq(field(2), "SMTPD_ID=17Q1");
	ck_assert_str_eq(field(3), "SMTPD_FROM=a@b.example");
	ck_assert_str_eq(field(4), "SMTPD_RCPT=c@d.example");
	ck_assert_str_eq(field(6), "SMTPD_SIZE=120");
}
END_TEST

START_TEST(quoted_values_keep_their_blanks)
{
	size_t n = log_fields("refused peer=local cmd=RCPT reply=\"452 4.5.3 Too many recipients\"",
	    iov, LOG_FIELDS_MAX, buf, sizeof(buf));

	ck_assert_uint_eq(n, 4);
	ck_assert_str_eq(field(2), "SMTPD_CMD=RCPT");
	ck_assert_str_eq(field(3), "SMTPD_REPLY=452 4.5.3 Too many recipients");
}
END_TEST

START_TEST(dashes_become_underscores)
{
	ck_assert_uint_eq(log_fields("x max-size=5", iov, LOG_FIELDS_MAX, buf, sizeof(buf)), 2);
	ck_assert_str_eq(field(1), "SMTPD_MAX_SIZE=5");
}
END_TEST

/* Prose after the fields, or no event word: MESSAGE still has it all. */
START_TEST(odd_shapes_stop_the_fields)
{
	ck_assert_uint_eq(log_fields("configuration error: bad", iov, LOG_FIELDS_MAX, buf,
	    sizeof(buf)), 1);
	ck_assert_uint_eq(log_fields("peer=x", iov, LOG_FIELDS_MAX, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(log_fields("", iov, LOG_FIELDS_MAX, buf, sizeof(buf)), 0);
	ck_assert_uint_eq(log_fields("ev a=\"open", iov, LOG_FIELDS_MAX, buf, sizeof(buf)), 1);
	ck_assert_uint_eq(log_fields("ev a=1 Upper=2", iov, LOG_FIELDS_MAX, buf, sizeof(buf)), 2);
}
END_TEST

/* Never past the caller's buffer or iov array. */
START_TEST(limits_are_kept)
{
	char small[40];

	ck_assert_uint_eq(log_fields("ev a=1 b=2 c=3", iov, 2, buf, sizeof(buf)), 2);
	ck_assert_uint_eq(log_fields("ev peer=1234567890 id=1234567890", iov, LOG_FIELDS_MAX,
	    small, sizeof(small)), 2);
	ck_assert_uint_eq(log_fields("event-name-longer-than-the-buffer-given-here x=1", iov,
	    LOG_FIELDS_MAX, small, sizeof(small)), 0);
}
END_TEST

/* A CR, LF or quote from the client cannot end a field or forge a line. */
START_TEST(client_text_is_quoted)
{
	const char bad[] = "a\r\nb\"c\\d\x80\0e";
	const char *q = log_quote(bad, sizeof(bad) - 1);

	ck_assert_str_eq(q, "a\\x0d\\x0ab\\x22c\\x5cd\\x80\\x00e");
}
END_TEST

/* Inside quotes a sentence keeps its blanks and =; a quote still cannot end the field. */
START_TEST(quoted_text_keeps_blanks)
{
	const char text[] = "Spam (score=9.9)\t\"x\" \\";

	ck_assert_str_eq(log_quote_text(text, sizeof(text) - 1),
	    "Spam (score=9.9)\\x09\\x22x\\x22 \\x5c");
	ck_assert_str_eq(log_quote("a b=c", 5), "a\\x20b\\x3dc");
}
END_TEST

static Suite *
log_suite(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");

	tcase_add_test(tc, delivery_line_becomes_fields);
	tcase_add_test(tc, quoted_values_keep_their_blanks);
	tcase_add_test(tc, dashes_become_underscores);
	tcase_add_test(tc, odd_shapes_stop_the_fields);
	tcase_add_test(tc, limits_are_kept);
	tcase_add_test(tc, client_text_is_quoted);
	tcase_add_test(tc, quoted_text_keeps_blanks);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	return harness_run_suite(log_suite());
}
