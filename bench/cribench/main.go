// Command cribench times a CRI server's pod life cycle, call by call: N
// pods, each with one container, run and started one after another
// (RunPodSandbox, CreateContainer, StartContainer), then, with all N up,
// the memory of the server and of every process the pods added, then
// stopped and removed (StopContainer, RemoveContainer, StopPodSandbox,
// RemovePodSandbox). bench/cri.sh runs it against berthd and containerd.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/to/cri.sock")
	n := flag.Int("n", 100, "pods")
	image := flag.String("image", "registry.k8s.io/e2e-test-images/busybox:1.29-2", "container image")
	label := flag.String("label", "server", "name in the output")
	serverPids := flag.String("server-pids", "", "comma-separated pids of the server's own processes (for its memory)")
	flag.Parse()
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail(err)
	}
	rs, is := runtime.NewRuntimeServiceClient(conn), runtime.NewImageServiceClient(conn)
	ctx := context.Background()
	if _, err := is.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: *image}}); err != nil {
		fail(fmt.Errorf("pull %s: %w", *image, err))
	}
	times := map[string][]time.Duration{}
	timed := func(op string, f func() error) {
		s := time.Now()
		if err := f(); err != nil {
			fail(fmt.Errorf("%s: %w", op, err))
		}
		times[op] = append(times[op], time.Since(s))
	}
	before := processes()
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	type pod struct{ id, ctr string }
	var pods []pod
	for i := 0; i < *n; i++ {
		cfg := &runtime.PodSandboxConfig{Metadata: &runtime.PodSandboxMetadata{Name: fmt.Sprintf("bench-%s-%d", tag, i), Namespace: "bench", Uid: fmt.Sprintf("%s-%d", tag, i)},
			Linux: &runtime.LinuxPodSandboxConfig{CgroupParent: "/bench-" + tag}}
		var p pod
		timed("RunPodSandbox", func() error {
			r, err := rs.RunPodSandbox(ctx, &runtime.RunPodSandboxRequest{Config: cfg})
			p.id = r.GetPodSandboxId()
			return err
		})
		timed("CreateContainer", func() error {
			r, err := rs.CreateContainer(ctx, &runtime.CreateContainerRequest{PodSandboxId: p.id, SandboxConfig: cfg,
				Config: &runtime.ContainerConfig{Metadata: &runtime.ContainerMetadata{Name: "sleeper"}, Image: &runtime.ImageSpec{Image: *image},
					Command: []string{"sleep", "3600"}, Linux: &runtime.LinuxContainerConfig{}}})
			p.ctr = r.GetContainerId()
			return err
		})
		timed("StartContainer", func() error {
			_, err := rs.StartContainer(ctx, &runtime.StartContainerRequest{ContainerId: p.ctr})
			return err
		})
		pods = append(pods, p)
	}
	time.Sleep(time.Second)
	added := map[string]int{}
	var addedPss int
	for pid, name := range processes() {
		if _, ok := before[pid]; ok {
			continue
		}
		added[name]++
		addedPss += pss(pid)
	}
	serverPss := 0
	for _, p := range strings.Split(*serverPids, ",") {
		if pid, err := strconv.Atoi(p); err == nil {
			serverPss += pss(pid)
		}
	}
	for _, p := range pods {
		timed("StopContainer", func() error {
			_, err := rs.StopContainer(ctx, &runtime.StopContainerRequest{ContainerId: p.ctr, Timeout: 0})
			return err
		})
		timed("RemoveContainer", func() error {
			_, err := rs.RemoveContainer(ctx, &runtime.RemoveContainerRequest{ContainerId: p.ctr})
			return err
		})
		timed("StopPodSandbox", func() error {
			_, err := rs.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: p.id})
			return err
		})
		timed("RemovePodSandbox", func() error {
			_, err := rs.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: p.id})
			return err
		})
	}
	fmt.Printf("%s: %d pods\n", *label, *n)
	for _, op := range []string{"RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox"} {
		d := times[op]
		slices.Sort(d)
		var sum time.Duration
		for _, x := range d {
			sum += x
		}
		fmt.Printf("  %-17s p50 %8.1f ms  p99 %8.1f ms  mean %8.1f ms\n", op, ms(d[len(d)/2]), ms(d[(len(d)*99)/100-boolInt(len(d)%100 == 0)]), ms(sum/time.Duration(len(d))))
	}
	var names []string
	for k, v := range added {
		names = append(names, fmt.Sprintf("%s x%d", k, v))
	}
	slices.Sort(names)
	fmt.Printf("  server PSS %d kB; processes the pods added: %s: %d kB PSS, %.0f kB per pod\n", serverPss, strings.Join(names, ", "), addedPss, float64(addedPss)/float64(*n))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// processes maps every pid to its command name.
func processes() map[int]string {
	out := map[int]string{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/comm"); err == nil {
			out[pid] = strings.TrimSpace(string(b))
		}
	}
	return out
}

// pss is a process's proportional set size in kB.
func pss(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Pss:" {
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "cribench:", err)
	os.Exit(1)
}
