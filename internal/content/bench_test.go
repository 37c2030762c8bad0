package content_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/content"
)

const benchSize = 64 << 20

func benchData() []byte {
	b := make([]byte, benchSize)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// shaNI says whether Go's crypto/sha256 can use the SHA extensions here:
// it does when the CPU has them (and AVX, SSE4.1, SSSE3), which
// /proc/cpuinfo shows as sha_ni.
func shaNI() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	return strconv.FormatBool(strings.Contains(string(b), " sha_ni"))
}

// BenchmarkWrite64MB is a whole blob ingest: write and hash in 1 MiB
// chunks (as io.Copy from a decompressor would), then the durable commit.
// The store's root is under $TMPDIR; point it at the real store's disk to
// measure that disk's fsync.
func BenchmarkWrite64MB(b *testing.B) {
	data := benchData()
	d := digest.FromBytes(data)
	s, err := content.NewStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Logf("sha_ni=%s", shaNI())
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := s.Writer(ctx, "bench", benchSize, d)
		if err != nil {
			b.Fatal(err)
		}
		for off := 0; off < benchSize; off += 1 << 20 {
			if _, err := w.Write(data[off : off+1<<20]); err != nil {
				b.Fatal(err)
			}
		}
		if err := w.Commit(ctx, benchSize, d); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Delete(ctx, d); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkSHA256 is the hashing alone, the expected limit of a write.
func BenchmarkSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		h := sha256.New()
		for off := 0; off < benchSize; off += 1 << 20 {
			h.Write(data[off : off+1<<20])
		}
		h.Sum(nil)
	}
}

// smallReads hands out at most 32 KiB per Read, as a network connection
// or a decompressor does.
type smallReads struct{ r io.Reader }

func (s smallReads) Read(p []byte) (int, error) { return s.r.Read(p[:min(len(p), 32<<10)]) }

// BenchmarkCopy64MB is the way a pull feeds the store: io.Copy from a
// reader that returns 32 KiB at a time.
func BenchmarkCopy64MB(b *testing.B) {
	data := benchData()
	d := digest.FromBytes(data)
	s, err := content.NewStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.SetBytes(benchSize)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w, err := s.Writer(ctx, "bench", benchSize, d)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, smallReads{bytes.NewReader(data)}); err != nil {
			b.Fatal(err)
		}
		if err := w.Commit(ctx, benchSize, d); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := s.Delete(ctx, d); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
