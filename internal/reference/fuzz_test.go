package reference

import (
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
)

// FuzzParse checks that no input makes Parse panic or return an unclassified
// error, and that what it accepts prints back to the same value, both as
// written and normalised, and through the familiar form.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"busybox", "busybox:1.36", "user/app", "docker.io/library/busybox:latest",
		"index.docker.io/x", "localhost:5000/a/b:c@" + dgA, "[::1]:5000/x", "[fe80::1]/y",
		"MyRegistry/app", "docker.io/user.name/app", "a.b_c__d---e", "quay.io:99999/a",
		"busybox@" + dg5, "localhost", "localhost:5000", hexA, "a//b", ":t", "@",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Parse(s)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("Parse(%q): error %v is not ErrInvalidArgument", s, err)
			}
			return
		}
		again, err := Parse(n.String())
		if err != nil {
			t.Fatalf("Parse(%q).String() = %q does not parse: %v", s, n.String(), err)
		}
		if again != n {
			t.Fatalf("Parse(%q) = %#v but Parse(String()) = %#v", s, n, again)
		}

		nn, err := ParseNormalized(s)
		if err != nil {
			// Only the added "docker.io/library/" may push it over the limit.
			if len("docker.io/library/"+n.Name()) <= NameTotalLengthMax {
				t.Fatalf("Parse accepted %q but ParseNormalized refused it: %v", s, err)
			}
			return
		}
		if nn.Domain() == "" || (nn.Tag() == "" && nn.Digest() == "") || nn.IsShort() != n.IsShort() {
			t.Fatalf("ParseNormalized(%q) = %#v: missing domain or tag, or IsShort changed", s, nn)
		}
		for _, form := range []string{nn.String(), nn.Familiar()} {
			back, err := ParseNormalized(form)
			if err != nil {
				t.Fatalf("ParseNormalized(%q) gave %q, which does not parse: %v", s, form, err)
			}
			if back.String() != nn.String() {
				t.Fatalf("ParseNormalized(%q) = %q, but %q normalises to %q", s, nn, form, back)
			}
		}
	})
}
