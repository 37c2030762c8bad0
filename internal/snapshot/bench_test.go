package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
)

// BenchmarkApply unpacks a 64 MB layer of 4000 files (16 KB each) into
// tmpfs, so that it measures the applier rather than the disk:
// go test -run X -bench Apply ./internal/snapshot/ (as root).
func BenchmarkApply(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	var entries []entry
	body := string(bytes.Repeat([]byte("layer data "), 16<<10/11))
	for i := 0; i < 4000; i++ {
		entries = append(entries, entry{name: fmt.Sprintf("d%02d/f%04d", i%50, i), typ: tar.TypeReg, body: body})
	}
	data := layer(b, entries...)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		dir, err := os.MkdirTemp("/dev/shm", "bench-apply")
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := Apply(context.Background(), dir, bytes.NewReader(data), ApplyOptions{}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
}
