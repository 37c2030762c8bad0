package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/template"

	"github.com/berthdev/berth/internal/errdefs"
)

// output writes items as --format asks, as podman does: "table" (or "")
// through table, "json" as one indented JSON array, anything else as a Go
// template run once per item (a leading "table " is accepted and dropped).
func output[T any](w io.Writer, format string, items []T, table func(io.Writer, []T) error) error {
	if table == nil && (format == "" || format == "table") {
		format = "json" // inspect-like commands have no table
	}
	switch format {
	case "", "table":
		return table(w, items)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "    ")
		if items == nil {
			items = []T{}
		}
		return enc.Encode(items)
	}
	text := strings.TrimPrefix(format, "table ")
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	tmpl, err := template.New("format").Funcs(template.FuncMap{
		"json": func(v any) (string, error) {
			b, err := json.Marshal(v)
			return string(b), err
		},
		"upper": strings.ToUpper,
		"lower": strings.ToLower,
		"join":  strings.Join,
	}).Parse(text)
	if err != nil {
		return fmt.Errorf("--format: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	for _, it := range items {
		if err := tmpl.Execute(w, it); err != nil {
			return fmt.Errorf("--format: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// printJSON writes v indented, as inspect commands do.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// humanSize is docker's: decimal units, three significant digits.
func humanSize(n int64) string {
	f := float64(n)
	for _, u := range []string{"B", "kB", "MB", "GB", "TB"} {
		if f < 1000 {
			if u == "B" {
				return fmt.Sprintf("%d %s", n, u)
			}
			return fmt.Sprintf("%.3g %s", f, u)
		}
		f /= 1000
	}
	return fmt.Sprintf("%.3g PB", f)
}
