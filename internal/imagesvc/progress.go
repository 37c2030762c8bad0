package imagesvc

import (
	"io"

	digest "github.com/opencontainers/go-digest"
)

// Progress states of a layer.
const (
	BlobStart  = "start"  // downloading begins (Done: bytes resumed)
	BlobBytes  = "bytes"  // Done bytes of Size so far
	BlobExists = "exists" // stored already: nothing to fetch
	BlobDone   = "done"   // fetched, verified and unpacked
)

// Event is one step of a layer's transfer, for a progress display.
type Event struct {
	Digest digest.Digest
	Size   int64
	Done   int64
	State  string
}

// progress sends e if the Service has a Progress callback.
func (s *Service) progress(e Event) {
	if s.Progress != nil {
		s.Progress(e)
	}
}

// counter reports the bytes read through it.
type counter struct {
	r    io.Reader
	ev   Event
	emit func(Event)
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.ev.Done += int64(n)
		c.emit(c.ev)
	}
	return n, err
}
