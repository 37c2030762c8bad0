// Command runtimebench times OCI runtimes side by side on one bundle:
// `run` of the bundle's process, and create+start+delete. Runs are
// interleaved (one of each runtime per round) so that drift on the machine
// hits all of them alike; it prints medians and ratios to the first runtime.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

func main() {
	n := flag.Int("n", 30, "runs per runtime and mode")
	bundle := flag.String("bundle", "", "bundle directory (config.json + rootfs)")
	flag.Parse()
	runtimes := flag.Args()
	if *bundle == "" || len(runtimes) == 0 {
		fmt.Fprintln(os.Stderr, "usage: runtimebench -bundle DIR [-n N] RUNTIME...")
		os.Exit(2)
	}
	state, err := os.MkdirTemp("", "runtimebench")
	if err != nil {
		fail(err)
	}
	defer os.RemoveAll(state)
	modes := []string{"run", "create+start+delete", "create", "start", "delete"}
	times := map[string]map[string][]time.Duration{}
	for _, m := range modes {
		times[m] = map[string][]time.Duration{}
	}
	for i := 0; i < *n+1; i++ {
		for _, rt := range runtimes {
			root := filepath.Join(state, filepath.Base(rt))
			for _, m := range modes {
				id := fmt.Sprintf("bench-%d", i)
				if m == "create" || m == "start" || m == "delete" {
					continue // recorded by create+start+delete
				}
				d, err := once(rt, root, *bundle, id, m)
				if err != nil {
					fail(fmt.Errorf("%s %s: %w", rt, m, err))
				}
				if i > 0 { // the first round warms caches
					times[m][rt] = append(times[m][rt], d[0])
					if m == "create+start+delete" {
						for j, step := range []string{"create", "start", "delete"} {
							times[step][rt] = append(times[step][rt], d[j+1])
						}
					}
				}
			}
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "runtime\t")
	for _, m := range modes {
		fmt.Fprintf(w, "%s median\tp90\tratio\t", m)
	}
	fmt.Fprintln(w)
	for _, rt := range runtimes {
		fmt.Fprintf(w, "%s\t", filepath.Base(rt))
		for _, m := range modes {
			med, p90 := stats(times[m][rt])
			base, _ := stats(times[m][runtimes[0]])
			fmt.Fprintf(w, "%.1f ms\t%.1f ms\t%.2f\t", ms(med), ms(p90), float64(med)/float64(base))
		}
		fmt.Fprintln(w)
	}
	w.Flush()
	fmt.Printf("(%d runs each after one warm-up round; ratio = median / median of %s)\n", *n, filepath.Base(runtimes[0]))
}

// once runs one mode and returns its total time, then each step's.
func once(rt, root, bundle, id, mode string) ([]time.Duration, error) {
	out, err := os.CreateTemp("", "runtimebench-out")
	if err != nil {
		return nil, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	start := time.Now()
	var steps [][]string
	if mode == "run" {
		steps = [][]string{{"run", "--bundle", bundle, id}}
	} else {
		steps = [][]string{{"create", "--bundle", bundle, id}, {"start", id}, {"delete", "--force", id}}
	}
	times := []time.Duration{0}
	for _, s := range steps {
		t := time.Now()
		cmd := exec.Command(rt, append([]string{"--root", root}, s...)...)
		// A file, not a pipe: a created container holds its stdio, and
		// waiting for a pipe's EOF would wait for the container.
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Run(); err != nil {
			out.Seek(0, 0)
			msg, _ := io.ReadAll(out)
			return nil, fmt.Errorf("%s: %v: %s", strings.Join(s, " "), err, msg)
		}
		times = append(times, time.Since(t))
	}
	times[0] = time.Since(start)
	return times, nil
}

func stats(d []time.Duration) (median, p90 time.Duration) {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2], s[len(s)*9/10]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func fail(err error) {
	fmt.Fprintln(os.Stderr, "runtimebench:", err)
	os.Exit(1)
}
