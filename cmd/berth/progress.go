package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/imagesvc"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// progress shows layer transfers on w: bars redrawn in place on a
// terminal, one plain line per finished layer otherwise (logs, CI).
type progress struct {
	mu     sync.Mutex
	w      io.Writer
	tty    bool
	order  []digest.Digest
	layers map[digest.Digest]imagesvc.Event
	drawn  int // lines drawn last time, to move back over
	stop   chan struct{}
	done   sync.WaitGroup
	once   sync.Once
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// newProgress starts a display on standard error; Close ends it.
func newProgress() *progress {
	p := &progress{w: os.Stderr, tty: isTerminal(os.Stderr), layers: map[digest.Digest]imagesvc.Event{}, stop: make(chan struct{})}
	if p.tty {
		p.done.Add(1)
		go func() {
			defer p.done.Done()
			t := time.NewTicker(150 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-p.stop:
					return
				case <-t.C:
					p.mu.Lock()
					p.draw()
					p.mu.Unlock()
				}
			}
		}()
	}
	return p
}

// Event is the imagesvc.Service.Progress callback.
func (p *progress) Event(e imagesvc.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.layers[e.Digest]; !ok {
		p.order = append(p.order, e.Digest)
	}
	p.layers[e.Digest] = e
	if !p.tty {
		switch e.State {
		case imagesvc.BlobDone:
			fmt.Fprintf(p.w, "Copying blob %s done (%s)\n", short(e.Digest), humanSize(e.Size))
		case imagesvc.BlobExists:
			fmt.Fprintf(p.w, "Copying blob %s skipped: already exists\n", short(e.Digest))
		}
	}
}

// Close draws the final state and stops redrawing; later calls do nothing.
func (p *progress) Close() {
	p.once.Do(p.close)
}

func (p *progress) close() {
	close(p.stop)
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty {
		p.draw()
	}
}

func short(d digest.Digest) string {
	return d.Algorithm().String() + ":" + shortID(d.Encoded())
}

// draw rewrites every layer's line in place.
func (p *progress) draw() {
	var b strings.Builder
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", p.drawn)
	}
	for _, d := range p.order {
		e := p.layers[d]
		var state string
		switch e.State {
		case imagesvc.BlobExists:
			state = "skipped: already exists"
		case imagesvc.BlobDone:
			state = "done " + humanSize(e.Size)
		default:
			const width = 30
			n := 0
			if e.Size > 0 {
				n = int(min(e.Done, e.Size) * width / e.Size)
			}
			bar := strings.Repeat("=", n)
			if n < width {
				bar += ">" + strings.Repeat(" ", width-n-1)
			}
			state = fmt.Sprintf("[%s] %s / %s", bar, humanSize(e.Done), humanSize(e.Size))
		}
		fmt.Fprintf(&b, "\x1b[KCopying blob %s %s\n", short(d), state)
	}
	p.drawn = len(p.order)
	io.WriteString(p.w, b.String())
}
