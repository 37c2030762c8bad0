/* berth-monitor watches one container for berth, as conmon does for podman:
 * it is the container's parent (a child subreaper), holds its stdio (pipes,
 * or the terminal's master), writes its log in the CRI format, serves
 * attach clients on a unix socket, records the exit code, and unmounts the
 * container's root file system. berth starts it detached (setsid), so
 * containers outlive the command that ran them.
 *
 *   berth-monitor --id ID --dir DIR --runtime PATH --runtime-root DIR --log FILE
 *                 [--log-max-size BYTES] [--tty] [--stdin] [--rootfs DIR]
 *
 * File descriptor 3 is a pipe to berth: one JSON line, {"pid":N} once the
 * container is created or {"error":"..."}, then closed.
 *
 * Why C: one monitor runs for every running container, for as long as it
 * runs, so its memory is paid per container. The Go monitor cost about
 * 880 kB PSS per container (its runtime's heap arena, spans and threads),
 * conmon 371 kB; this one, static on musl with one thread, poll(2) and
 * fixed buffers touched only when used, costs a few tens of kB
 * (docs/benchmarks.md, bench/memory.sh). Its clients stay in Go: the
 * frames, files and log format are internal/monitor's.
 *
 * Files: main.c (flags, set-up, the end), create.c (`RUNTIME create`),
 * log.c (the CRI log), attach.c (the loop: output, clients, reaping).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor.h"

struct options opt;
struct buffers *buf;
sigset_t orig_mask;
char errmsg[1024];
static int sync_fd = -1;

int fail(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof errmsg, fmt, ap);
	va_end(ap);
	return -1;
}

/* errstr is strerror worded as Go words errno values (lower case), so
 * messages read as they did from the Go monitor. */
const char *errstr(int e)
{
	static char b[128];
	snprintf(b, sizeof b, "%s", strerror(e));
	if (b[0] >= 'A' && b[0] <= 'Z' && !(b[1] >= 'A' && b[1] <= 'Z'))
		b[0] += 'a' - 'A';
	return b;
}

void path_in_dir(char *b, size_t size, const char *name)
{
	size_t n = strlen(opt.dir);
	const char *sep = n > 0 && opt.dir[n - 1] == '/' ? "" : "/";
	snprintf(b, size, "%s%s%s", opt.dir, sep, name);
}

/* listen_unix binds name relative to the working directory (the
 * container's): an absolute path may not fit in sun_path's 108 bytes. */
int listen_unix(const char *name)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(name) >= sizeof sa.sun_path)
		return fail("listen unix %s: name too long", name);
	strcpy(sa.sun_path, name);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail("listen unix %s: socket: %s", name, errstr(errno));
	if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
		fail("listen unix %s: bind: %s", name, errstr(errno));
		close(fd);
		return -1;
	}
	return fd;
}

/* utf8_len is the length of the valid UTF-8 sequence at s, 0 if none. */
static int utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	int n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	unsigned char lo = 0x80, hi = 0xbf;
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n && (s[1] < lo || s[1] > hi))
		return 0;
	for (int i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* json_quote writes s as a JSON string the way Go's encoding/json does
 * (HTML characters and U+2028/9 escaped, bad UTF-8 as U+FFFD), cut short
 * rather than overflow dst. */
size_t json_quote(char *dst, size_t cap, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t n = 0;
	dst[n++] = '"';
	while (*s && n + 8 < cap) {
		unsigned char c = *s;
		int l = c < 0x80 ? 1 : utf8_len(s);
		const char *esc = c == '"' ? "\\\"" : c == '\\' ? "\\\\" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
			: c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;
		if (esc) {
			n += sprintf(dst + n, "%s", esc);
		} else if (c < 0x20 || c == '<' || c == '>' || c == '&') {
			n += sprintf(dst + n, "\\u%04x", c);
		} else if (l == 0) {
			n += sprintf(dst + n, "\\ufffd");
			l = 1;
		} else if (l == 3 && c == 0xe2 && s[1] == 0x80 && (s[2] == 0xa8 || s[2] == 0xa9)) {
			n += sprintf(dst + n, "\\u202%c", s[2] == 0xa8 ? '8' : '9');
		} else {
			memcpy(dst + n, s, l);
			n += l;
		}
		s += l;
	}
	dst[n++] = '"';
	dst[n] = 0;
	return n;
}

/* report tells berth, once, how the create went. */
static void report(pid_t pid, const char *err)
{
	if (sync_fd < 0)
		return;
	char b[err ? strlen(err) * 6 + 32 : 32];
	size_t n;
	if (err) {
		n = sprintf(b, "{\"error\":");
		n += json_quote(b + n, sizeof b - n - 3, err);
		n += sprintf(b + n, "}\n");
	} else {
		n = sprintf(b, "{\"pid\":%d}\n", (int)pid);
	}
	if (write(sync_fd, b, n) < 0) {
		/* berth went away; the container is ours to watch anyway */
	}
	close(sync_fd);
	sync_fd = -1;
}

/* write_exit records es in exit.json: a temporary file renamed over it, so
 * readers see the whole record or none. */
static int write_exit(const struct exit_status *es)
{
	char b[(es->error ? strlen(es->error) * 6 : 0) + 128], ts[64];
	char path[DIR_PATH_SIZE(EXIT_FILE)], tmp[DIR_PATH_SIZE(EXIT_FILE) + 16];
	size_t n = sprintf(b, "{\"exitCode\":%d", es->code);
	if (es->signal)
		n += sprintf(b + n, ",\"signal\":%d", es->signal);
	format_time(ts, &es->at);
	n += sprintf(b + n, ",\"exitedAt\":\"%s\"", ts);
	if (es->error && *es->error) {
		n += sprintf(b + n, ",\"error\":");
		n += json_quote(b + n, sizeof b - n - 2, es->error);
	}
	b[n++] = '}';
	path_in_dir(path, sizeof path, EXIT_FILE);
	/* the temporary file is a dot file next to it, as fsutil names them */
	char name[64];
	snprintf(name, sizeof name, ".%s.tmp%d", EXIT_FILE, (int)getpid());
	path_in_dir(tmp, sizeof tmp, name);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -1;
	int ok = fchmod(fd, 0644) == 0 && write(fd, b, n) == (ssize_t)n;
	ok = close(fd) == 0 && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return -1;
	}
	return 0;
}

static void usage(void)
{
	static const char u[] = "usage: berth-monitor --id ID --dir DIR --runtime PATH --runtime-root DIR --log FILE\n"
				"\t[--log-max-size BYTES] [--tty] [--stdin] [--rootfs DIR]\n";
	if (write(2, u, sizeof u - 1) < 0) {
	}
}

static int parse_bool(const char *v, int *out)
{
	static const char *t[] = {"1", "t", "T", "true", "TRUE", "True"}, *f[] = {"0", "f", "F", "false", "FALSE", "False"};
	for (int i = 0; i < 6; i++) {
		if (!strcmp(v, t[i]))
			return *out = 1, 0;
		if (!strcmp(v, f[i]))
			return *out = 0, 0;
	}
	return -1;
}

/* parse_flags reads the command line as Go's flag package did: -name or
 * --name, a value after '=' or in the next argument, parsing stops at the
 * first argument that is not a flag. */
static int parse_flags(int argc, char **argv)
{
	struct {
		const char *name;
		const char **s;
		int *b;
	} fl[] = {
		{"id", &opt.id, NULL}, {"dir", &opt.dir, NULL}, {"runtime", &opt.runtime, NULL},
		{"runtime-root", &opt.runtime_root, NULL}, {"log", &opt.log, NULL}, {"rootfs", &opt.rootfs, NULL},
		{"log-max-size", NULL, NULL}, {"tty", NULL, &opt.tty}, {"stdin", NULL, &opt.stdin_open},
	};
	for (int i = 1; i < argc; i++) {
		char *a = argv[i];
		if (a[0] != '-' || a[1] == 0)
			break;
		a += a[1] == '-' ? 2 : 1;
		if (*a == 0 && argv[i][1] == '-')
			break; /* "--" */
		if (*a == 0 || *a == '-' || *a == '=')
			return fail("bad flag syntax: %s", argv[i]);
		char *val = strchr(a, '=');
		size_t nl = val ? (size_t)(val - a) : strlen(a);
		if (val)
			val++;
		if ((nl == 1 && *a == 'h') || (nl == 4 && !strncmp(a, "help", 4))) {
			usage();
			exit(0);
		}
		size_t k;
		for (k = 0; k < sizeof fl / sizeof fl[0]; k++)
			if (strlen(fl[k].name) == nl && !strncmp(fl[k].name, a, nl))
				break;
		if (k == sizeof fl / sizeof fl[0])
			return fail("flag provided but not defined: -%.*s", (int)nl, a);
		if (fl[k].b) {
			if (!val)
				*fl[k].b = 1;
			else if (parse_bool(val, fl[k].b) < 0)
				return fail("invalid boolean value \"%s\" for -%s: parse error", val, fl[k].name);
			continue;
		}
		if (!val) {
			if (i + 1 >= argc)
				return fail("flag needs an argument: -%s", fl[k].name);
			val = argv[++i];
		}
		if (fl[k].s) {
			*fl[k].s = val;
			continue;
		}
		char *end;
		errno = 0;
		opt.log_max = strtoll(val, &end, 0);
		if (errno || end == val || *end)
			return fail("invalid value \"%s\" for flag -log-max-size: parse error", val);
	}
	return 0;
}

/* fail_start reports an error that ends the monitor before the container
 * runs. */
static int fail_start(int code)
{
	report(0, errmsg);
	fprintf(stderr, "%s%s\n", strncmp(errmsg, "berth-monitor:", 14) ? "berth-monitor: " : "", errmsg);
	return code;
}

int main(int argc, char **argv)
{
	/* fd 3 first, before any open could take its number; and never
	 * inherited by the runtime. */
	if (fcntl(3, F_SETFD, FD_CLOEXEC) == 0)
		sync_fd = 3;
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && open("/dev/null", O_RDWR) != fd)
			return 1;
	opt.runtime_root = opt.rootfs = "";
	if (parse_flags(argc, argv) < 0) {
		usage();
		return fail_start(2);
	}
	if (!opt.id || !*opt.id || !opt.dir || !*opt.dir || !opt.runtime || !*opt.runtime || !opt.log || !*opt.log) {
		fail("berth-monitor: --id, --dir, --runtime and --log are needed");
		return fail_start(2);
	}
	/* SIGCHLD is read from a signalfd in the loop, and SIGUSR1 (reopen
	 * the log: the kubelet rotated it); a write to a client or a stdin
	 * that went away is an error to handle, not a death. */
	sigset_t chld;
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigaddset(&chld, SIGUSR1);
	sigprocmask(SIG_BLOCK, &chld, &orig_mask);
	signal(SIGPIPE, SIG_IGN);
	int sig_fd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sig_fd < 0) {
		fail("signalfd: %s", errstr(errno));
		return fail_start(1);
	}
	buf = mmap(NULL, sizeof *buf, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (buf == MAP_FAILED) {
		buf = NULL;
		fail("mmap: %s", errstr(errno));
		return fail_start(1);
	}
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
		fail("subreaper: %s", errstr(errno));
		return fail_start(1);
	}
	char path[DIR_PATH_SIZE(MONITOR_PID)], b[32];
	path_in_dir(path, sizeof path, MONITOR_PID);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		int n = sprintf(b, "%d", (int)getpid());
		if (write(fd, b, n) != n) {
			/* as before: berth then sees the container as created only */
		}
		close(fd);
	}
	if (log_open(opt.log, opt.log_max) < 0)
		return fail_start(1);
	/* Sockets are bound by relative names, in the container's directory
	 * (our working directory): the absolute path may not fit in 108 bytes. */
	if (chdir(opt.dir) < 0) {
		fail("chdir %s: %s", opt.dir, errstr(errno));
		return fail_start(1);
	}
	unlink(ATTACH_SOCK);
	int ln = listen_unix(ATTACH_SOCK);
	if (ln < 0)
		return fail_start(1);
	attach_init(ln);

	struct streams st;
	struct exit_status es = {0};
	pid_t pid;
	if (create_container(&pid, &st) < 0) {
		report(0, errmsg);
		es.code = 127;
		es.error = errmsg;
		clock_gettime(CLOCK_REALTIME, &es.at);
		write_exit(&es);
		attach_accept();
		attach_broadcast_exit(127);
		fprintf(stderr, "berth-monitor: %s\n", errmsg);
		return 1;
	}
	report(pid, NULL);

	monitor_loop(pid, sig_fd, &st, &es);
	log_close();
	write_exit(&es);
	/* The runtime's record of the stopped container stays until berth
	 * starts it again or removes it (`runtime delete` costs a process
	 * start; `run --rm` removes right away anyway). */
	if (*opt.rootfs)
		umount2(opt.rootfs, MNT_DETACH);
	attach_accept(); /* whoever connected in time hears the exit */
	attach_broadcast_exit(es.code);
	close(ln);
	unlink(ATTACH_SOCK);
	return 0;
}
