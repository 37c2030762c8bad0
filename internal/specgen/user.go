package specgen

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
)

// resolveUser turns "user[:group]" (names or numbers; "" is root) into ids
// through the image's /etc/passwd and /etc/group, read inside rootfs (an
// image's symlinks cannot point the reads at the host's files). A user's
// supplementary groups are the groups that list it; a numeric user that
// the image does not know is taken as is, with group 0 unless given.
func resolveUser(rootfs, spec string) (uid, gid uint32, groups []uint32, home string, err error) {
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	var root *os.Root
	if rootfs != "" {
		if root, err = os.OpenRoot(rootfs); err != nil {
			return 0, 0, nil, "", fmt.Errorf("user %q: %w", spec, err)
		}
		defer root.Close()
	}
	passwd, err := readEntries(root, "etc/passwd")
	if err != nil {
		return 0, 0, nil, "", err
	}
	group, err := readEntries(root, "etc/group")
	if err != nil {
		return 0, 0, nil, "", err
	}
	name := ""
	if n, ok := number(userPart); ok {
		uid = n
		for _, p := range passwd {
			if len(p) >= 6 && p[2] == userPart {
				name, home = p[0], p[5]
				if g, ok := number(p[3]); ok {
					gid = g
				}
				break
			}
		}
	} else {
		found := false
		for _, p := range passwd {
			if len(p) >= 6 && p[0] == userPart {
				u, ok1 := number(p[2])
				g, ok2 := number(p[3])
				if !ok1 || !ok2 {
					return 0, 0, nil, "", fmt.Errorf("user %q: malformed /etc/passwd entry in the image: %w", userPart, errdefs.ErrInvalidArgument)
				}
				uid, gid, name, home, found = u, g, p[0], p[5], true
				break
			}
		}
		if !found {
			return 0, 0, nil, "", fmt.Errorf("user %q: no such user in the image's /etc/passwd: %w", userPart, errdefs.ErrInvalidArgument)
		}
	}
	if hasGroup {
		if g, ok := number(groupPart); ok {
			gid = g
		} else {
			found := false
			for _, e := range group {
				if len(e) >= 3 && e[0] == groupPart {
					if g, ok := number(e[2]); ok {
						gid, found = g, true
						break
					}
				}
			}
			if !found {
				return 0, 0, nil, "", fmt.Errorf("group %q: no such group in the image's /etc/group: %w", groupPart, errdefs.ErrInvalidArgument)
			}
		}
	} else if name != "" {
		for _, e := range group {
			if len(e) < 4 {
				continue
			}
			for _, member := range strings.Split(e[3], ",") {
				if g, ok := number(e[2]); ok && member == name && g != gid {
					groups = append(groups, g)
				}
			}
		}
	}
	if home == "" && uid == 0 {
		home = "/root"
	}
	return uid, gid, groups, home, nil
}

func number(s string) (uint32, bool) {
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil
}

// readEntries reads a colon-separated file of the image; a missing file
// (or a nil root) has no entries.
func readEntries(root *os.Root, name string) ([][]string, error) {
	if root == nil {
		return nil, nil
	}
	f, err := root.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image's /%s: %w", name, err)
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}
