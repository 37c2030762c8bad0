package snapshot

import (
	"archive/tar"
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
)

// A layer record is what it takes, with the unpacked files, to rebuild a
// layer's tar bit for bit (and so its diffID): every byte of the stream
// except the contents of regular files, which are named instead. Apply
// writes it as it unpacks (ApplyOptions.Record); Rebuild reads it back.
// Frames: 'S' uvarint(n) n raw bytes | 'F' uvarint(size) uvarint(len) name
// | 'E' at the end. No checksums: the rebuilt stream is checked against
// the diffID as a whole.

const maxSegment = 1 << 20

// recorder sits between the layer stream and the tar reader.
type recorder struct {
	r    io.Reader
	w    *bufio.Writer
	seg  []byte
	file bool  // reading a regular file's content, which is not kept
	n    int64 // raw bytes read in file mode
	err  error
}

func newRecorder(r io.Reader, w io.Writer) *recorder {
	return &recorder{r: r, w: bufio.NewWriterSize(w, 64<<10)}
}

func (c *recorder) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.file {
		c.n += int64(n)
	} else if n > 0 {
		c.seg = append(c.seg, p[:n]...)
		if len(c.seg) >= maxSegment {
			c.flush()
		}
	}
	return n, err
}

func (c *recorder) frame(kind byte, nums []uint64, data []byte) {
	if c.err != nil {
		return
	}
	c.w.WriteByte(kind)
	var b [binary.MaxVarintLen64]byte
	for _, n := range nums {
		c.w.Write(b[:binary.PutUvarint(b[:], n)])
	}
	_, c.err = c.w.Write(data)
}

func (c *recorder) flush() {
	if len(c.seg) > 0 {
		c.frame('S', []uint64{uint64(len(c.seg))}, c.seg)
		c.seg = c.seg[:0]
	}
}

// startFile is called before a regular file's content is read.
func (c *recorder) startFile() {
	c.flush()
	c.file, c.n = true, 0
}

// endFile records that name's size bytes came next in the stream.
func (c *recorder) endFile(name string, size int64) error {
	c.file = false
	if c.n != size {
		return fmt.Errorf("%q: %d bytes in the stream for %d of content: %w", name, c.n, size, errdefs.ErrInvalidArgument)
	}
	c.frame('F', []uint64{uint64(size), uint64(len(name))}, []byte(name))
	return c.err
}

// close writes the end frame.
func (c *recorder) close() error {
	c.flush()
	c.frame('E', nil, nil)
	if c.err != nil {
		return c.err
	}
	return c.w.Flush()
}

// sparse reports a file whose stream bytes are not its content (GNU or
// PAX sparse): its bytes are kept in the record as they are.
func sparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// Rebuild writes the layer tar that record (from Apply) describes to out,
// reading file contents below root (the snapshot's fs directory; nothing
// outside it can be reached). The caller checks the result's digest.
func Rebuild(root *os.Root, record io.Reader, out io.Writer) error {
	br := bufio.NewReaderSize(record, 64<<10)
	for {
		kind, err := br.ReadByte()
		if err != nil {
			return fmt.Errorf("layer record: %v: %w", noEOF(err), errdefs.ErrInvalidArgument)
		}
		switch kind {
		case 'E':
			return nil
		case 'S':
			n, err := binary.ReadUvarint(br)
			if err != nil || n > maxSegment {
				return fmt.Errorf("layer record: bad segment length: %w", errdefs.ErrInvalidArgument)
			}
			if _, err := io.CopyN(out, br, int64(n)); err != nil {
				return fmt.Errorf("layer record: %v: %w", noEOF(err), errdefs.ErrInvalidArgument)
			}
		case 'F':
			size, err1 := binary.ReadUvarint(br)
			nlen, err2 := binary.ReadUvarint(br)
			if err1 != nil || err2 != nil || nlen > 1<<16 {
				return fmt.Errorf("layer record: bad file frame: %w", errdefs.ErrInvalidArgument)
			}
			name := make([]byte, nlen)
			if _, err := io.ReadFull(br, name); err != nil {
				return fmt.Errorf("layer record: %v: %w", noEOF(err), errdefs.ErrInvalidArgument)
			}
			f, err := root.Open(string(name))
			if err != nil {
				return fmt.Errorf("layer file %q: %w", name, err)
			}
			_, err = io.CopyN(out, f, int64(size))
			f.Close()
			if err != nil {
				return fmt.Errorf("layer file %q: %v (was it changed?): %w", name, noEOF(err), errdefs.ErrFailedPrecond)
			}
		default:
			return fmt.Errorf("layer record: unknown frame %q: %w", kind, errdefs.ErrInvalidArgument)
		}
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
