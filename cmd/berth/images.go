package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/berthdev/berth/internal/reference"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

// imageRow is one name of one image, as `images` lists it; the JSON and
// template field names are podman's.
type imageRow struct {
	ID           string            `json:"Id"`
	Repository   string            `json:"Repository"`
	Tag          string            `json:"Tag"`
	Digest       string            `json:"Digest"`
	Names        []string          `json:"Names"`
	Created      int64             `json:"Created"`
	CreatedAt    time.Time         `json:"CreatedAt"`
	Size         int64             `json:"Size"`
	Labels       map[string]string `json:"Labels"`
	Dangling     bool              `json:"Dangling"`
	name         string
	CreatedSince string `json:"-"`
}

func imagesCmd(use string, aliases ...string) *cobra.Command {
	var format string
	var filters []string
	var digests, quiet, noTrunc bool
	cmd := &cobra.Command{
		Use:     use + " [flags] [REFERENCE]",
		Aliases: aliases,
		Short:   "List the images in the local store",
		Args:    cobra.MaximumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if len(args) == 1 {
				filters = append(filters, "reference="+args[0])
			}
			rows, err := listImages(ctx, s.svc, filters)
			if err != nil {
				return err
			}
			if quiet {
				seen := map[string]bool{}
				for _, r := range rows {
					if !seen[r.ID] {
						seen[r.ID] = true
						fmt.Println(trunc(r.ID, noTrunc))
					}
				}
				return nil
			}
			return output(os.Stdout, format, rows, func(w io.Writer, rows []imageRow) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprint(tw, "REPOSITORY\tTAG\t")
				if digests {
					fmt.Fprint(tw, "DIGEST\t")
				}
				fmt.Fprint(tw, "IMAGE ID\tCREATED\tSIZE\n")
				for _, r := range rows {
					fmt.Fprintf(tw, "%s\t%s\t", r.Repository, r.Tag)
					if digests {
						fmt.Fprintf(tw, "%s\t", r.Digest)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\n", trunc(r.ID, noTrunc), r.CreatedSince, humanSize(r.Size))
				}
				return tw.Flush()
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "table", "table, json, or a Go template ({{.Repository}}:{{.Tag}})")
	f.StringArrayVarP(&filters, "filter", "f", nil, "reference=PATTERN, dangling=true|false, before=IMAGE, since=IMAGE, label=KEY[=VALUE], id=ID")
	f.BoolVar(&digests, "digests", false, "show the manifest digests")
	f.BoolVarP(&quiet, "quiet", "q", false, "print only image IDs")
	f.BoolVar(&noTrunc, "no-trunc", false, "do not shorten image IDs")
	return cmd
}

func trunc(id string, full bool) string {
	if full {
		return "sha256:" + id
	}
	return shortID(id)
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

// listImages returns one row per name, newest image first, after filters.
func listImages(ctx context.Context, svc *imagesvc.Service, filters []string) ([]imageRow, error) {
	recs, err := svc.Meta.ListImages(ctx, nil)
	if err != nil {
		return nil, err
	}
	var rows []imageRow
	for _, rec := range recs {
		info, err := svc.Inspect(ctx, rec)
		if err != nil {
			return nil, err
		}
		r := imageRow{ID: info.ID, Digest: rec.Target.Digest.String(), Names: info.RepoTags, Size: info.Size,
			Labels: info.Labels, Repository: "<none>", Tag: "<none>", name: rec.Name}
		if info.Created != nil {
			r.CreatedAt = *info.Created
			r.Created = info.Created.Unix()
			r.CreatedSince = since(*info.Created)
		}
		if n, err := reference.Parse(rec.Name); err == nil {
			r.Repository = n.Name()
			if n.Tag() != "" {
				r.Tag = n.Tag()
			}
		} else {
			r.Dangling = true
		}
		rows = append(rows, r)
	}
	slices.SortStableFunc(rows, func(a, b imageRow) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	for _, f := range filters {
		keep, err := imageFilter(ctx, svc, f)
		if err != nil {
			return nil, err
		}
		rows = slices.DeleteFunc(rows, func(r imageRow) bool { return !keep(r) })
	}
	return rows, nil
}

func imageFilter(ctx context.Context, svc *imagesvc.Service, f string) (func(imageRow) bool, error) {
	k, v, ok := strings.Cut(f, "=")
	if !ok {
		return nil, fmt.Errorf("--filter %q: want KEY=VALUE: %w", f, errdefs.ErrInvalidArgument)
	}
	switch k {
	case "reference":
		return func(r imageRow) bool {
			if r.Dangling {
				return false
			}
			n, err := reference.Parse(r.name)
			if err != nil {
				return false
			}
			for _, cand := range []string{n.String(), n.Familiar(), n.Name(), n.NameOnly().Familiar()} {
				if ok, _ := path.Match(v, cand); ok {
					return true
				}
			}
			// A pattern without a tag matches any tag of the repository.
			fam := strings.TrimSuffix(n.Familiar(), ":"+n.Tag())
			ok, _ := path.Match(v, fam)
			return ok
		}, nil
	case "dangling":
		want := v == "true"
		if v != "true" && v != "false" {
			return nil, fmt.Errorf("--filter %q: dangling is true or false: %w", f, errdefs.ErrInvalidArgument)
		}
		return func(r imageRow) bool { return r.Dangling == want }, nil
	case "before", "since":
		ref, err := svc.LookupOne(ctx, v)
		if err != nil {
			return nil, fmt.Errorf("--filter %s: %w", f, err)
		}
		info, err := svc.Inspect(ctx, ref)
		if err != nil || info.Created == nil {
			return nil, fmt.Errorf("--filter %s: the image has no creation time: %w", f, errdefs.ErrInvalidArgument)
		}
		t := *info.Created
		if k == "before" {
			return func(r imageRow) bool { return r.CreatedAt.Before(t) }, nil
		}
		return func(r imageRow) bool { return r.CreatedAt.After(t) }, nil
	case "label":
		lk, lv, hasV := strings.Cut(v, "=")
		return func(r imageRow) bool {
			got, ok := r.Labels[lk]
			return ok && (!hasV || got == lv)
		}, nil
	case "id":
		id := strings.TrimPrefix(v, "sha256:")
		return func(r imageRow) bool { return strings.HasPrefix(r.ID, id) }, nil
	}
	return nil, fmt.Errorf("--filter %q: unknown filter %q (reference, dangling, before, since, label, id): %w", f, k, errdefs.ErrInvalidArgument)
}

// since is docker's "3 days ago".
func since(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Second:
		return "Less than a second ago"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	case d < 14*24*time.Hour:
		return plural(int(d.Hours()/24), "day") + " ago"
	case d < 60*24*time.Hour:
		return plural(int(d.Hours()/24/7), "week") + " ago"
	case d < 2*365*24*time.Hour:
		return plural(int(d.Hours()/24/30), "month") + " ago"
	}
	return plural(int(d.Hours()/24/365), "year") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		if unit == "hour" {
			return "An hour"
		}
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

func parsePlatform(s string) (*v1.Platform, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return nil, fmt.Errorf("--platform %q: want os/arch[/variant]: %w", s, errdefs.ErrInvalidArgument)
	}
	p := &v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
