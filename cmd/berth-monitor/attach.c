/* The monitor's one loop: the container's output to the log and to the
 * attach clients, the clients' frames to the container (stdin, close,
 * resize), and the reaping of whatever is reparented to us until the
 * container's init is gone.
 *
 * A write to a client may wait up to 5 s (then the client is dropped and
 * the container not held), as in the Go monitor. Writes to the container's
 * stdin never wait: what it does not take yet stays in one buffer, and no
 * client is read until it is gone, so a container that does not read its
 * stdin cannot stop its output from being read. */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor.h"

#define CLIENT_WRITE_MS 5000
/* After the init's exit, output still in the pipes is read; a process the
 * container left behind that keeps them open does not hold us longer. */
#define DRAIN_MS 2000

static int listen_fd = -1;
static struct client *clients;
static int nclients;
/* What waits for the container's stdin: buf->in[in_off:in_len]. */
static size_t in_off, in_len;
static struct streams *io;

void attach_init(int fd)
{
	listen_fd = fd;
	clients = buf->clients;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

/* attach_accept takes every pending client: each gets the output from now
 * on and may send input. */
void attach_accept(void)
{
	for (;;) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			return;
		}
		if (nclients == MAX_CLIENTS) {
			close(fd);
			continue;
		}
		clients[nclients++] = (struct client){.fd = fd};
	}
}

/* send_frame writes one frame to fd, waiting for it at most 5 s. */
static int send_frame(int fd, unsigned char type, const void *p, uint32_t n)
{
	unsigned char h[5] = {type, n >> 24, n >> 16, n >> 8, n};
	struct iovec iov[2] = {{h, 5}, {(void *)p, n}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = n ? 2 : 1};
	long long deadline = now_ms() + CLIENT_WRITE_MS;
	while (mh.msg_iovlen > 0) {
		ssize_t w = sendmsg(fd, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN)
				return -1;
			struct pollfd pf = {.fd = fd, .events = POLLOUT};
			long long left = deadline - now_ms();
			if (left <= 0 || (poll(&pf, 1, (int)left) < 0 && errno != EINTR))
				return -1;
			continue;
		}
		while (mh.msg_iovlen > 0 && (size_t)w >= mh.msg_iov->iov_len) {
			w -= mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen > 0) {
			mh.msg_iov->iov_base = (char *)mh.msg_iov->iov_base + w;
			mh.msg_iov->iov_len -= w;
		}
	}
	return 0;
}

static void drop(struct client *c)
{
	close(c->fd);
	c->fd = -1;
}

/* compact removes dropped clients, keeping the order of the others. */
static void compact(void)
{
	int j = 0;
	for (int i = 0; i < nclients; i++)
		if (clients[i].fd >= 0)
			clients[j++] = clients[i];
	nclients = j;
}

/* broadcast sends a frame to every client; one stuck or gone is dropped
 * (its slot is freed by compact, once the loop's turn is over). */
static void broadcast(unsigned char type, const void *p, uint32_t n)
{
	for (int i = 0; i < nclients; i++)
		if (clients[i].fd >= 0 && send_frame(clients[i].fd, type, p, n) < 0)
			drop(&clients[i]);
}

/* attach_broadcast_exit sends the exit code, the last frame, and closes
 * every client. */
void attach_broadcast_exit(int code)
{
	uint32_t u = (uint32_t)code;
	unsigned char b[4] = {u >> 24, u >> 16, u >> 8, u};
	broadcast(FRAME_EXIT, b, 4);
	for (int i = 0; i < nclients; i++)
		if (clients[i].fd >= 0)
			close(clients[i].fd);
	nclients = 0;
}

/* flush_stdin writes what waits for the container's stdin, as far as it
 * takes it now. Writes to a stdin that is gone are dropped. */
static void flush_stdin(void)
{
	while (in_off < in_len && io->stdin_fd >= 0) {
		ssize_t n = write(io->stdin_fd, buf->in + in_off, in_len - in_off);
		if (n > 0) {
			in_off += n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		break;
	}
	in_off = in_len = 0;
}

/* frame_done acts on a client's frame once all of it is read. */
static void frame_done(struct client *c)
{
	switch (c->head[0]) {
	case FRAME_CLOSE_STDIN:
		if (io->stdin_fd >= 0 && io->tty_fd < 0) {
			close(io->stdin_fd);
			io->stdin_fd = -1;
		}
		break;
	case FRAME_RESIZE:
		if (io->tty_fd >= 0 && c->got == 4) {
			struct winsize ws = {.ws_row = c->size[0] << 8 | c->size[1], .ws_col = c->size[2] << 8 | c->size[3]};
			ioctl(io->tty_fd, TIOCSWINSZ, &ws);
		}
		break;
	}
	c->hlen = 0;
}

/* client_read does one read of a client's frames; it returns 0 at the end
 * of its input. Stdin goes to the container as it comes, in pieces of
 * buf->in's size. */
static int client_read(struct client *c)
{
	ssize_t n;
	if (c->hlen < 5) {
		n = read(c->fd, c->head + c->hlen, 5 - c->hlen);
		if (n <= 0)
			return n < 0 && (errno == EAGAIN || errno == EINTR);
		c->hlen += n;
		if (c->hlen < 5)
			return 1;
		c->left = (uint32_t)c->head[1] << 24 | c->head[2] << 16 | c->head[3] << 8 | c->head[4];
		c->got = 0;
		if (c->left > MAX_FRAME)
			return 0; /* a bad frame ends the client's input */
		if (c->left == 0)
			frame_done(c);
		return 1;
	}
	char skip[256];
	int to_stdin = c->head[0] == FRAME_STDIN && io->stdin_fd >= 0;
	char *b = to_stdin ? buf->in : skip;
	size_t want = to_stdin ? sizeof buf->in : sizeof skip;
	if (want > c->left)
		want = c->left;
	n = read(c->fd, b, want);
	if (n <= 0)
		return n < 0 && (errno == EAGAIN || errno == EINTR);
	if (c->head[0] == FRAME_RESIZE)
		for (ssize_t i = 0; i < n && c->got + i < 4; i++)
			c->size[c->got + i] = b[i];
	c->got += n;
	c->left -= n;
	if (to_stdin) {
		in_off = 0;
		in_len = n;
		flush_stdin();
	}
	if (c->left == 0)
		frame_done(c);
	return 1;
}

/* reap collects every child that ended (with WNOHANG), or waits until the
 * init has (without); the init's end goes to es. */
static void reap(pid_t init, int *exited, struct exit_status *es, int flags)
{
	for (;;) {
		int ws;
		if (*exited && !(flags & WNOHANG))
			return;
		pid_t got = wait4(-1, &ws, flags, NULL);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0 && !*exited) {
			/* No children at all: init is gone without our seeing it. */
			*es = (struct exit_status){.code = 255, .error = "the container's process was not seen exiting"};
			clock_gettime(CLOCK_REALTIME, &es->at);
			*exited = 1;
		}
		if (got <= 0)
			return;
		if (got != init || *exited)
			continue;
		*es = (struct exit_status){0};
		clock_gettime(CLOCK_REALTIME, &es->at);
		if (WIFSIGNALED(ws)) {
			es->signal = WTERMSIG(ws);
			es->code = 128 + es->signal;
		} else {
			es->code = WEXITSTATUS(ws);
		}
		*exited = 1;
	}
}

static void output(int stream)
{
	int fd = io->out[stream];
	ssize_t n = read(fd, buf->out, sizeof buf->out);
	if (n > 0) {
		log_write(stream, buf->out, n);
		broadcast(stream == 0 ? FRAME_STDOUT : FRAME_STDERR, buf->out, n);
		return;
	}
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	/* The end (EIO from a terminal whose other side is closed). The
	 * terminal's master stays open for stdin and resizes. */
	if (fd != io->tty_fd)
		close(fd);
	io->out[stream] = -1;
}

/* monitor_loop runs until the container's init has exited and its output
 * is read, and returns how the init ended. */
void monitor_loop(pid_t init, int sig_fd, struct streams *st, struct exit_status *es)
{
	struct pollfd *p = buf->pfd;
	int exited = 0;
	long long deadline = 0;
	io = st;
	reap(init, &exited, es, WNOHANG); /* it may be gone already */
	for (;;) {
		if (exited) {
			if (!deadline)
				deadline = now_ms() + DRAIN_MS;
			if ((io->out[0] < 0 && io->out[1] < 0) || now_ms() >= deadline)
				break;
		}
		int pending = in_off < in_len;
		p[P_SIG] = (struct pollfd){.fd = sig_fd, .events = POLLIN};
		p[P_LISTEN] = (struct pollfd){.fd = listen_fd, .events = POLLIN};
		p[P_OUT] = (struct pollfd){.fd = io->out[0], .events = POLLIN};
		p[P_ERR] = (struct pollfd){.fd = io->out[1], .events = POLLIN};
		p[P_STDIN] = (struct pollfd){.fd = pending ? io->stdin_fd : -1, .events = POLLOUT};
		/* While stdin waits, clients are not read (and a hang-up is seen
		 * later, so that poll does not spin on it). */
		for (int i = 0; i < nclients; i++) {
			struct client *c = &clients[i];
			p[P_CLIENTS + i] = (struct pollfd){
				.fd = c->input_done || !pending ? c->fd : -1,
				.events = c->input_done ? 0 : POLLIN,
			};
		}
		int n = nclients;
		long long left = exited ? deadline - now_ms() : -1;
		if (poll(p, P_CLIENTS + n, exited && left < 0 ? 0 : (int)left) < 0) {
			if (errno == EINTR)
				continue;
			/* Cannot happen with valid fds; the exit is still recorded. */
			reap(init, &exited, es, 0);
			break;
		}
		if (p[P_SIG].revents) {
			struct signalfd_siginfo si;
			while (read(sig_fd, &si, sizeof si) > 0)
				if (si.ssi_signo == SIGUSR1)
					log_reopen();
			reap(init, &exited, es, WNOHANG);
		}
		/* Clients first: one that connected before the output was made
		 * sees all of it. */
		if (p[P_LISTEN].revents)
			attach_accept();
		for (int s = 0; s < 2; s++)
			if (p[P_OUT + s].revents && io->out[s] >= 0)
				output(s);
		if (p[P_STDIN].revents)
			flush_stdin();
		/* clients[0..n) are still where poll saw them: nothing is
		 * compacted until the end of the turn, new ones come after. */
		for (int i = 0; i < n; i++) {
			struct client *c = &clients[i];
			short re = p[P_CLIENTS + i].revents;
			if (!re || c->fd < 0)
				continue;
			if (!c->input_done && in_off == in_len && (re & (POLLIN | POLLHUP | POLLERR)))
				c->input_done = !client_read(c);
			/* Gone both ways: a write to it would fail now. */
			if (c->input_done && (re & (POLLHUP | POLLERR)))
				drop(c);
		}
		compact();
	}
}
