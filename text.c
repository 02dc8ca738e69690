/*
 * text.c: the client's message text as it is stored.
 *
 * Promises: lines are stored with LF endings whatever the client ended
 * them with; our trace fields above the client's text stay as written
 * (a first line that would fold into them becomes body); Received fields
 * in the client's header are counted for the loop check (RFC 5321 6.3);
 * BDAT octets and DATA lines give the same stored bytes. Leaves reading,
 * dot-stuffing and the end of data to session.c, the files to maildir.c.
 */
#include "text.h"

#include <string.h>
#include <strings.h>

void
text_begin(struct text *t, struct delivery *d)
{
	t->d = d;
	t->line_start = t->in_header = true;
}

/*
 * A line of the client's header section; false once it has ended. Our
 * trace fields come first and must stay as written, but a first line
 * starting with SP or HTAB would be read as part of our Received field
 * (RFC 5322 2.2.3 folding: a forged comment or date). Such a line cannot
 * start a field, so the client sent no header: like Postfix's smtpd,
 * store an empty line before it, making it body.
 */
static bool
header_line(struct text *t, const char *p, size_t n)
{
	if (n == 0)
		return false;
	if (!t->started && (p[0] == ' ' || p[0] == '\t')) {
		maildir_write(t->d, "\n", 1);
		return false;
	}
	if (n >= 9 && strncasecmp(p, "Received:", 9) == 0)
		t->hops++;
	return true;
}

/* Store a line (LF added when complete) or a piece of one, unless too big. */
static void
write_text(struct text *t, const char *p, size_t n, bool complete)
{
	t->started = true;
	if (!t->too_big) {
		maildir_write(t->d, p, n);
		if (complete)
			maildir_write(t->d, "\n", 1);
	}
	t->line_start = complete;
}

void
text_line(struct text *t, const char *p, size_t n, bool complete)
{
	if (t->line_start && t->in_header)
		t->in_header = header_line(t, p, n);
	write_text(t, p, n, complete);
}

void
text_too_big(struct text *t)
{
	if (!t->too_big) {
		t->too_big = true;
		if (t->d != NULL)
			maildir_abort(t->d);
	}
}

/*
 * A BDAT piece: the start of a header line shorter than "Received:" is
 * held until it can be judged, since a chunk may end anywhere.
 */
static void
store_piece(struct text *t, const char *p, size_t n, bool complete)
{
	if (t->held > 0 || (t->line_start && t->in_header && !complete && n < sizeof(t->head))) {
		size_t m = n < sizeof(t->head) - t->held ? n : sizeof(t->head) - t->held;

		memcpy(t->head + t->held, p, m);
		t->held += m;
		p += m;
		n -= m;
		if (!complete && t->held < sizeof(t->head))
			return;
		text_line(t, t->head, t->held, false);
		t->held = 0;
	}
	if (n > 0 || complete)
		text_line(t, p, n, complete);
}

void
text_octets(struct text *t, const char *p, size_t n)
{
	if (n > 0 && t->cr_held) {
		t->cr_held = false;
		if (p[0] == '\n') {
			store_piece(t, p, 0, true);
			p++;
			n--;
		} else {
			store_piece(t, "\r", 1, false);
		}
	}
	while (n > 0) {
		const char *lf = memchr(p, '\n', n);
		size_t k = lf != NULL ? (size_t)(lf - p) : n;

		if (lf != NULL) {
			store_piece(t, p, k > 0 && p[k - 1] == '\r' ? k - 1 : k, true);
			k++;
		} else {
			t->cr_held = p[k - 1] == '\r';
			store_piece(t, p, k - t->cr_held, false);
		}
		p += k;
		n -= k;
	}
}

/*
 * The last chunk is in: what was held for the next one is plain text, and
 * a last line without an end gets one, as Postfix stores it, so every
 * stored message ends in a newline.
 */
void
text_end(struct text *t)
{
	if (t->cr_held)
		store_piece(t, "\r", 1, false);
	if (t->held > 0)
		text_line(t, t->head, t->held, false);
	t->cr_held = false;
	t->held = 0;
	if (!t->line_start)
		write_text(t, "", 0, true);
}
