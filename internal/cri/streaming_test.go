package cri

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/network"
	"github.com/berthdev/berth/internal/testbin"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	clientexec "k8s.io/client-go/util/exec"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestURLHost(t *testing.T) {
	for _, c := range []struct {
		addr *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10010}, "127.0.0.1:10010"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 1}, "127.0.0.1:1"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 2}, "[::1]:2"},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 3}, "192.0.2.7:3"},
	} {
		if got := urlHost(c.addr); got != c.want {
			t.Errorf("urlHost(%v) = %s, want %s", c.addr, got, c.want)
		}
	}
}

// TestDialInNetNS: a server on a new namespace's loopback is reached
// through it, and the client's end of input reaches the server as EOF
// while the answer still comes back.
func TestDialInNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	ns := filepath.Join(t.TempDir(), "netns")
	if err := network.NewNetNS(ns); err != nil {
		t.Fatal(err)
	}
	defer network.RemoveNetNS(ns)
	lc := make(chan net.Listener, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread leaves the host's namespace
		f, err := os.Open(ns)
		if err == nil {
			err = unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
			f.Close()
		}
		if err != nil {
			t.Error(err)
			lc <- nil
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Error(err)
		}
		lc <- l
	}()
	l := <-lc
	if l == nil {
		t.FailNow()
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's half-close
		fmt.Fprintf(c, "got:%s", got)
	}()
	conn, err := network.DialInNetNS(ns, "tcp", l.Addr().String(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var out bytes.Buffer
	stream := struct {
		io.Reader
		io.Writer
	}{strings.NewReader("hello"), &out}
	if err := pipe(conn.(*net.TCPConn), stream); err != nil {
		t.Fatal(err)
	}
	if out.String() != "got:hello" {
		t.Fatalf("through the namespace: %q, want got:hello", out.String())
	}
}

// TestStreaming drives Exec, Attach and PortForward with client-go's
// clients (the kubelet's side), on pods from a registry on 127.0.0.1:5000.
func TestStreaming(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, app := testbin.PushBusybox(t, reg)
	bin, err := testbin.Stage("../..")
	if err != nil {
		t.Fatal(err)
	}
	// The engine finds the monitor and the runtime on $PATH; they must
	// outlive the pods, whose removal runs the runtime.
	t.Cleanup(func() { os.RemoveAll(bin) })
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dir := t.TempDir()
	regConf := filepath.Join(dir, "registries.conf")
	os.WriteFile(regConf, []byte("unqualified-search-registries = []\n"), 0o644)
	eng, err := engine.Open(ctx, engine.StoreOptions{Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run"),
		RegistriesConf: regConf, CNIPluginDirs: network.DefaultPluginDirs})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups, not defers: they run last registered first, after the
	// subtests, and the pods' (registered later) must run while the store
	// is open and before the network goes.
	t.Cleanup(func() { eng.Close() })
	s := New(eng, Config{PauseImage: pause})
	if _, err := s.Exec(ctx, &runtime.ExecRequest{ContainerId: "x", Cmd: []string{"true"}, Stdout: true}); !errdefs.IsUnavailable(err) {
		t.Fatalf("exec before StartStreaming: %v, want unavailable", err)
	}
	bound, stop, err := s.StartStreaming("127.0.0.1:0")
	if err != nil || strings.HasSuffix(bound, ":0") {
		t.Fatalf("stream server on %q: %v", bound, err)
	}
	t.Cleanup(stop)
	t.Cleanup(func() { eng.Networks.Remove(network.DefaultName) })
	if _, err := s.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: app}}); err != nil {
		t.Fatal(err)
	}
	pod := func(name string, hostNet bool) string {
		cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: name, Namespace: "test", Uid: name + "-uid"},
			LogDirectory: filepath.Join(dir, "logs", name), Linux: &runtime.LinuxPodSandboxConfig{}}
		if hostNet {
			cfg.Linux.SecurityContext = &runtime.LinuxSandboxSecurityContext{NamespaceOptions: &runtime.NamespaceOption{Network: runtime.NamespaceMode_NODE}}
		}
		resp, err := s.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			s.StopPodSandbox(context.Background(), &runtime.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId})
			s.RemovePodSandbox(context.Background(), &runtime.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
		})
		return resp.PodSandboxId
	}
	podID := pod("streams", false)
	container := func(name string, stdin bool, cmd ...string) string {
		cfg := &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: &runtime.ImageSpec{Image: app},
			Command: cmd, Stdin: stdin, StdinOnce: stdin, LogPath: name + ".log"}
		resp, err := s.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: podID, Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatal(err)
		}
		return resp.ContainerId
	}
	shID := container("sh", true, "/bin/sh")
	webID := container("web", false, "/bin/sh", "-c",
		"mkdir -p /www; echo hi-from-pod > /www/index.html; exec busybox httpd -f -p 127.0.0.1:8080 -h /www")

	t.Run("exec", func(t *testing.T) {
		var out, errOut bytes.Buffer
		err := streamExec(ctx, t, s, &runtime.ExecRequest{ContainerId: webID, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"},
			Stdout: true, Stderr: true}, remotecommand.StreamOptions{Stdout: &out, Stderr: &errOut})
		var ee clientexec.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
			t.Fatalf("exit: %v, want exit code 3", err)
		}
		if out.String() != "out\n" || errOut.String() != "err\n" {
			t.Fatalf("stdout %q, stderr %q", out.String(), errOut.String())
		}
		out.Reset()
		err = streamExec(ctx, t, s, &runtime.ExecRequest{ContainerId: webID, Cmd: []string{"cat"}, Stdin: true, Stdout: true},
			remotecommand.StreamOptions{Stdin: strings.NewReader("to-stdin"), Stdout: &out})
		if err != nil || out.String() != "to-stdin" {
			t.Fatalf("exec cat: %v, %q", err, out.String())
		}
		// The same over a websocket (the channel protocol runtimes serve).
		resp, err := s.Exec(ctx, &runtime.ExecRequest{ContainerId: webID, Cmd: []string{"sh", "-c", "echo ws; exit 4"}, Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		ws, err := remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, "GET", resp.Url, "v4.channel.k8s.io")
		if err != nil {
			t.Fatal(err)
		}
		out.Reset()
		err = ws.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out})
		if !errors.As(err, &ee) || ee.ExitStatus() != 4 || out.String() != "ws\n" {
			t.Fatalf("exec over a websocket: %v, %q", err, out.String())
		}
	})

	t.Run("exec-tty", func(t *testing.T) {
		// The size is the client's first message: it may come before the
		// runtime hands over the terminal, or after the command starts.
		script := `read x; for i in 1 2 3 4 5 6 7 8 9 10; do s=$(stty size); [ "$s" = "33 77" ] && break; sleep 0.2; done; echo "got-$x $s"`
		var out safeBuffer
		err := streamExec(ctx, t, s, &runtime.ExecRequest{ContainerId: webID, Cmd: []string{"sh", "-c", script}, Tty: true, Stdin: true, Stdout: true},
			remotecommand.StreamOptions{Stdin: strings.NewReader("abc\n"), Stdout: &out, Tty: true, TerminalSizeQueue: &sizes{s: []remotecommand.TerminalSize{{Width: 77, Height: 33}}}})
		if err != nil || !strings.Contains(out.String(), "got-abc 33 77\r\n") {
			t.Fatalf("exec -t: %v, %q", err, out.String())
		}
	})

	t.Run("attach", func(t *testing.T) {
		resp, err := s.Attach(ctx, &runtime.AttachRequest{ContainerId: shID, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		inR, inW := io.Pipe()
		var out, errOut safeBuffer
		go func() {
			inW.Write([]byte("echo attached\n"))
			for i := 0; i < 300 && out.String() == ""; i++ {
				time.Sleep(50 * time.Millisecond)
			}
			inW.Close() // stdin_once: the shell's stdin closes, and it exits
		}()
		err = spdyExecutor(t, resp.Url).StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: inR, Stdout: &out, Stderr: &errOut})
		if err != nil || out.String() != "attached\n" || errOut.String() != "" {
			t.Fatalf("attach: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
		}
		c, _ := s.record(ctx, shID, kindContainer)
		if _, err := eng.Wait(ctx, c); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Exec(ctx, &runtime.ExecRequest{ContainerId: shID, Cmd: []string{"true"}, Stdout: true}); !errdefs.IsFailedPrecond(err) {
			t.Fatalf("exec in an exited container: %v, want failed precondition", err)
		}
		if _, err := s.Attach(ctx, &runtime.AttachRequest{ContainerId: "no-such", Stdout: true}); !errdefs.IsNotFound(err) {
			t.Fatalf("attach to no container: %v, want not found", err)
		}
	})

	t.Run("port-forward", func(t *testing.T) {
		// httpd listens on the pod's loopback only: the stream must come
		// out inside the pod's network namespace.
		got := forwardGet(ctx, t, s, podID, 8080, "/index.html")
		if got != "hi-from-pod\n" {
			t.Fatalf("through port-forward: %q", got)
		}
		if _, err := s.PortForward(ctx, &runtime.PortForwardRequest{PodSandboxId: "no-such"}); !errdefs.IsNotFound(err) {
			t.Fatalf("port-forward to no pod: %v, want not found", err)
		}
	})

	t.Run("port-forward-host-network", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "host-side") }))
		hostPod := pod("hostnet", true)
		if got := forwardGet(ctx, t, s, hostPod, l.Addr().(*net.TCPAddr).Port, "/"); got != "host-side" {
			t.Fatalf("through port-forward on the host's network: %q", got)
		}
	})
}

func streamExec(ctx context.Context, t *testing.T, s *Server, req *runtime.ExecRequest, o remotecommand.StreamOptions) error {
	t.Helper()
	resp, err := s.Exec(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return spdyExecutor(t, resp.Url).StreamWithContext(ctx, o)
}

func spdyExecutor(t *testing.T, rawURL string) remotecommand.Executor {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	e, err := remotecommand.NewSPDYExecutor(&rest.Config{}, "POST", u)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// forwardGet port-forwards a local port to port in the pod and fetches
// path through it.
func forwardGet(ctx context.Context, t *testing.T, s *Server, podID string, port int, path string) string {
	t.Helper()
	resp, err := s.PortForward(ctx, &runtime.PortForwardRequest{PodSandboxId: podID, Port: []int32{int32(port)}})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(resp.Url)
	transport, upgrader, err := spdy.RoundTripperFor(&rest.Config{})
	if err != nil {
		t.Fatal(err)
	}
	stopCh, ready := make(chan struct{}), make(chan struct{})
	defer close(stopCh)
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, "POST", u)
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, stopCh, ready, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-errc:
		t.Fatalf("port-forward: %v", err)
	}
	ports, err := pf.GetPorts()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	var lastErr error
	for i := 0; i < 50; i++ { // the server in the pod may still be starting
		r, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d%s", ports[0].Local, path))
		if err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			return string(b)
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET through port-forward: %v", lastErr)
	return ""
}

// sizes hands the client's terminal sizes out once each, then ends.
type sizes struct{ s []remotecommand.TerminalSize }

func (q *sizes) Next() *remotecommand.TerminalSize {
	if len(q.s) == 0 {
		return nil
	}
	size := q.s[0]
	q.s = q.s[1:]
	return &size
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
