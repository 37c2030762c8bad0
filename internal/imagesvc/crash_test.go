package imagesvc

import (
	"context"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// The crash test's child: pull or remove in the store named by the
// environment, then exit; the parent kills it at a random moment.
func TestCrashChild(t *testing.T) {
	root, op, ref := os.Getenv("BERTH_CRASH_ROOT"), os.Getenv("BERTH_CRASH_OP"), os.Getenv("BERTH_CRASH_REF")
	if root == "" {
		t.Skip("only run by TestCrashPullRemove")
	}
	s := newServiceAt(t, root)
	ctx := context.Background()
	switch op {
	case "pull":
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	case "gc":
		for range 20 {
			if _, err := s.GC(ctx); err != nil {
				t.Fatal(err)
			}
		}
	case "remove":
		if _, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// slowBlobs serves blobs in small pieces with pauses, so a pull lasts
// long enough to be killed anywhere in it.
func slowBlobs(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
			h.ServeHTTP(w, r)
			return
		}
		h.ServeHTTP(&slowWriter{ResponseWriter: w}, r)
	})
}

type slowWriter struct{ http.ResponseWriter }

func (s *slowWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 32<<10)
		m, err := s.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		if f, ok := s.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		p = p[k:]
		time.Sleep(time.Millisecond)
	}
	return n, nil
}

// TestCrashPullRemove kills pulls, and removals with their GC, with
// SIGKILL at random moments, many times, and checks after each that the
// store is consistent; then a pull completes and the image is whole.
func TestCrashPullRemove(t *testing.T) {
	root, s, ref := slowStore(t, "crash")
	ctx := context.Background()
	child := func(op string) *exec.Cmd { return childCmd(root, op, ref) }
	// How long each operation takes when left alone (the child's start-up
	// included): kills land uniformly within that.
	took := map[string]time.Duration{}
	for _, op := range []string{"pull", "remove"} {
		start := time.Now()
		if out, err := child(op).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", op, err, out)
		}
		took[op] = time.Since(start)
	}
	t.Logf("uninterrupted: pull %v, remove and GC %v", took["pull"], took["remove"])
	rounds := 30
	if testing.Short() {
		rounds = 8
	}
	killed, finished := 0, 0
	for i := range rounds {
		op := "pull"
		if _, err := s.Meta.GetImage(ctx, ref); err == nil && i%2 == 1 {
			op = "remove"
		}
		cmd := child(op)
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(took[op]))))
		cmd.Process.Signal(syscall.SIGKILL)
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); ok && ee.Sys().(syscall.WaitStatus).Signaled() {
			killed++
		} else if err == nil {
			finished++
		} else {
			t.Fatalf("round %d (%s): the child failed: %v\n%s", i, op, err, out.String())
		}
		// Consistent as it is: no damage, only garbage.
		rep, err := s.Check(ctx, CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Problems) > 0 {
			t.Fatalf("round %d (%s killed): %+v", i, op, rep.Problems)
		}
	}
	t.Logf("%d rounds: %d killed mid-way, %d finished first", rounds, killed, finished)
	if killed == 0 {
		t.Fatal("no child was killed mid-way: the test proves nothing")
	}
	// A pull now succeeds, and the store is whole and holds no garbage.
	if out, err := child("pull").CombinedOutput(); err != nil {
		t.Fatalf("pull after the crashes: %v\n%s", err, out)
	}
	rep, err := s.Check(ctx, CheckOptions{Repair: true})
	if err != nil || len(rep.Problems) > 0 {
		t.Fatalf("check: %+v %v", rep, err)
	}
	if rep.GC != nil && (len(rep.GC.Blobs) > 0 || len(rep.GC.Snapshots) > 0) {
		t.Logf("garbage left by the crashes, now collected: %d blobs, %d snapshots", len(rep.GC.Blobs), len(rep.GC.Snapshots))
	}
	c := storeCounts(t, s, root)
	if c.blobs != 2 || c.snapshots != 4 || c.dirs != 4 || c.staging != 0 {
		t.Fatalf("store after the final pull and GC: %+v, want 2 blobs (manifest, config), 4 snapshots", c)
	}
}

// TestConcurrentProcesses: two processes pull the same image into one
// store while a third collects garbage in a loop; all succeed and the store
// is whole and consistent afterwards.
func TestConcurrentProcesses(t *testing.T) {
	root, s, ref := slowStore(t, "conc")
	ctx := context.Background()
	for round := range 3 {
		var cmds []*exec.Cmd
		var outs []*strings.Builder
		for _, op := range []string{"pull", "pull", "gc"} {
			cmd := childCmd(root, op, ref)
			out := &strings.Builder{}
			cmd.Stdout, cmd.Stderr = out, out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			cmds, outs = append(cmds, cmd), append(outs, out)
		}
		for i, cmd := range cmds {
			if err := cmd.Wait(); err != nil {
				t.Fatalf("round %d, process %d: %v\n%s", round, i, err, outs[i])
			}
		}
		rep, err := s.Check(ctx, CheckOptions{})
		if err != nil || len(rep.Problems) > 0 {
			t.Fatalf("round %d: %+v %v", round, rep, err)
		}
		if _, err := s.Meta.GetImage(ctx, ref); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// Start the next round from nothing.
		if _, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

// slowStore is a store under a new root and a 4-layer image served by an
// in-memory registry that sends blobs slowly (see slowBlobs).
func slowStore(t *testing.T, repo string) (string, *Service, string) {
	t.Helper()
	root := t.TempDir()
	s := newServiceAt(t, root)
	reg := httptest.NewServer(slowBlobs(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))))
	t.Cleanup(reg.Close)
	ref := strings.TrimPrefix(reg.URL, "http://") + "/" + repo + "/app:v1"
	img, err := random.Image(1<<20, 4)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(ref, name.Insecure)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return root, s, ref
}

// childCmd runs TestCrashChild: op on the store at root.
func childCmd(root, op, ref string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "BERTH_CRASH_ROOT="+root, "BERTH_CRASH_OP="+op, "BERTH_CRASH_REF="+ref)
	return cmd
}
