package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/testbin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := testbin.Stage("../..", "cmd/berthd", "cmd/berth")
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// daemon is a berthd on a store of its own.
type daemon struct {
	t                   *testing.T
	dir, sock           string
	root, runroot, conf string
	cmd                 *exec.Cmd
	client              runtime.RuntimeServiceClient
	images              runtime.ImageServiceClient
}

func startDaemon(t *testing.T, pause string, extraConf ...string) *daemon {
	t.Helper()
	dir := t.TempDir()
	d := &daemon{t: t, dir: dir, sock: filepath.Join(dir, "berthd.sock"), root: filepath.Join(dir, "root"),
		runroot: filepath.Join(dir, "run"), conf: filepath.Join(dir, "berthd.toml")}
	os.WriteFile(d.conf, []byte(fmt.Sprintf("[cri]\npause_image = %q\n", pause)+strings.Join(extraConf, "\n")), 0o644)
	os.WriteFile(filepath.Join(dir, "registries.conf"), []byte("unqualified-search-registries = []\n"), 0o644)
	d.start()
	t.Cleanup(func() {
		// Everything the test left, then the daemon.
		exec.Command(filepath.Join(binDir, "berth"), "--root", d.root, "--runroot", d.runroot, "system", "reset", "--force").Run()
		d.stop()
	})
	return d
}

func (d *daemon) start() {
	d.t.Helper()
	d.cmd = exec.Command(filepath.Join(binDir, "berthd"), "--listen", "unix://"+d.sock, "--root", d.root, "--runroot", d.runroot,
		"--config", d.conf, "--registries-conf", filepath.Join(d.dir, "registries.conf"))
	log, _ := os.OpenFile(filepath.Join(d.dir, "log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("unix", d.sock); err == nil {
			c.Close()
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		d.t.Fatal(err)
	}
	d.client, d.images = runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
}

func (d *daemon) stop() {
	if d.cmd != nil && d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		d.cmd.Wait()
		d.cmd = nil
	}
}

// crictl runs the real client against the daemon.
func (d *daemon) crictl(args ...string) (string, error) {
	cmd := exec.Command("crictl", append([]string{"--runtime-endpoint", "unix://" + d.sock, "--image-endpoint", "unix://" + d.sock, "--timeout", "60s"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func (d *daemon) mustCrictl(args ...string) string {
	d.t.Helper()
	out, err := d.crictl(args...)
	if err != nil {
		d.t.Fatalf("crictl %s: %v\n%s\nberthd log:\n%s", strings.Join(args, " "), err, out, d.log())
	}
	return strings.TrimSpace(out)
}

func (d *daemon) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "log"))
	return string(b)
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestCrictl drives berthd with crictl, the real client: pull, images,
// runp with a hostPort, create, start, exec, logs, stats, ps, stop, rm,
// stopp, rmp, rmi; and berth sees what berthd made.
func TestCrictl(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	if _, err := exec.LookPath("crictl"); err != nil {
		t.Skip("crictl not installed (go install sigs.k8s.io/cri-tools/cmd/crictl)")
	}
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause)
	d.mustCrictl("pull", app)
	if out := d.mustCrictl("images", "-o", "json"); !strings.Contains(out, app) {
		t.Fatalf("images: %s", out)
	}
	// One store: what crictl pulled through berthd, berth lists; what berth
	// pulls, crictl lists.
	berth := func(args ...string) string {
		out, err := exec.Command(filepath.Join(binDir, "berth"), append([]string{"--root", d.root, "--runroot", d.runroot,
			"--registries-conf", filepath.Join(d.dir, "registries.conf")}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("berth %v: %v %s", args, err, out)
		}
		return string(out)
	}
	if out := berth("images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, app) {
		t.Errorf("berth images does not list what berthd pulled: %q", out)
	}
	berth("pull", "-q", pause)
	if out := d.mustCrictl("images", "-o", "json"); !strings.Contains(out, pause) {
		t.Errorf("crictl images does not list what berth pulled: %s", out)
	}
	port := freePort(t)
	pod := filepath.Join(d.dir, "pod.json")
	os.WriteFile(pod, []byte(fmt.Sprintf(`{"metadata": {"name": "web", "namespace": "test", "uid": "u1", "attempt": 1},
		"hostname": "webhost", "log_directory": %q, "port_mappings": [{"container_port": 8080, "host_port": %d}],
		"linux": {}}`, filepath.Join(d.dir, "logs"), port)), 0o644)
	ctr := filepath.Join(d.dir, "ctr.json")
	os.WriteFile(ctr, []byte(fmt.Sprintf(`{"metadata": {"name": "httpd"}, "image": {"image": %q},
		"command": ["/bin/sh", "-c", "echo hello-log; mkdir -p /www; echo hi-from-pod > /www/index.html; exec busybox httpd -f -p 8080 -h /www"],
		"log_path": "httpd.log", "linux": {}}`, app)), 0o644)
	podID := d.mustCrictl("runp", pod)
	ctrID := d.mustCrictl("create", podID, ctr, pod)
	d.mustCrictl("start", ctrID)
	if out := d.mustCrictl("exec", "-s", ctrID, "busybox", "hostname"); out != "webhost" {
		t.Errorf("hostname in the pod: %q", out)
	}
	var body string
	for i := 0; i < 100; i++ {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/index.html", port)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			body = string(b)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if body != "hi-from-pod\n" {
		t.Errorf("hostPort %d from the host: %q", port, body)
	}
	d.mustCrictl("update", "--memory", "104857600", ctrID)
	if out := d.mustCrictl("exec", "-s", ctrID, "busybox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"); out != "104857600" {
		t.Errorf("memory limit after update: %q", out)
	}
	if out := d.mustCrictl("logs", ctrID); !strings.Contains(out, "hello-log") {
		t.Errorf("logs: %q", out)
	}
	if b, err := os.ReadFile(filepath.Join(d.dir, "logs", "httpd.log")); err != nil || !strings.Contains(string(b), " stdout F hello-log") {
		t.Errorf("the kubelet's log file: %v %q", err, b)
	}
	if out := d.mustCrictl("stats", "-o", "json", ctrID); !strings.Contains(out, ctrID) || !strings.Contains(out, "workingSetBytes") {
		t.Errorf("stats: %s", out)
	}
	if out := d.mustCrictl("ps", "-q"); out != ctrID {
		t.Errorf("ps: %q", out)
	}
	if out := d.mustCrictl("pods", "-q"); out != podID {
		t.Errorf("pods: %q", out)
	}
	berthPs, _ := exec.Command(filepath.Join(binDir, "berth"), "--root", d.root, "--runroot", d.runroot, "ps", "--filter", "pod="+podID[:12],
		"--format", "{{.Name}} {{.Pod}}").Output()
	if want := "k8s_POD_web_test_u1_1 " + podID + "\nk8s_httpd_web_test_u1_0 " + podID + "\n"; string(berthPs) != want &&
		string(berthPs) != "k8s_httpd_web_test_u1_0 "+podID+"\nk8s_POD_web_test_u1_1 "+podID+"\n" {
		t.Errorf("berth ps does not show berthd's pod as such: %q", berthPs)
	}
	d.mustCrictl("stop", ctrID)
	if out := d.mustCrictl("inspect", "-o", "go-template", "--template", "{{.status.state}}", ctrID); out != "CONTAINER_EXITED" {
		t.Errorf("after stop: %q", out)
	}
	d.mustCrictl("rm", ctrID)
	d.mustCrictl("stopp", podID)
	d.mustCrictl("rmp", podID)
	d.mustCrictl("rmi", app)
	if out := d.mustCrictl("pods", "-q") + d.mustCrictl("ps", "-a", "-q"); out != "" {
		t.Errorf("left after rmp: %q", out)
	}
}

// TestRestart: berthd stopped and started again knows its pods and
// containers, which ran on; an exit while it was down is reported with
// its code.
func TestRestart(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause)
	ctx := context.Background()
	if _, err := d.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: app}}); err != nil {
		t.Fatal(err)
	}
	podCfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "r", Namespace: "test", Uid: "u2"},
		LogDirectory: filepath.Join(d.dir, "logs"), Linux: &runtime.LinuxPodSandboxConfig{}}
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	mk := func(name, script string) string {
		c, err := d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: &runtime.ImageSpec{Image: app},
				Command: []string{"/bin/sh", "-c", script}, LogPath: name + ".log", Linux: &runtime.LinuxContainerConfig{}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.client.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
			t.Fatal(err)
		}
		return c.ContainerId
	}
	long := mk("long", "exec busybox sleep 600")
	short := mk("short", "busybox sleep 2; exit 3")
	d.stop()
	time.Sleep(3 * time.Second) // short exits while berthd is down
	d.start()
	status := func(id string) *runtime.ContainerStatus {
		s, err := d.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatalf("status of %s after the restart: %v", id, err)
		}
		return s.Status
	}
	if s := status(long); s.State != runtime.ContainerState_CONTAINER_RUNNING {
		t.Errorf("long: %v after the restart", s.State)
	}
	if s := status(short); s.State != runtime.ContainerState_CONTAINER_EXITED || s.ExitCode != 3 || s.FinishedAt == 0 {
		t.Errorf("short: %v, exit %d, finished %d", s.State, s.ExitCode, s.FinishedAt)
	}
	ps, err := d.client.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil || ps.Status.State != runtime.PodSandboxState_SANDBOX_READY || ps.Status.Network.Ip == "" {
		t.Errorf("pod after the restart: %v %v", ps, err)
	}
	if _, err := d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
}

// TestBadRequests: what is missing or unknown gets the CRI's codes, and
// leaves nothing made.
func TestBadRequests(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause)
	ctx := context.Background()
	code := func(err error) codes.Code { return status.Code(err) }
	_, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "x"}}})
	if code(err) != codes.InvalidArgument {
		t.Errorf("runp without namespace and uid: %v", err)
	}
	_, err = d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{RuntimeHandler: "nosuch",
		Config: &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "x", Namespace: "n", Uid: "u"}}})
	if code(err) != codes.NotFound {
		t.Errorf("runp with an unknown handler: %v", err)
	}
	if _, err := d.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "nosuch"}); code(err) != codes.NotFound {
		t.Errorf("status of an unknown container: %v", err)
	}
	if _, err := d.client.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: "nosuch"}); code(err) != codes.NotFound {
		t.Errorf("status of an unknown pod: %v", err)
	}
	_, err = d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: "nosuch",
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: app}}})
	if code(err) != codes.NotFound {
		t.Errorf("create in an unknown pod: %v", err)
	}
	for _, err := range []error{
		func() error {
			_, err := d.client.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: "nosuch"})
			return err
		}(),
		func() error {
			_, err := d.client.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: "nosuch"})
			return err
		}(),
		func() error {
			_, err := d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: "nosuch"})
			return err
		}(),
		func() error {
			_, err := d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: "nosuch"})
			return err
		}(),
	} {
		if err != nil {
			t.Errorf("stop/remove of what is not there must succeed: %v", err)
		}
	}
	podCfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "p", Namespace: "n", Uid: "u3"}, Linux: &runtime.LinuxPodSandboxConfig{}}
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg}); code(err) != codes.AlreadyExists {
		t.Errorf("the same pod twice: %v", err)
	}
	_, err = d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: app}}})
	if code(err) != codes.NotFound {
		t.Errorf("create with an image not pulled: %v", err)
	}
	_, err = d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}}})
	if code(err) != codes.InvalidArgument {
		t.Errorf("create without an image: %v", err)
	}
	list, err := d.client.ListContainers(ctx, &runtime.ListContainersRequest{})
	if err != nil || len(list.Containers) != 0 {
		t.Errorf("containers after the failed creates: %v %v", list, err)
	}
	d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
}

// TestMetrics: the Prometheus endpoint counts CRI calls by method and
// code, and the store's pods.
func TestMetrics(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, _ := testbin.PushBusybox(t, reg)
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	d := startDaemon(t, pause, fmt.Sprintf("[metrics]\naddress = %q\n", addr))
	ctx := context.Background()
	d.client.Version(ctx, &runtime.VersionRequest{})
	d.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: "nosuch"})
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: &runtime.PodSandboxConfig{
		Metadata: &runtime.PodSandboxMetadata{Name: "m", Namespace: "n", Uid: "u4"}, Linux: &runtime.LinuxPodSandboxConfig{}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`berthd_cri_request_duration_seconds_count{code="OK",method="Version"} 1`,
		`berthd_cri_request_duration_seconds_count{code="NotFound",method="ContainerStatus"} 1`,
		`berthd_pods{state="SANDBOX_READY"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(string(body), "berthd_"))
		}
	}
	d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return strings.Join(out, "\n")
}

// TestEvents: GetContainerEvents reports a container's creation, start,
// stop and removal, with its pod's status.
func TestEvents(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := d.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: app}}); err != nil {
		t.Fatal(err)
	}
	stream, err := d.client.GetContainerEvents(ctx, &runtime.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *runtime.ContainerEventResponse, 100)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				close(events)
				return
			}
			events <- ev
		}
	}()
	podCfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "e", Namespace: "n", Uid: "u5"}, Linux: &runtime.LinuxPodSandboxConfig{}}
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	wait := func() { time.Sleep(500 * time.Millisecond) } // events come from looks 200 ms apart
	c, err := d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: app},
			Command: []string{"busybox", "sleep", "60"}, Linux: &runtime.LinuxContainerConfig{}}})
	if err != nil {
		t.Fatal(err)
	}
	wait()
	d.client.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId})
	wait()
	d.client.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: c.ContainerId})
	wait()
	d.client.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: c.ContainerId})
	wait()
	var got []string
	deadline := time.After(5 * time.Second)
	for len(got) < 4 {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended: %v", got)
			}
			if ev.ContainerId != c.ContainerId {
				continue
			}
			got = append(got, ev.ContainerEventType.String())
			if ev.PodSandboxStatus.GetId() != pod.PodSandboxId {
				t.Errorf("%s: pod status %v", ev.ContainerEventType, ev.PodSandboxStatus)
			}
		case <-deadline:
			t.Fatalf("events of the container: %v", got)
		}
	}
	want := "CONTAINER_CREATED_EVENT CONTAINER_STARTED_EVENT CONTAINER_STOPPED_EVENT CONTAINER_DELETED_EVENT"
	if strings.Join(got, " ") != want {
		t.Errorf("events: %v, want %s", got, want)
	}
	d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
}

// TestRuntimeHandler: a RuntimeClass handler named in berthd.toml runs the
// pod and its containers on that OCI runtime (runc here).
func TestRuntimeHandler(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause, "[cri.runtimes]\nrunc = \"runc\"\n")
	ctx := context.Background()
	st, err := d.client.Status(ctx, &runtime.StatusRequest{})
	if err != nil || len(st.RuntimeHandlers) != 2 {
		t.Fatalf("handlers: %v %v", st.GetRuntimeHandlers(), err)
	}
	if _, err := d.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: app}}); err != nil {
		t.Fatal(err)
	}
	podCfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "h", Namespace: "n", Uid: "u6"}, Linux: &runtime.LinuxPodSandboxConfig{}}
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg, RuntimeHandler: "runc"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "c"}, Image: &runtime.ImageSpec{Image: app},
			Command: []string{"busybox", "sleep", "60"}, Linux: &runtime.LinuxContainerConfig{}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	ps, err := d.client.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId, Verbose: true})
	if err != nil || ps.Status.RuntimeHandler != "runc" || !strings.Contains(ps.Info["info"], runc) {
		t.Errorf("pod: handler %q, info %v, %v", ps.GetStatus().GetRuntimeHandler(), ps.GetInfo(), err)
	}
	cs, err := d.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.ContainerId, Verbose: true})
	if err != nil || cs.Status.State != runtime.ContainerState_CONTAINER_RUNNING || !strings.Contains(cs.Info["info"], runc) {
		t.Errorf("container: %v %v", cs, err)
	}
	// runc's own state dir knows it (berth's runtime root for runc).
	if out, err := exec.Command(runc, "--root", filepath.Join(d.runroot, "runtime", "runc"), "state", c.ContainerId).CombinedOutput(); err != nil || !strings.Contains(string(out), `"status": "running"`) {
		t.Errorf("runc state: %v %s", err, out)
	}
	d.client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	d.client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
}

// TestImageVolumes: a container with an image's files mounted read-only
// (the kubelet's image volumes), whole and by a sub-path; the image's
// binaries run from there, a write fails; the status reports the image's
// ID; bad mounts are refused leaving nothing; the mounts outlive the
// image's removal and a berthd restart, and go with the container.
func TestImageVolumes(t *testing.T) {
	reg := testbin.RuntimeRegistry(t)
	pause, app := testbin.PushBusybox(t, reg)
	d := startDaemon(t, pause)
	ctx := context.Background()
	pulled, err := d.images.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: app}})
	if err != nil {
		t.Fatal(err)
	}
	podCfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: "iv", Namespace: "test", Uid: "u-iv"},
		LogDirectory: filepath.Join(d.dir, "logs"), Linux: &runtime.LinuxPodSandboxConfig{}}
	pod, err := d.client.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	create := func(name string, mounts ...*runtime.Mount) (string, error) {
		c, err := d.client.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
			Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: name}, Image: &runtime.ImageSpec{Image: app},
				Command: []string{"busybox", "sleep", "600"}, LogPath: name + ".log", Mounts: mounts, Linux: &runtime.LinuxContainerConfig{}}})
		return c.GetContainerId(), err
	}
	vol := func(path, sub string, ro bool) *runtime.Mount {
		return &runtime.Mount{ContainerPath: path, Readonly: ro, Image: &runtime.ImageSpec{Image: app}, ImageSubPath: sub}
	}
	mounted := func(id string) bool {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(b), filepath.Join(id, "image-volumes"))
	}
	for _, bad := range []*runtime.Mount{vol("/iv", "", false), vol("/iv", "../..", true), vol("/iv", "nosuch", true),
		{ContainerPath: "/iv", Readonly: true, Image: &runtime.ImageSpec{Image: reg + "/berth-test/nosuch:1"}}} {
		if _, err := create("bad", bad); err == nil {
			t.Errorf("image volume %+v accepted", bad)
		}
	}
	if out := d.mustCrictl("ps", "-a", "-q"); out != "" {
		t.Errorf("refused image volumes left containers: %q", out)
	}
	id, err := create("iv", vol("/iv", "", true), vol("/ivbin", "bin", true))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.client.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for cmd, ok := range map[string]bool{"/iv/bin/busybox true": true, "/ivbin/busybox true": true, "busybox ls /ivbin/sh": true,
			"busybox touch /iv/x": false, "busybox ls /iv/etc": true} {
			r, err := d.client.ExecSync(ctx, &runtime.ExecSyncRequest{ContainerId: id, Cmd: strings.Fields(cmd), Timeout: 10})
			if err != nil || (r.ExitCode == 0) != ok {
				t.Errorf("%s: %s: %v %+v, want success %v", when, cmd, err, r, ok)
			}
		}
	}
	check("started")
	st, err := d.client.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	refs := 0
	for _, m := range st.Status.Mounts {
		if m.Image != nil && m.Image.ImageRef == pulled.ImageRef {
			refs++
		}
	}
	if refs != 2 {
		t.Errorf("the status's image volumes with the image's ID %s: %d of 2: %+v", pulled.ImageRef, refs, st.Status.Mounts)
	}
	// The CRI removes an image in use (as containerd does): its layers
	// stay while a container's root or volume needs them.
	if _, err := d.images.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: app}}); err != nil {
		t.Fatal(err)
	}
	d.stop()
	d.start()
	check("after the image's removal and a berthd restart")
	d.mustCrictl("rm", "-f", id)
	if mounted(id) {
		t.Error("the image volumes are still mounted after rm")
	}
}
