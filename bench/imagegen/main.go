// Command imagegen writes a deterministic synthetic image as an OCI image
// layout, for pull benchmarks: the same seed gives the same bytes, and so
// the same digests, on every machine. The default is issue 3's benchmark
// image: 5 gzip layers, about 600 MB unpacked in tens of thousands of files
// with a size mix like a distribution's, some compressible (text) and some
// not (binaries), with symlinks, hard links and, in a later layer, whiteouts.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o Options
	out := flag.String("out", "", "OCI layout directory to write (created)")
	flag.Uint64Var(&o.Seed, "seed", 1, "seed: the same seed writes the same image")
	flag.IntVar(&o.Layers, "layers", 5, "number of layers")
	flag.Int64Var(&o.Size, "size", 600<<20, "unpacked bytes in all")
	flag.IntVar(&o.Files, "files", 40000, "number of regular files in all")
	flag.StringVar(&o.Tag, "tag", "latest", "tag in index.json (org.opencontainers.image.ref.name)")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "usage: imagegen -out DIR [-seed N] [-layers N] [-size BYTES] [-files N]")
		os.Exit(2)
	}
	m, err := Generate(*out, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "imagegen:", err)
		os.Exit(1)
	}
	fmt.Printf("%s: manifest %s, %d layers, %d bytes unpacked, %d bytes compressed\n",
		*out, m.Digest, len(m.Layers), m.Unpacked, m.Compressed)
}
