package imagesvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/procfs"
	digest "github.com/opencontainers/go-digest"
)

// A lease protects what an operation writes before an image refers to it.
// It names its owner process (boot, pid, start time): GC treats the lease
// of a process that is gone as dead, so a pull killed with SIGKILL pins
// nothing, while a slow pull in another process is never collected under
// it. The expiry is only a backstop (a store moved to another machine).
const (
	ownerLabel  = "berth.owner"
	leaseExpiry = 24 * time.Hour
)

// self is this process's owner label.
func self() string {
	return owner(os.Getpid())
}

// owner is "bootid/pid/starttime" for a live process, "" if pid is gone.
func owner(pid int) string {
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	start := startTime(pid)
	if start == "" {
		return ""
	}
	return strings.TrimSpace(string(boot)) + "/" + strconv.Itoa(pid) + "/" + start
}

// startTime is pid's start time, which tells it from a later process that
// reuses the pid; "" when it is gone.
func startTime(pid int) string {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return ""
	}
	return strconv.FormatUint(st.StartTime(), 10)
}

// ownerAlive reports whether the process a lease label names still runs.
func ownerAlive(label string) bool {
	parts := strings.Split(label, "/")
	if len(parts) != 3 {
		return false
	}
	pid, err := strconv.Atoi(parts[1])
	if err != nil || pid <= 0 {
		return false
	}
	return owner(pid) == label
}

// lease records, in one transaction, everything an operation is about to
// write; release deletes it once the image record holds them.
func (s *Service) lease(ctx context.Context, what string, blobs []digest.Digest, snapshots []string) (id string, release func(), err error) {
	var b [8]byte
	rand.Read(b[:])
	l := metadata.Lease{
		ID:        what + "-" + hex.EncodeToString(b[:]),
		Expires:   time.Now().Add(leaseExpiry),
		Labels:    map[string]string{ownerLabel: self()},
		Content:   blobs,
		Snapshots: snapshots,
	}
	if _, err := s.Meta.CreateLease(ctx, l); err != nil {
		return "", nil, fmt.Errorf("%s: lease: %w", what, err)
	}
	return l.ID, func() {
		// A lease left behind (context cancelled, store unreachable) is
		// dead once this process is, and GC removes it then.
		s.Meta.DeleteLease(context.WithoutCancel(ctx), l.ID)
	}, nil
}

// dropDeadLeases deletes the leases whose owner process is gone or that
// have expired, and returns their IDs.
func (s *Service) dropDeadLeases(ctx context.Context) ([]string, error) {
	leases, err := s.Meta.ListLeases(ctx)
	if err != nil {
		return nil, err
	}
	var dropped []string
	now := time.Now()
	for _, l := range leases {
		o, owned := l.Labels[ownerLabel]
		expired := !l.Expires.IsZero() && !now.Before(l.Expires)
		if !expired && (!owned || ownerAlive(o)) {
			continue
		}
		if err := s.Meta.DeleteLease(ctx, l.ID); err != nil {
			return dropped, err
		}
		dropped = append(dropped, l.ID)
	}
	return dropped, nil
}
