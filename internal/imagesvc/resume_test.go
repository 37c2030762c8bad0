package imagesvc

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
)

// TestPullResume: a pull whose layer download breaks half-way keeps what
// it got; the next pull asks the registry for the rest only (Range), or,
// from a registry that ignores ranges, skips what it has, and the image is
// whole either way.
func TestPullResume(t *testing.T) {
	for _, honour := range []bool{true, false} {
		t.Run(fmt.Sprintf("ranges=%v", honour), func(t *testing.T) {
			s := newService(t)
			ctx := context.Background()
			var mu sync.Mutex
			var cut string // the blob path whose first GET breaks
			served := map[string]int{}
			sizes := map[string]int{}
			var ranges []string
			ref := pushRandom(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					whole := r.Clone(r.Context())
					whole.Header.Del("Range") // the wrapper does ranges, or not
					h.ServeHTTP(rec, whole)
					body := rec.Body.Bytes()
					mu.Lock()
					first := cut == "" && len(body) > 1000
					if first {
						cut = r.URL.Path
					}
					sizes[r.URL.Path] = len(body)
					rg := r.Header.Get("Range")
					if rg != "" {
						ranges = append(ranges, rg)
					}
					mu.Unlock()
					start := 0
					if rg != "" && honour {
						fmt.Sscanf(rg, "bytes=%d-", &start)
						w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
						w.Header().Set("Content-Length", fmt.Sprint(len(body)-start))
						w.WriteHeader(http.StatusPartialContent)
					} else {
						w.Header().Set("Content-Length", fmt.Sprint(len(body)))
						w.WriteHeader(http.StatusOK)
					}
					if first {
						w.Write(body[:len(body)/2])
						w.(http.Flusher).Flush()
						mu.Lock()
						served[r.URL.Path] += len(body) / 2
						mu.Unlock()
						panic(http.ErrAbortHandler) // the connection breaks
					}
					w.Write(body[start:])
					mu.Lock()
					served[r.URL.Path] += len(body) - start
					mu.Unlock()
				})
			})
			if _, err := s.Pull(ctx, ref, nil); err == nil {
				t.Fatal("a pull whose layer broke off succeeded")
			}
			st, err := s.Content.Status(ctx, digestOfPath(cut).String())
			if err != nil || st.Offset == 0 {
				t.Fatalf("no partial download kept: %+v %v", st, err)
			}
			img, err := s.Pull(ctx, ref, nil)
			if err != nil {
				t.Fatalf("pull after the break: %v", err)
			}
			if len(ranges) == 0 {
				t.Fatal("the second pull did not ask for the rest only")
			}
			if rep, err := s.Check(ctx, CheckOptions{}); err != nil || len(rep.Problems) > 0 {
				t.Fatalf("check: %+v %v", rep, err)
			}
			ra, err := s.Content.ReaderAt(ctx, img.Target.Digest)
			if err != nil {
				t.Fatal(err)
			}
			ra.Close()
			if honour {
				mu.Lock()
				total, size := served[cut], sizes[cut]
				mu.Unlock()
				if total > size+size/10 {
					t.Errorf("served %d bytes of a %d-byte blob over two pulls: the rest was fetched again", total, size)
				}
			}
		})
	}
}

// digestOfPath is the digest at the end of a /v2/.../blobs/DIGEST path.
func digestOfPath(p string) digest.Digest {
	return digest.Digest(p[strings.LastIndex(p, "/")+1:])
}
