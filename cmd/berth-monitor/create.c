/* `RUNTIME create`, with the container's stdio on pipes the monitor holds
 * or, with --tty, a console socket the runtime sends the terminal's master
 * to. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

/* What a failed create said, for the report (as much as the Go monitor
 * read back: 4 kB), in buf->rterr. */
static size_t rterr_len;

/* spawn starts argv with in, out and err as its stdio. vfork, not
 * posix_spawn: musl's mallocs its file actions and puts a 5 kB stack for
 * the child on ours, pages this process would keep for its whole life.
 * The child shares our memory until it execs: it only sets its fds and
 * the signal state berth gave us, and leaves its errno for us. */
static int spawn(pid_t *pid, char **argv, int in, int out, int err)
{
	static volatile int child_errno;
	int path = !strchr(argv[0], '/');
	child_errno = 0;
	pid_t p = vfork();
	if (p == 0) {
		if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
			child_errno = errno;
			_exit(127);
		}
		signal(SIGPIPE, SIG_DFL);
		sigprocmask(SIG_SETMASK, &orig_mask, NULL);
		if (path)
			execvp(argv[0], argv);
		else
			execv(argv[0], argv);
		child_errno = errno;
		_exit(127);
	}
	if (p < 0)
		return fail("fork/exec %s: %s", argv[0], errstr(errno));
	if (child_errno) {
		int e = child_errno;
		while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
			;
		if (e == ENOENT && path)
			return fail("exec: \"%s\": executable file not found in $PATH", argv[0]);
		return fail("fork/exec %s: %s", argv[0], errstr(e));
	}
	*pid = p;
	return 0;
}

static int wait_for(pid_t pid)
{
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return fail("wait: %s", errstr(errno));
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	if (WIFEXITED(st))
		return fail("exit status %d", WEXITSTATUS(st));
	char sig[64];
	snprintf(sig, sizeof sig, "%s", strsignal(WTERMSIG(st)));
	if (sig[0] >= 'A' && sig[0] <= 'Z')
		sig[0] += 'a' - 'A';
	return fail("signal: %s%s", sig, WCOREDUMP(st) ? " (core dumped)" : "");
}

/* keep_err appends what the runtime wrote to its stderr, up to rterr's
 * size; the rest is read and dropped so that the runtime never blocks. */
static void keep_err(const char *p, size_t n)
{
	if (n > sizeof buf->rterr - 1 - rterr_len)
		n = sizeof buf->rterr - 1 - rterr_len;
	memcpy(buf->rterr + rterr_len, p, n);
	rterr_len += n;
	buf->rterr[rterr_len] = 0;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* drain_errors reads what a failed create wrote to the stderr pipe, for at
 * most 100 ms: a process it left behind may hold the pipe open. */
static void drain_errors(int fd)
{
	char b[512];
	long long deadline = now_ms() + 100;
	while (rterr_len < sizeof buf->rterr - 1) {
		long long left = deadline - now_ms();
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		ssize_t n = read(fd, b, sizeof b);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		keep_err(b, n);
	}
}

/* receive_console takes the terminal master an OCI runtime sends on its
 * console socket (SCM_RIGHTS), from connection c. */
static int receive_console(int c)
{
	char data[256]; /* what comes with the fd is not used */
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof cm.b};
	ssize_t n;
	while ((n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	close(c);
	if (n < 0)
		return fail("console socket: %s", errstr(errno));
	struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
	if (!h || h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS || h->cmsg_len < CMSG_LEN(sizeof(int)))
		return fail("console socket: no terminal received");
	int fd;
	memcpy(&fd, CMSG_DATA(h), sizeof fd);
	return fd;
}

/* accept_console takes one connection on the console socket, waiting at
 * most ms, and the terminal master it carries: the fd, or -1 (errmsg). */
static int accept_console(int cl, int ms)
{
	struct pollfd p = {.fd = cl, .events = POLLIN};
	int n;
	while ((n = poll(&p, 1, ms)) < 0 && errno == EINTR)
		;
	if (n <= 0)
		return fail("the runtime sent none on its console socket");
	int c = accept4(cl, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return fail("console socket: accept: %s", errstr(errno));
	return receive_console(c);
}

/* run_tty runs the runtime with its stderr on a pipe read into rterr, and
 * takes the terminal from the console socket as soon as the runtime sends
 * it (as the Go monitor did, in parallel: a runtime may wait on us). It
 * returns the master, -1 if the runtime failed (errmsg says how), or -2
 * if no terminal came (errmsg says why). */
static int run_tty(char **argv, int devnull, int cl)
{
	int ep[2];
	pid_t rpid;
	if (pipe2(ep, O_CLOEXEC) < 0)
		return fail("pipe: %s", errstr(errno));
	int rc = spawn(&rpid, argv, devnull, devnull, ep[1]);
	close(ep[1]);
	if (rc < 0) {
		close(ep[0]);
		return -1;
	}
	char b[512], cerr[sizeof errmsg] = "";
	int master = -1, tried = 0;
	for (;;) {
		struct pollfd p[2] = {{.fd = ep[0], .events = POLLIN}, {.fd = tried ? -1 : cl, .events = POLLIN}};
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents) {
			tried = 1;
			if ((master = accept_console(cl, 0)) < 0)
				snprintf(cerr, sizeof cerr, "%s", errmsg);
		}
		if (p[0].revents) {
			ssize_t n = read(ep[0], b, sizeof b);
			if (n > 0)
				keep_err(b, n);
			else if (n == 0 || errno != EINTR)
				break;
		}
	}
	close(ep[0]);
	if (wait_for(rpid) < 0) {
		if (master >= 0)
			close(master);
		return -1;
	}
	/* The runtime is done: it connected by now if it ever will. */
	if (!tried && (master = accept_console(cl, 5000)) < 0)
		snprintf(cerr, sizeof cerr, "%s", errmsg);
	if (master < 0)
		return fail("terminal: %s", cerr), -2;
	return master;
}

/* describe_failure words a failed create as the Go monitor did:
 * "RUNTIME create: exit status 1: what it said". */
static int describe_failure(const char *why)
{
	char w[256], msg[sizeof buf->rterr];
	snprintf(w, sizeof w, "%s", why);
	char *s = buf->rterr, *e = buf->rterr + rterr_len;
	while (s < e && (*s == ' ' || (*s >= '\t' && *s <= '\r')))
		s++;
	while (e > s && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
		e--;
	snprintf(msg, sizeof msg, "%.*s", (int)(e - s), s);
	const char *base = strrchr(opt.runtime, '/');
	return fail("%s create: %s: %s", base && base[1] ? base + 1 : opt.runtime, w, msg);
}

static int read_pid(pid_t *pid)
{
	char path[DIR_PATH_SIZE(PID_FILE)], b[64];
	path_in_dir(path, sizeof path, PID_FILE);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail("open %s: %s", path, errstr(errno));
	ssize_t n = read(fd, b, sizeof b - 1);
	close(fd);
	if (n < 0)
		return fail("read %s: %s", path, errstr(errno));
	b[n] = 0;
	char *s = b, *e = b + n;
	while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
		s++;
	while (e > s && (e[-1] == ' ' || (e[-1] >= '\t' && e[-1] <= '\r')))
		*--e = 0;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || end == s || *end || v <= 0 || v > INT_MAX)
		return fail("pid file: strconv.Atoi: parsing \"%s\": invalid syntax", s);
	*pid = (pid_t)v;
	return 0;
}

/* create_container runs `runtime create` with the container's stdio and
 * returns the init's pid and the streams to watch. Without a terminal the
 * runtime's own messages go to the container's stderr pipe (and so to the
 * log); on failure they are read back from it for the report. */
int create_container(pid_t *pid, struct streams *st)
{
	char pidfile[DIR_PATH_SIZE(PID_FILE)], console[64];
	path_in_dir(pidfile, sizeof pidfile, PID_FILE);
	char *argv[16];
	int a = 0;
	argv[a++] = (char *)opt.runtime;
	argv[a++] = "--root";
	argv[a++] = (char *)opt.runtime_root;
	argv[a++] = "create";
	argv[a++] = "--bundle";
	argv[a++] = (char *)opt.dir;
	argv[a++] = "--pid-file";
	argv[a++] = pidfile;
	if (opt.tty) {
		/* The runtime reaches it through our working directory: short. */
		snprintf(console, sizeof console, "/proc/%d/cwd/%s", (int)getpid(), CONSOLE_SOCK);
		argv[a++] = "--console-socket";
		argv[a++] = console;
	}
	argv[a++] = (char *)opt.id;
	argv[a] = NULL;

	st->out[0] = st->out[1] = st->stdin_fd = st->tty_fd = -1;
	int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (devnull < 0)
		return fail("open /dev/null: %s", errstr(errno));
	if (opt.tty) {
		unlink(CONSOLE_SOCK);
		int cl = listen_unix(CONSOLE_SOCK);
		if (cl < 0) {
			close(devnull);
			return -1;
		}
		int master = run_tty(argv, devnull, cl);
		close(cl);
		unlink(CONSOLE_SOCK);
		close(devnull);
		if (master == -1)
			return describe_failure(errmsg);
		if (master < 0)
			return -1;
		fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
		st->out[0] = st->stdin_fd = st->tty_fd = master;
		return read_pid(pid);
	}

	pid_t rpid;
	int op[2], ep[2], ip[2] = {-1, -1};
	if (pipe2(op, O_CLOEXEC) < 0 || pipe2(ep, O_CLOEXEC) < 0 || (opt.stdin_open && pipe2(ip, O_CLOEXEC) < 0))
		return fail("pipe: %s", errstr(errno));
	int rc = spawn(&rpid, argv, opt.stdin_open ? ip[0] : devnull, op[1], ep[1]);
	if (rc == 0)
		rc = wait_for(rpid);
	close(op[1]);
	close(ep[1]);
	close(devnull);
	if (ip[0] >= 0)
		close(ip[0]);
	if (rc < 0) {
		char why[sizeof errmsg];
		snprintf(why, sizeof why, "%s", errmsg);
		drain_errors(ep[0]);
		return describe_failure(why);
	}
	st->out[0] = op[0];
	st->out[1] = ep[0];
	st->stdin_fd = ip[1];
	for (int i = 0; i < 3; i++) {
		int fd = i < 2 ? st->out[i] : st->stdin_fd;
		if (fd >= 0)
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	}
	return read_pid(pid);
}
