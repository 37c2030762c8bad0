package contenttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
)

// The crash and lock tests re-execute the test binary, running only the
// test that called TestSuite; these variables tell that child what to do.
const (
	envChild = "BERTH_CONTENTTEST_CHILD" // "crash" or "hold"
	envTest  = "BERTH_CONTENTTEST_TEST"  // the calling test's name
	envRoot  = "BERTH_CONTENTTEST_ROOT"  // the store's directory
	envSeed  = "BERTH_CONTENTTEST_SEED"  // which blobs a crash child writes
)

const (
	crashIterations = 30
	crashBlobs      = 6
	holdRef         = "held-across-processes"
)

// child is a running re-executed test binary.
type child struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr bytes.Buffer
}

// startChild runs the test that called TestSuite (parent's name up to the
// suite) in a child process and waits until it says it is ready.
func startChild(t *testing.T, suiteTest, mode, root string, seed uint64) *child {
	t.Helper()
	var pattern []string
	for _, part := range strings.Split(suiteTest, "/") {
		pattern = append(pattern, "^"+regexp.QuoteMeta(part)+"$")
	}
	c := &child{cmd: exec.Command(os.Args[0], "-test.run="+strings.Join(pattern, "/"), "-test.count=1")}
	c.cmd.Env = append(os.Environ(),
		envChild+"="+mode, envTest+"="+suiteTest, envRoot+"="+root, envSeed+"="+strconv.FormatUint(seed, 10))
	c.cmd.Stderr = &c.stderr
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.out = bufio.NewReader(stdout)
	line, err := c.out.ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		rest, _ := io.ReadAll(c.out)
		c.cmd.Wait()
		t.Fatalf("child did not get ready (%v): %s%s\nstderr: %s", err, line, rest, c.stderr.String())
	}
	return c
}

// wait reaps the child and fails on anything but a clean exit or SIGKILL.
func (c *child) wait(t *testing.T) (killed bool) {
	t.Helper()
	rest, _ := io.ReadAll(c.out)
	err := c.cmd.Wait()
	if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true
	}
	if err != nil {
		t.Fatalf("child failed: %v\nstdout: %s\nstderr: %s", err, rest, c.stderr.String())
	}
	return false
}

// suiteName is the name of the test that called TestSuite: t is one of
// the suite's own subtests.
func suiteName(t *testing.T) string {
	name := t.Name()
	return name[:strings.LastIndex(name, "/")]
}

func runChild(t *testing.T, cfg config, mode string) {
	if cfg.open == nil {
		t.Fatal("child process without WithOpen")
	}
	s, err := cfg.open(os.Getenv(envRoot))
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := strconv.ParseUint(os.Getenv(envSeed), 10, 64)
	switch mode {
	case "hold":
		holdChild(t, s)
	case "crash":
		crashChild(t, s, seed)
	default:
		t.Fatalf("unknown child mode %q", mode)
	}
}

// holdChild holds a ref with some data until its stdin closes.
func holdChild(t *testing.T, s content.Store) {
	w, err := s.Writer(context.Background(), holdRef, content.SizeUnknown, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("from the child")); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func testCrossProcessLock(t *testing.T, cfg config) {
	if cfg.open == nil {
		t.Skip("no WithOpen option: the store cannot be opened from another process")
	}
	ctx := context.Background()
	root := t.TempDir()
	s, err := cfg.open(root)
	if err != nil {
		t.Fatal(err)
	}
	c := startChild(t, suiteName(t), "hold", root, 0)
	_, err = s.Writer(ctx, holdRef, content.SizeUnknown, "")
	wantErr(t, "Writer on a ref another process holds", err, errdefs.IsUnavailable, "Unavailable")
	wantMention(t, err, holdRef)
	wantErr(t, "Abort of a ref another process holds", s.Abort(ctx, holdRef), errdefs.IsUnavailable, "Unavailable")
	if got, err := s.CleanIngests(ctx, -time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("CleanIngests removed a held ingest: %v, %v", got, err)
	}
	c.stdin.Close()
	c.wait(t)
	// The child's data is resumed here.
	w := mustWriter(t, s, holdRef, content.SizeUnknown, "")
	if got := w.Status().Offset; got != int64(len("from the child")) {
		t.Fatalf("resumed the child's ingest at %d", got)
	}
}

// crashBlob is blob k of a crash child's seed. Sizes vary so that kills
// land in writes, in commits and between blobs.
func crashBlob(seed uint64, k int) []byte {
	r := rand.New(rand.NewPCG(seed, uint64(k)))
	return randBytes(seed, uint64(k)+1000, 4<<10+r.IntN(256<<10))
}

func crashRef(k int) string { return "crash-" + strconv.Itoa(k) }

// crashChild writes the seed's blobs, resuming what an earlier, killed
// child left under the same refs, and checks each resumed prefix.
func crashChild(t *testing.T, s content.Store, seed uint64) {
	ctx := context.Background()
	fmt.Println("ready")
	r := rand.New(rand.NewPCG(seed, 7))
	for k := range crashBlobs {
		b := crashBlob(seed, k)
		d := digest.FromBytes(b)
		w, err := s.Writer(ctx, crashRef(k), int64(len(b)), d)
		if errdefs.IsAlreadyExists(err) {
			continue
		}
		if err != nil {
			t.Fatalf("blob %d: %v", k, err)
		}
		off := w.Status().Offset
		if off > int64(len(b)) || w.Digest() != digest.FromBytes(b[:off]) {
			t.Fatalf("blob %d: resumed at %d with digest %s: not a prefix of the blob", k, off, w.Digest())
		}
		for rest := b[off:]; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(32<<10))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Fatalf("blob %d: %v", k, err)
			}
			rest = rest[n:]
		}
		if err := w.Commit(ctx, int64(len(b)), d); err != nil && !errdefs.IsAlreadyExists(err) {
			t.Fatalf("blob %d: %v", k, err)
		}
		w.Close()
	}
	fmt.Println("done")
}

// testCrash kills children at random points of writing and committing,
// then checks that every visible blob is whole and that the next writer of
// each ref gets the lock and can finish.
func testCrash(t *testing.T, cfg config) {
	if cfg.open == nil {
		t.Skip("no WithOpen option: the store cannot be opened from another process")
	}
	ctx := context.Background()
	root := t.TempDir()
	s, err := cfg.open(root)
	if err != nil {
		t.Fatal(err)
	}
	// Seed 0 is the calibration run; then pairs of children share a seed,
	// so the second of a pair resumes what the first was killed in.
	seedOf := func(i int) uint64 { return uint64(i/2) + 1 }
	known := map[digest.Digest]bool{}
	for seed := range seedOf(crashIterations-1) + 1 {
		for k := range crashBlobs {
			known[digest.FromBytes(crashBlob(seed, k))] = true
		}
	}

	// One run to completion measures how long a child works, so that the
	// kills spread over all of it.
	// Timed to its "done", not its exit: a race-enabled binary lingers a
	// second at exit.
	c := startChild(t, suiteName(t), "crash", root, 0)
	begin := time.Now()
	for {
		line, err := c.out.ReadString('\n')
		if err != nil || line == "done\n" {
			break
		}
	}
	span := time.Since(begin)
	c.wait(t)
	check := func(i int) (blobs, partial int) {
		err := s.Walk(ctx, func(info content.Info) error {
			blobs++
			if !known[info.Digest] {
				t.Errorf("iteration %d: unknown blob %s", i, info.Digest)
			}
			if err := s.Verify(ctx, info.Digest); err != nil {
				t.Errorf("iteration %d: %v", i, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		for k := range crashBlobs {
			st, err := s.Status(ctx, crashRef(k))
			if err == nil && st.Offset > 0 {
				partial++
				if st.Total >= 0 && st.Offset > st.Total {
					t.Errorf("iteration %d: ingest %s has %d of %d bytes", i, st.Ref, st.Offset, st.Total)
				}
			}
		}
		return blobs, partial
	}
	check(-1)

	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills, partials := 0, 0
	var lastSeed uint64
	for i := range crashIterations {
		lastSeed = seedOf(i)
		c := startChild(t, suiteName(t), "crash", root, lastSeed)
		time.Sleep(time.Duration(r.Int64N(int64(span))))
		c.cmd.Process.Kill()
		if c.wait(t) {
			kills++
		}
		_, p := check(i)
		partials += p
		if t.Failed() {
			t.FailNow()
		}
	}
	blobs, _ := check(crashIterations)
	t.Logf("%d children, %d killed (a child works about %v); %d partial ingests seen after kills; %d blobs stored",
		crashIterations, kills, span.Round(time.Millisecond), partials, blobs)

	// Every ref is free again and the last seed's blobs can all be written.
	for k := range crashBlobs {
		b := crashBlob(lastSeed, k)
		d := digest.FromBytes(b)
		w, err := s.Writer(ctx, crashRef(k), int64(len(b)), d)
		if errdefs.IsAlreadyExists(err) {
			if got := readBlob(t, s, d); !bytes.Equal(got, b) {
				t.Fatalf("blob %d differs", k)
			}
			continue
		}
		if err != nil {
			t.Fatalf("fresh writer for %s: %v", crashRef(k), err)
		}
		off := w.Status().Offset
		if _, err := w.Write(b[off:]); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(ctx, int64(len(b)), d); err != nil {
			t.Fatalf("fresh commit of blob %d (resumed at %d): %v", k, off, err)
		}
		if got := readBlob(t, s, d); !bytes.Equal(got, b) {
			t.Fatalf("blob %d differs", k)
		}
	}
}
