/* The container log in the CRI format, as internal/monitor.Log writes it:
 * "<RFC3339Nano time> <stream> <F|P> <text>" per line, P for a line cut
 * because it was too long (or ended without a newline when the stream
 * closed). At max_size bytes the file is rotated to path.1 (one old file
 * is kept). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

static const char *log_path;
static int log_fd = -1;
static long long log_size, log_max;
/* The unterminated end of each stream's output waits for its newline in
 * buf->partial (of MAX_LINE bytes each). */
static size_t partial_len[2];
static const char *const stream_name[2] = {"stdout", "stderr"};

static int open_append(const char *path)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	if (fd < 0)
		return fail("open %s: %s", path, errstr(errno));
	return fd;
}

/* log_open opens (appends to) the log at path; max_size 0 never rotates. */
int log_open(const char *path, long long max_size)
{
	struct stat st;
	if ((log_fd = open_append(path)) < 0)
		return -1;
	log_path = path;
	log_max = max_size;
	log_size = fstat(log_fd, &st) == 0 ? st.st_size : 0;
	return 0;
}

/* format_time writes ts as Go's time.RFC3339Nano in UTC: no trailing zeros
 * in the fraction, no fraction at all for a whole second. */
size_t format_time(char *b, const struct timespec *ts)
{
	struct tm tm;
	time_t sec = ts->tv_sec;
	gmtime_r(&sec, &tm);
	size_t n = sprintf(b, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
			   tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (ts->tv_nsec) {
		n += sprintf(b + n, ".%09ld", (long)ts->tv_nsec);
		while (b[n - 1] == '0')
			n--;
	}
	b[n++] = 'Z';
	b[n] = 0;
	return n;
}

/* log_reopen opens the log's path again: whoever renamed the file (the
 * kubelet's rotation) wants the next lines in a new one. */
int log_reopen(void)
{
	struct stat st;
	int fd = open_append(log_path);
	if (fd < 0)
		return -1;
	close(log_fd);
	log_fd = fd;
	log_size = fstat(fd, &st) == 0 ? st.st_size : 0;
	return 0;
}

static int rotate(void)
{
	char old[strlen(log_path) + 3];
	snprintf(old, sizeof old, "%s.1", log_path);
	if (rename(log_path, old) < 0)
		return fail("rename %s: %s", log_path, errstr(errno));
	int fd = open_append(log_path);
	if (fd < 0)
		return -1;
	close(log_fd);
	log_fd = fd;
	log_size = 0;
	return 0;
}

/* entry writes one log line whose text is a then b, in one write so that
 * a reader never sees half of it. */
static int entry(int stream, char tag, const char *a, size_t an, const char *b, size_t bn)
{
	char head[64];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	size_t hn = format_time(head, &ts);
	hn += sprintf(head + hn, " %s %c ", stream_name[stream], tag);
	long long total = hn + an + bn + 1;
	if (log_max > 0 && log_size + total > log_max && log_size > 0 && rotate() < 0)
		return -1;
	struct iovec iov[4] = {{head, hn}, {(void *)a, an}, {(void *)b, bn}, {"\n", 1}};
	struct iovec *v = iov;
	int cnt = 4;
	while (cnt > 0) {
		ssize_t n = writev(log_fd, v, cnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		log_size += n;
		while (cnt > 0 && (size_t)n >= v->iov_len) {
			n -= v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
		}
	}
	return 0;
}

/* log_write logs p, read from stream (0 stdout, 1 stderr). The line that
 * ends in p starts with what is left of the last write; whatever p leaves
 * unterminated waits for the next. On an error the rest of p is dropped,
 * as the Go monitor did. */
void log_write(int stream, const char *p, size_t n)
{
	char *part = buf->partial[stream];
	size_t *plen = &partial_len[stream];
	size_t i = 0;
	const char *nl = memchr(p, '\n', n);
	if (nl) {
		if (entry(stream, 'F', part, *plen, p, nl - p) < 0)
			return;
		i = nl - p + 1;
		while ((nl = memchr(p + i, '\n', n - i))) {
			if (entry(stream, 'F', p + i, nl - (p + i), NULL, 0) < 0)
				return;
			i = nl - p + 1;
		}
		*plen = 0;
	} else if (*plen + n >= MAX_LINE) {
		i = MAX_LINE - *plen;
		if (entry(stream, 'P', part, *plen, p, i) < 0)
			return;
		*plen = 0;
	}
	/* now nothing waits in part */
	while (*plen == 0 && n - i >= MAX_LINE) {
		if (entry(stream, 'P', p + i, MAX_LINE, NULL, 0) < 0)
			return;
		i += MAX_LINE;
	}
	memcpy(part + *plen, p + i, n - i);
	*plen += n - i;
}

/* log_close writes what is left of unterminated lines and closes the file. */
void log_close(void)
{
	for (int s = 0; s < 2; s++)
		if (partial_len[s] > 0)
			entry(s, 'P', buf->partial[s], partial_len[s], NULL, 0);
	close(log_fd);
	log_fd = -1;
}
