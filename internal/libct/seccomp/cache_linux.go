//go:build linux && cgo

package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// CompileCached is Compile with a cache of compiled programs in dir,
// keyed by the profile, the architecture and libseccomp's version:
// libseccomp takes about 15 ms over the default profile of podman or
// berth, which every container start would pay (crun keeps such a cache
// too). A cache file that does not decode is compiled again; the cache
// lives under the runtime's root, which only root may write.
func CompileCached(cfg *specs.LinuxSeccomp, dir string) (*Program, error) {
	if cfg == nil {
		return nil, nil
	}
	key, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("v1\x00"+runtime.GOARCH+"\x00"+LibseccompVersion()+"\x00"), key...))
	path := filepath.Join(dir, hex.EncodeToString(sum[:]))
	if data, err := os.ReadFile(path); err == nil {
		if p, err := decodeProgram(data); err == nil {
			return p, nil
		}
	}
	p, err := Compile(cfg)
	if err != nil {
		return nil, err
	}
	if os.MkdirAll(dir, 0o700) == nil {
		if f, err := os.CreateTemp(dir, ".tmp-*"); err == nil {
			_, werr := f.Write(p.encode())
			if f.Close() != nil || werr != nil || os.Rename(f.Name(), path) != nil {
				os.Remove(f.Name())
			}
		}
	}
	return p, nil
}

// encode is the cache's format: flags (8 bytes), notify (1), then the
// instructions as the kernel takes them.
func (p *Program) encode() []byte {
	b := make([]byte, 9, 9+8*len(p.insns))
	binary.NativeEndian.PutUint64(b, uint64(p.flags))
	if p.notify {
		b[8] = 1
	}
	for _, in := range p.insns {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

func decodeProgram(b []byte) (*Program, error) {
	if len(b) < 9 {
		return nil, os.ErrInvalid
	}
	insns, err := decodeBPF(b[9:])
	if err != nil {
		return nil, err
	}
	return &Program{insns: insns, flags: uintptr(binary.NativeEndian.Uint64(b)), notify: b[8] == 1}, nil
}

// MarshalJSON carries a compiled program to the container's init.
func (p *Program) MarshalJSON() ([]byte, error) { return json.Marshal(p.encode()) }

// UnmarshalJSON reads what MarshalJSON wrote.
func (p *Program) UnmarshalJSON(data []byte) error {
	var b []byte
	if err := json.Unmarshal(data, &b); err != nil {
		return err
	}
	q, err := decodeProgram(b)
	if err != nil {
		return err
	}
	*p = *q
	return nil
}
