// Package nsenter is imported only by cmd/berth-runtime for its C
// constructor, which does the namespace work that needs a single thread
// before the Go runtime starts (see nsenter.c).
package nsenter

// #cgo CFLAGS: -O2 -Wall
import "C"
