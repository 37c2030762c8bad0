package metadata

// Tests across processes: the test binary re-executes itself with
// helperEnv set, and TestMain runs the helper instead of the tests.

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

const helperEnv = "BERTH_METADATA_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv("BERTH_METADATA_TEST_DB"), os.Getenv("BERTH_METADATA_TEST_ARG")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helperCmd(mode, path, arg string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "BERTH_METADATA_TEST_DB="+path, "BERTH_METADATA_TEST_ARG="+arg)
	cmd.Stderr = os.Stderr
	return cmd
}

// writePair changes two images and a lease in one transaction, so a reader
// that ever sees them disagree has seen a half-committed transaction.
func writePair(ctx context.Context, db *DB, n int, pad string) error {
	return db.updateBuckets(ctx, func(b buckets) error {
		for _, name := range []string{"pair/a", "pair/b"} {
			img := testImage(name, "m"+strconv.Itoa(n))
			img.Labels = map[string]string{"n": strconv.Itoa(n), "pad": pad}
			if err := putJSON(b.images, []byte(name), img, name); err != nil {
				return err
			}
		}
		return putJSON(b.leases, []byte("pair"), Lease{ID: "pair", Labels: map[string]string{"n": strconv.Itoa(n)}}, "lease pair")
	})
}

func runHelper(mode, path, arg string) error {
	ctx := context.Background()
	db, err := Open(ctx, path, WithLockTimeout(time.Minute))
	if err != nil {
		return err
	}
	defer db.Close()
	switch mode {
	case "create": // arg: prefix; 40 images, one transaction each
		for i := range 40 {
			if _, err := db.CreateImage(ctx, testImage(fmt.Sprintf("%s/img:%d", arg, i), arg)); err != nil {
				return err
			}
		}
		return nil
	case "pairs": // arg: count
		n, _ := strconv.Atoi(arg)
		for i := 1; i <= n; i++ {
			if err := writePair(ctx, db, i, ""); err != nil {
				return err
			}
		}
		return nil
	case "churn": // until killed: pairs, snapshots made and removed, lease growth
		pad := strings.Repeat("x", 6000) // records span pages
		fmt.Println("ready")
		for i := 1; ; i++ {
			if err := writePair(ctx, db, i, pad); err != nil {
				return err
			}
			key := fmt.Sprintf("snap-%d", i)
			parent := ""
			if i > 1 {
				parent = fmt.Sprintf("snap-%d", i-1)
			}
			if _, err := db.CreateSnapshot(ctx, Snapshot{Key: key, Parent: parent, Kind: KindCommitted, Labels: map[string]string{"pad": pad}}); err != nil {
				return err
			}
			if err := db.AddLeaseResource(ctx, "pair", Resource{ResourceSnapshot, key}); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unknown helper mode %q", mode)
}

func TestTwoProcessesWrite(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, prefix := range []string{"p1", "p2"} {
		wg.Go(func() { errs[i] = helperCmd("create", path, prefix).Run() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	imgs, err := db.ListImages(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 80 {
		t.Fatalf("got %d images, want 80 from two writers", len(imgs))
	}
}

// A reader in this process watches another process's transactions: it
// must see each one whole or not at all, and never go back in time.
func TestReaderSeesCommittedOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 150
	cmd := helperCmd("pairs", path, strconv.Itoa(n))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	last, reads := 0, 0
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			finished = true
		default:
		}
		cur, err := readPair(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		if cur < last {
			t.Fatalf("went back from %d to %d", last, cur)
		}
		last = cur
		reads++
	}
	if last != n {
		t.Fatalf("final state %d, want %d", last, n)
	}
	t.Logf("%d reads alongside %d writes", reads, n)
}

// readPair returns the pair's generation (0 before the first write),
// reading all three records in one transaction, and fails if they disagree.
func readPair(ctx context.Context, db *DB) (int, error) {
	var ns []string
	err := db.view(ctx, func(b buckets) error {
		for _, name := range []string{"pair/a", "pair/b"} {
			var img Image
			if data := b.images.Get([]byte(name)); data != nil {
				if err := getJSON(data, &img, name); err != nil {
					return err
				}
			}
			ns = append(ns, img.Labels["n"])
		}
		var l Lease
		if data := b.leases.Get([]byte("pair")); data != nil {
			if err := getJSON(data, &l, "lease pair"); err != nil {
				return err
			}
		}
		ns = append(ns, l.Labels["n"])
		return nil
	})
	if err != nil {
		return 0, err
	}
	if ns[0] != ns[1] || ns[1] != ns[2] {
		return 0, fmt.Errorf("half a transaction: a=%q b=%q lease=%q", ns[0], ns[1], ns[2])
	}
	n, _ := strconv.Atoi(ns[0])
	return n, nil
}

// A process killed at random points of many transactions leaves a store
// that opens, passes bbolt's own consistency check, and decodes whole.
func TestCrashLeavesConsistentStore(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test spawns 20 processes; skipped with -short")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	if _, err := Open(ctx, path); err != nil {
		t.Fatal(err)
	}
	for iter := range 20 {
		cmd := helperCmd("churn", path, "")
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if line, _ := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			t.Fatalf("iteration %d: helper said %q", iter, line)
		}
		time.Sleep(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()

		checkBolt(t, path)
		db, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("iteration %d: reopen: %v", iter, err)
		}
		n, err := readPair(ctx, db)
		if err != nil {
			t.Fatalf("iteration %d: %v", iter, err)
		}
		seen := map[string]bool{}
		var parents []string
		err = db.WalkSnapshots(ctx, func(s Snapshot) error {
			seen[s.Key] = true
			parents = append(parents, s.Parent)
			return nil
		})
		if err != nil {
			t.Fatalf("iteration %d: walk: %v", iter, err)
		}
		snaps := len(seen)
		for _, p := range parents {
			if p != "" && !seen[p] {
				t.Fatalf("iteration %d: parent %s missing", iter, p)
			}
		}
		if snaps != n && snaps != n-1 {
			t.Fatalf("iteration %d: %d snapshots after %d pair writes", iter, snaps, n)
		}
		if _, err := db.ListImages(ctx, nil); err != nil {
			t.Fatalf("iteration %d: list: %v", iter, err)
		}
		if _, _, err := db.Unreferenced(ctx, nil, nil, nil); err != nil {
			t.Fatalf("iteration %d: gc: %v", iter, err)
		}
		// Start each round from an empty store, so the helper's counters
		// and snapshot keys begin again; the file itself is reused.
		if err := clearStore(ctx, db); err != nil {
			t.Fatal(err)
		}
		t.Logf("iteration %d: killed after %d pair writes, %d snapshots", iter, n, snaps)
	}
}

func checkBolt(t *testing.T, path string) {
	t.Helper()
	bdb, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("bbolt open: %v", err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for err := range tx.Check() {
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatalf("bbolt check: %v", err)
	}
}

func clearStore(ctx context.Context, db *DB) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketRoot); err != nil {
			return err
		}
		return initSchema(tx, db.path)
	}, true)
}
