/* What the berth-monitor sources share. main.c says what the monitor is
 * and why it is written in C. */
#ifndef BERTH_MONITOR_H
#define BERTH_MONITOR_H

#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/types.h>
#include <string.h>
#include <time.h>

/* Attach frame types and limits: internal/monitor/monitor.go. */
enum {
	FRAME_STDIN = 0,
	FRAME_STDOUT = 1,
	FRAME_STDERR = 2,
	FRAME_EXIT = 'x',
	FRAME_CLOSE_STDIN = 'c',
	FRAME_RESIZE = 'r',
};
#define MAX_FRAME (1u << 20)

/* Files in the container's directory (internal/monitor). */
#define EXIT_FILE "exit.json"
#define ATTACH_SOCK "attach.sock"
#define PID_FILE "pid"
#define MONITOR_PID "monitor.pid"
#define CONSOLE_SOCK "console.sock"

struct options {
	const char *id, *dir, *runtime, *runtime_root, *log, *rootfs;
	long long log_max;
	int tty, stdin_open;
};

/* The container's streams once it is created. */
struct streams {
	int out[2];   /* stdout, stderr read ends; the terminal master as stdout with --tty */
	int stdin_fd; /* pipe write end or the terminal master; -1 for none */
	int tty_fd;   /* the terminal master, or -1 */
};

/* How the container's init ended (internal/monitor.ExitStatus). */
struct exit_status {
	int code, signal;
	struct timespec at;
	const char *error;
};

/* An attach client and where it is in reading its frames. */
struct client {
	int fd;
	int input_done;        /* its frames ended (EOF, error, bad frame); it still gets output */
	unsigned char head[5]; /* the frame header being read */
	unsigned char hlen;
	unsigned char size[4]; /* a resize's payload */
	unsigned int left, got; /* payload bytes to read, read */
};
#define MAX_CLIENTS 1000
/* Where the log cuts a line without a newline into a partial entry. */
#define MAX_LINE (16 << 10)
enum { P_SIG, P_LISTEN, P_OUT, P_ERR, P_STDIN, P_CLIENTS };

/* The large buffers, in one anonymous mapping of their own: a page of it
 * costs memory only once something is written there (a sleeping container
 * touches one or two), and the small variables in .bss share a page
 * instead of sitting each next to a large array. */
struct buffers {
	struct pollfd pfd[P_CLIENTS + MAX_CLIENTS];
	struct client clients[MAX_CLIENTS];
	char in[4096];              /* stdin on its way to the container */
	char out[32 << 10];         /* one read of output, as large as the Go monitor's */
	char partial[2][MAX_LINE];  /* each stream's line waiting for its newline */
	char rterr[4096];           /* what a failed create said */
};
extern struct buffers *buf;

extern struct options opt;
extern sigset_t orig_mask; /* restored in the runtime's process */

/* The last error, worded like the Go errors berth shows to people. */
extern char errmsg[1024];
int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *errstr(int e);
/* DIR_PATH_SIZE is the size of a buffer for path_in_dir(name). */
#define DIR_PATH_SIZE(name) (strlen(opt.dir) + strlen(name) + 2)
void path_in_dir(char *b, size_t size, const char *name);
int listen_unix(const char *name);
size_t json_quote(char *dst, size_t cap, const char *s);

/* create.c */
int create_container(pid_t *pid, struct streams *st);

/* log.c */
int log_open(const char *path, long long max_size);
int log_reopen(void);
void log_write(int stream, const char *p, size_t n);
void log_close(void);
size_t format_time(char *b, const struct timespec *ts);

/* attach.c */
void attach_init(int listen_fd);
void attach_accept(void);
void attach_broadcast_exit(int code);
void monitor_loop(pid_t init, int sig_fd, struct streams *st, struct exit_status *es);

#endif
