package registry

import (
	"io"
	"log"

	"github.com/berthdev/berth/internal/reference"
)

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }

func parseRef(s string) (reference.Named, error) { return reference.Parse(s) }
