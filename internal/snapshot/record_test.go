package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"archive/tar"

	"github.com/berthdev/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// TestRecordRebuild: the record Apply keeps, with the files it wrote,
// gives back the layer stream byte for byte; a file changed since does not
// go unnoticed (the size check here, the diffID check in callers).
func TestRecordRebuild(t *testing.T) {
	requireRoot(t)
	long := strings.Repeat("d/", 80) + "deep.txt" // a PAX long name
	tarball := layer(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n"},
		entry{name: "etc/empty", typ: tar.TypeReg},
		entry{name: "etc/big", typ: tar.TypeReg, body: strings.Repeat("0123456789", 100000)},
		entry{name: "etc/link", typ: tar.TypeLink, link: "etc/passwd"},
		entry{name: "etc/sym", typ: tar.TypeSymlink, link: "passwd"},
		entry{name: "etc/.wh.gone", typ: tar.TypeReg},
		entry{name: "opt/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "opt/.wh..wh..opq", typ: tar.TypeReg},
		entry{name: "opt/x", typ: tar.TypeReg, body: "x", xattrs: map[string]string{"user.k": "v"}, uid: 7, gid: 8},
		entry{name: long, typ: tar.TypeReg, body: "deep"},
	)
	// Trailing zero blocks beyond tar's end marker, as some tools write.
	tarball = append(tarball, make([]byte, 4096)...)
	dir := t.TempDir()
	var rec bytes.Buffer
	got, _, err := Apply(context.Background(), dir, bytes.NewReader(tarball), ApplyOptions{Record: &rec})
	if err != nil {
		t.Fatal(err)
	}
	if got != digest.FromBytes(tarball) {
		t.Fatalf("diffID %s, want %s", got, digest.FromBytes(tarball))
	}
	if rec.Len() > len(tarball)/10 {
		t.Errorf("record of %d bytes for a %d-byte layer: file contents kept?", rec.Len(), len(tarball))
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var out bytes.Buffer
	if err := Rebuild(root, bytes.NewReader(rec.Bytes()), &out); err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(out.Bytes()) != sha256.Sum256(tarball) {
		t.Fatalf("rebuilt %d bytes differ from the %d-byte layer", out.Len(), len(tarball))
	}
	// A file cut short since.
	os.WriteFile(filepath.Join(dir, "etc/big"), []byte("short"), 0o644)
	if err := Rebuild(root, bytes.NewReader(rec.Bytes()), &bytes.Buffer{}); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("rebuild after a file changed: %v", err)
	}
	// A truncated or garbled record.
	for _, bad := range [][]byte{rec.Bytes()[:rec.Len()/2], []byte("Zjunk"), {'F', 5, 200, 1}} {
		if err := Rebuild(root, bytes.NewReader(bad), &bytes.Buffer{}); err == nil {
			t.Errorf("rebuild of a bad record %q succeeded", bad[:min(len(bad), 8)])
		}
	}
}
