package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/spf13/cobra"
)

func logsCmd() *cobra.Command {
	var follow, timestamps bool
	var tail int
	var sinceFlag string
	cmd := &cobra.Command{
		Use: "logs [flags] CONTAINER", Short: "Show a container's output", Args: cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			c, err := s.meta.GetContainer(ctx, args[0])
			if err != nil {
				return err
			}
			var after time.Time
			if sinceFlag != "" {
				if d, err := time.ParseDuration(sinceFlag); err == nil {
					after = time.Now().Add(-d)
				} else if after, err = time.Parse(time.RFC3339, sinceFlag); err != nil {
					return fmt.Errorf("--since %q: a duration (10m) or an RFC 3339 time: %w", sinceFlag, errdefs.ErrInvalidArgument)
				}
			}
			return printLogs(ctx, s, c, logOptions{follow: follow, timestamps: timestamps, tail: tail, since: after})
		}),
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing until the container exits")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "show each line's time")
	cmd.Flags().IntVarP(&tail, "tail", "n", -1, "only the last N lines")
	cmd.Flags().StringVar(&sinceFlag, "since", "", "only lines since a time or duration ago")
	return cmd
}

type logOptions struct {
	follow, timestamps bool
	tail               int
	since              time.Time
}

// rotated reports whether path is no longer the file f has open.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}

// printLogs reads the CRI log: "<time> <stream> <F|P> <text>", joining
// partial lines.
func printLogs(ctx context.Context, s *store, c metadata.Container, o logOptions) error {
	path := s.eng.LogPath(c)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // never started
	}
	if err != nil {
		return err
	}
	defer func() { f.Close() }() // f is the newest file after a rotation
	type line struct {
		t       string
		stream  string
		text    string
		partial bool // the last of the log, its line never ended
	}
	var pending = map[string]string{}
	var lines []line
	emit := func(l line) {
		w := os.Stdout
		if l.stream == "stderr" {
			w = os.Stderr
		}
		nl := "\n"
		if l.partial {
			nl = ""
		}
		if o.timestamps {
			fmt.Fprintf(w, "%s %s%s", l.t, l.text, nl)
		} else {
			fmt.Fprint(w, l.text, nl)
		}
	}
	// flush gives the partial lines a container left when it ended.
	flush := func() {
		for _, stream := range []string{"stdout", "stderr"} {
			if text, ok := pending[stream]; ok {
				emit(line{stream: stream, text: text, partial: true})
				delete(pending, stream)
			}
		}
	}
	parse := func(raw string, collect bool) {
		parts := strings.SplitN(raw, " ", 4)
		if len(parts) < 4 {
			return
		}
		if !o.since.IsZero() {
			if t, err := time.Parse(time.RFC3339Nano, parts[0]); err == nil && t.Before(o.since) {
				return
			}
		}
		text := pending[parts[1]] + parts[3]
		if parts[2] == "P" {
			pending[parts[1]] = text
			return
		}
		delete(pending, parts[1])
		l := line{t: parts[0], stream: parts[1], text: text}
		if collect {
			lines = append(lines, l)
		} else {
			emit(l)
		}
	}
	r := bufio.NewReader(f)
	readAll := func(collect bool) {
		for {
			raw, err := r.ReadString('\n')
			if err != nil {
				// An incomplete last line is read again when it is whole.
				if raw != "" {
					f.Seek(-int64(len(raw)), io.SeekCurrent)
					r.Reset(f)
				}
				return
			}
			parse(strings.TrimSuffix(raw, "\n"), collect)
		}
	}
	readAll(true)
	if o.tail >= 0 && len(lines) > o.tail {
		lines = lines[len(lines)-o.tail:]
	}
	for _, l := range lines {
		emit(l)
	}
	if !o.follow {
		flush()
		return nil
	}
	for {
		st, err := s.eng.State(ctx, c)
		if err != nil {
			return err
		}
		readAll(false)
		if rotated(f, path) { // the monitor renamed it to .1: the rest is in a new file
			readAll(false)
			nf, err := os.Open(path)
			if err == nil {
				f.Close()
				f = nf
				r.Reset(f)
			}
		}
		if st.Status != engine.StatusRunning {
			readAll(false)
			flush()
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
