/*
 * The part of berth-runtime's init that must run while the process has a
 * single thread: joining (setns) a user or mount namespace, creating a user
 * namespace whose maps the parent writes, and the fork that puts the
 * container's init into a new or joined pid (or time) namespace. It runs as a
 * constructor, before the Go runtime starts threads, and only when
 * _BERTH_INIT names the sync socket; everything else stays in Go.
 *
 * Protocol on the sync socket (a stream): the parent sends one message,
 * a 4-byte native-endian length and then "key=value\n" lines:
 *   clone=<flags>            namespaces to create (CLONE_NEW*)
 *   join=<flag>:<path>       namespaces to join, in any order (user goes first)
 *   timens=<clock> <s> <ns>  time namespace offsets (monotonic, boottime)
 *   cgroup=<path>            a cgroup v1 "tasks" file to join first (see below)
 * The child answers with single lines:
 *   "maps\n"                 after unshare(CLONE_NEWUSER): write my uid/gid maps;
 *                            the parent answers with one byte
 *   "pid <n>\n"              the pid (in the parent's pid namespace) that goes on
 *   "error <text>\n"         and exits 1
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif

#define MAX_JOIN 16
#define MAX_CGROUP 32

static int sync_fd = -1;

static void send_line(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n >= (int)sizeof(buf))
		n = sizeof(buf) - 1;
	const char *p = buf;
	while (n > 0) {
		ssize_t w = write(sync_fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return;
		p += w;
		n -= w;
	}
}

static void bail(const char *what, const char *arg)
{
	int e = errno;
	send_line("error %s %s: %s\n", what, arg ? arg : "", strerror(e));
	_exit(1);
}

static int read_full(void *buf, size_t len)
{
	char *p = buf;
	while (len > 0) {
		ssize_t r = read(sync_fd, p, len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		p += r;
		len -= r;
	}
	return 0;
}

static const char *ns_name(int flag)
{
	switch (flag) {
	case CLONE_NEWUSER: return "user";
	case CLONE_NEWNS: return "mnt";
	case CLONE_NEWPID: return "pid";
	case CLONE_NEWNET: return "net";
	case CLONE_NEWIPC: return "ipc";
	case CLONE_NEWUTS: return "uts";
	case CLONE_NEWCGROUP: return "cgroup";
	case CLONE_NEWTIME: return "time";
	}
	return "?";
}

struct join {
	int flag;
	int fd;
	char *path;
};

__attribute__((constructor)) static void berth_nsenter(void)
{
	const char *env = getenv("_BERTH_INIT");
	if (env == NULL || *env == '\0')
		return;
	sync_fd = atoi(env);
	if (sync_fd < 3)
		return;

	uint32_t len;
	if (read_full(&len, sizeof(len)) < 0)
		_exit(1); /* the parent went away: nothing to report to */
	if (len > 1 << 20) {
		errno = EINVAL;
		bail("namespace message", "too long");
	}
	char *msg = malloc(len + 1);
	if (msg == NULL)
		bail("malloc", NULL);
	if (read_full(msg, len) < 0)
		_exit(1);
	msg[len] = '\0';

	unsigned long clone_flags = 0;
	struct join joins[MAX_JOIN];
	int njoin = 0;
	char timens[256] = "";
	size_t timens_len = 0;
	char *cgroups[MAX_CGROUP];
	int ncgroup = 0;

	for (char *save = NULL, *line = strtok_r(msg, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "clone=", 6) == 0) {
			clone_flags = strtoul(line + 6, NULL, 10);
		} else if (strncmp(line, "join=", 5) == 0) {
			char *colon = strchr(line + 5, ':');
			if (colon == NULL || njoin == MAX_JOIN) {
				errno = EINVAL;
				bail("namespace message", line);
			}
			*colon = '\0';
			joins[njoin].flag = (int)strtol(line + 5, NULL, 10);
			joins[njoin].path = colon + 1;
			joins[njoin].fd = -1;
			njoin++;
		} else if (strncmp(line, "cgroup=", 7) == 0) {
			if (ncgroup == MAX_CGROUP) {
				errno = EINVAL;
				bail("namespace message", line);
			}
			cgroups[ncgroup++] = line + 7;
		} else if (strncmp(line, "timens=", 7) == 0) {
			size_t l = strlen(line + 7);
			if (timens_len + l + 2 > sizeof(timens)) {
				errno = EINVAL;
				bail("namespace message", line);
			}
			memcpy(timens + timens_len, line + 7, l);
			timens_len += l;
			timens[timens_len++] = '\n';
		}
	}

	/* Into the container's cgroups before anything else (the cgroup
	 * namespace made below is rooted at them). "0" in a v1 "tasks" file
	 * moves just the calling thread, the whole process while it has one
	 * thread, and skips the global lock that moving a pid through
	 * cgroup.procs takes, which waits for an RCU grace period. */
	for (int i = 0; i < ncgroup; i++) {
		int fd = open(cgroups[i], O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			bail("open cgroup", cgroups[i]);
		if (write(fd, "0", 1) != 1)
			bail("join cgroup", cgroups[i]);
		close(fd);
	}

	/* Open every path first: after joining a mount namespace they would
	 * resolve elsewhere. */
	int join_pid = 0;
	for (int i = 0; i < njoin; i++) {
		joins[i].fd = open(joins[i].path, O_RDONLY | O_CLOEXEC);
		if (joins[i].fd < 0)
			bail("open namespace", joins[i].path);
		if (joins[i].flag == CLONE_NEWPID || joins[i].flag == CLONE_NEWTIME)
			join_pid = 1;
	}
	/* A joined user namespace owns whatever is created or joined next. */
	for (int i = 0; i < njoin; i++) {
		if (joins[i].flag != CLONE_NEWUSER)
			continue;
		if (setns(joins[i].fd, CLONE_NEWUSER) < 0)
			bail("setns user", joins[i].path);
		if (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0)
			bail("become root in user namespace", joins[i].path);
	}
	if (clone_flags & CLONE_NEWUSER) {
		if (unshare(CLONE_NEWUSER) < 0)
			bail("unshare", "user namespace");
		/* The parent writes /proc/<pid>/{uid,gid}_map; it can only while we
		 * are dumpable, which we are unless the binary is setuid. */
		prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
		send_line("maps\n");
		char ack;
		if (read_full(&ack, 1) < 0)
			_exit(1);
		if (ack != 'k') {
			errno = EPERM;
			bail("user namespace maps", "refused by parent");
		}
		/* Root in the namespace when 0 is mapped; a rootless map of
		 * one id may not map 0, and then the caller's id stays. */
		if (setresgid(0, 0, 0) < 0 && errno != EINVAL)
			bail("setresgid", "0");
		if (setresuid(0, 0, 0) < 0 && errno != EINVAL)
			bail("setresuid", "0");
	}
	for (int i = 0; i < njoin; i++) {
		if (joins[i].flag == CLONE_NEWUSER)
			continue;
		if (setns(joins[i].fd, joins[i].flag) < 0)
			bail("setns", joins[i].path);
	}
	for (int i = 0; i < njoin; i++)
		close(joins[i].fd);

	unsigned long rest = clone_flags & ~(unsigned long)CLONE_NEWUSER;
	if (rest && unshare(rest) < 0) {
		char what[128] = "";
		for (int b = 0; b < 32; b++)
			if (rest & (1UL << b)) {
				strncat(what, ns_name(1 << b), sizeof(what) - strlen(what) - 2);
				strcat(what, " ");
			}
		bail("unshare", what);
	}
	if (timens_len > 0) {
		int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			bail("open", "/proc/self/timens_offsets");
		if (write(fd, timens, timens_len) != (ssize_t)timens_len)
			bail("write", "/proc/self/timens_offsets");
		close(fd);
	}
	free(msg);

	/* A new or joined pid (or time) namespace applies to children only. */
	if ((clone_flags & (CLONE_NEWPID | CLONE_NEWTIME)) || join_pid) {
		pid_t child = fork();
		if (child < 0)
			bail("fork", "into pid namespace");
		if (child > 0) {
			send_line("pid %d\n", (int)child);
			_exit(0);
		}
	} else {
		send_line("pid %d\n", (int)getpid());
	}
	/* Go takes over in this process. */
}
