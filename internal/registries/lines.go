package registries

import (
	"fmt"
	"regexp"
	"strings"
)

// The TOML decoder knows where each key is but does not say, except in
// syntax errors. Validation errors and unknown keys still deserve a line
// number, so keyLines re-reads the file with a line-oriented scan that is
// good enough for configuration files as people write them (a key per line,
// table headers on their own line). When it cannot tell, the line is left
// out of the message rather than guessed.

// lineOfKey finds the line (1-based) where key is set, or 0. key is a path
// such as "registry[1].mirror[0].location"; without indices
// ("registry.mirror.location") the first occurrence counts. lines is
// keyLines' result, computed once per file: scanning per key would make a
// file with many bad keys quadratic.
func lineOfKey(lines map[string]int, key string) int {
	// A key the file does not set (a missing location) is reported at
	// the table that lacks it.
	for k := key; k != ""; {
		if l, ok := lines[k]; ok {
			return l
		}
		i := strings.LastIndexByte(k, '.')
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 0
}

var indexRe = regexp.MustCompile(`\[\d+\]`)

func stripIndices(key string) string { return indexRe.ReplaceAllString(key, "") }

// keyLines maps each key path in data, with and without array-of-tables
// indices, to the first line that defines it.
func keyLines(data []byte) map[string]int {
	out := map[string]int{}
	record := func(path string, line int) {
		for _, p := range []string{path, stripIndices(path)} {
			if _, ok := out[p]; !ok {
				out[p] = line
			}
		}
	}
	counts := map[string]int{} // array-of-tables path -> tables seen so far
	// resolve turns a header's dotted name into an indexed path, pointing
	// each array-of-tables component at its latest element.
	resolve := func(parts []string) string {
		path := ""
		for _, p := range parts {
			path = joinKey(path, p)
			if n, ok := counts[path]; ok {
				path = fmt.Sprintf("%s[%d]", path, n-1)
			}
		}
		return path
	}
	table := ""
	for i, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		lineNo := i + 1
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "[["):
			end := strings.Index(line, "]]")
			if end < 0 {
				continue
			}
			parts := splitKey(line[2:end])
			if len(parts) == 0 {
				continue
			}
			parent := resolve(parts[:len(parts)-1])
			arr := joinKey(parent, parts[len(parts)-1])
			n := counts[arr]
			counts[arr] = n + 1
			table = fmt.Sprintf("%s[%d]", arr, n)
			record(table, lineNo)
		case strings.HasPrefix(line, "["):
			end := strings.IndexByte(line, ']')
			if end < 0 {
				continue
			}
			parts := splitKey(line[1:end])
			// A header defines its parents implicitly: [registries.search]
			// is where "registries" starts.
			for j := 1; j <= len(parts); j++ {
				record(resolve(parts[:j]), lineNo)
			}
			table = resolve(parts)
		default:
			k, _, ok := strings.Cut(line, "=")
			if !ok {
				continue
			}
			if parts := splitKey(k); len(parts) > 0 {
				record(joinKey(table, strings.Join(parts, ".")), lineNo)
			}
		}
	}
	return out
}

// splitKey splits a dotted TOML key, removing quotes around each part.
func splitKey(s string) []string {
	var parts []string
	for p := range strings.SplitSeq(s, ".") {
		p = strings.Trim(strings.TrimSpace(p), `"'`)
		if p == "" {
			return nil
		}
		parts = append(parts, p)
	}
	return parts
}

func joinKey(a, b string) string {
	if a == "" {
		return b
	}
	return a + "." + b
}
