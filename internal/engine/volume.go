package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/metadata"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Volumes are directories under <root>/volumes/NAME/_data with a record
// volume.json beside, mounted into containers by name. A volume that is
// new and empty when first mounted gets a copy of what the image has at
// the mount point (as docker and podman do). Anonymous volumes (-v /path,
// or the image's VOLUME) are named by a random ID and go with their
// container on rm -v or --rm.

// Volume is a named volume's record.
type Volume struct {
	Name       string            `json:"name"`
	Driver     string            `json:"driver"`
	Mountpoint string            `json:"mountpoint"`
	Labels     map[string]string `json:"labels,omitempty"`
	Anonymous  bool              `json:"anonymous,omitempty"`
	CreatedAt  time.Time         `json:"createdAt"`
}

// VolumeMount is a volume in a container's config.
type VolumeMount struct {
	Name        string `json:"name"`
	Destination string `json:"destination"`
	ReadOnly    bool   `json:"readOnly,omitempty"`
	Anonymous   bool   `json:"anonymous,omitempty"`
}

var validVolume = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// ValidVolumeName reports whether s names a volume (not a host path).
func ValidVolumeName(s string) bool { return validVolume.MatchString(s) }

func (e *Engine) volumesDir() string { return filepath.Join(e.Images.Root, "volumes") }

func (e *Engine) volumeDir(name string) string { return filepath.Join(e.volumesDir(), name) }

func (e *Engine) volumeLock() (*fsutil.Lock, error) {
	if err := os.MkdirAll(e.volumesDir(), 0o700); err != nil {
		return nil, err
	}
	return fsutil.LockPath(e.volumesDir())
}

// CreateVolume makes a volume; a name that exists is ErrAlreadyExists.
func (e *Engine) CreateVolume(name string, labels map[string]string) (Volume, error) {
	l, err := e.volumeLock()
	if err != nil {
		return Volume{}, err
	}
	defer l.Unlock()
	return e.createVolume(name, labels, false)
}

func (e *Engine) createVolume(name string, labels map[string]string, anonymous bool) (Volume, error) {
	if name == "" {
		name = newID()
	}
	if !ValidVolumeName(name) {
		return Volume{}, fmt.Errorf("volume %q: a name is letters, digits, '_', '.' and '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	dir := e.volumeDir(name)
	if _, err := os.Stat(filepath.Join(dir, "volume.json")); err == nil {
		return Volume{}, fmt.Errorf("volume %s: %w", name, errdefs.ErrAlreadyExists)
	}
	v := Volume{Name: name, Driver: "local", Mountpoint: filepath.Join(dir, "_data"), Labels: labels, Anonymous: anonymous, CreatedAt: time.Now().UTC()}
	if err := os.MkdirAll(v.Mountpoint, 0o755); err != nil {
		return Volume{}, err
	}
	// "new" marks a volume not yet given the image's content.
	if err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o600); err != nil {
		return Volume{}, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return Volume{}, err
	}
	// The record last: a crash before leaves a directory that is no
	// volume (prune removes it), never a record without its directory.
	return v, fsutil.WriteFileAtomic(filepath.Join(dir, "volume.json"), data, 0o600)
}

// GetVolume returns a volume's record.
func (e *Engine) GetVolume(name string) (Volume, error) {
	if !ValidVolumeName(name) {
		return Volume{}, fmt.Errorf("volume %q: %w", name, errdefs.ErrNotFound)
	}
	data, err := os.ReadFile(filepath.Join(e.volumeDir(name), "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return Volume{}, fmt.Errorf("volume %s: %w (berth volume ls lists them)", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return Volume{}, err
	}
	var v Volume
	if err := json.Unmarshal(data, &v); err != nil {
		return Volume{}, fmt.Errorf("volume %s: record: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return v, nil
}

// ListVolumes returns every volume.
func (e *Engine) ListVolumes() ([]Volume, error) {
	ents, err := os.ReadDir(e.volumesDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Volume
	for _, ent := range ents {
		v, err := e.GetVolume(ent.Name())
		if errdefs.IsNotFound(err) {
			continue // half made by a crash
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// VolumeUsers returns the containers that mount volume name.
func (e *Engine) VolumeUsers(ctx context.Context, name string) ([]metadata.Container, error) {
	cs, err := e.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	var out []metadata.Container
	for _, c := range cs {
		cfg, err := config(c)
		if err == nil && slices.ContainsFunc(cfg.Volumes, func(v VolumeMount) bool { return v.Name == name }) {
			out = append(out, c)
		}
	}
	return out, nil
}

// RemoveVolume deletes a volume that no container uses.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	l, err := e.volumeLock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := e.GetVolume(name); err != nil {
		return err
	}
	users, err := e.VolumeUsers(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 {
		return fmt.Errorf("volume %s is used by container %s: remove it first, or use --force: %w", name, users[0].Name, errdefs.ErrFailedPrecond)
	}
	dir := e.volumeDir(name)
	// The record first: a crash then leaves a directory that is no volume.
	if err := os.Remove(filepath.Join(dir, "volume.json")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// PruneVolumes removes the volumes no container uses, and directories a
// crash left without a record; it returns the volumes' names.
func (e *Engine) PruneVolumes(ctx context.Context) ([]string, error) {
	ents, err := os.ReadDir(e.volumesDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []string
	for _, ent := range ents {
		if _, err := e.GetVolume(ent.Name()); errdefs.IsNotFound(err) {
			os.RemoveAll(e.volumeDir(ent.Name()))
			continue
		}
		users, err := e.VolumeUsers(ctx, ent.Name())
		if err != nil {
			return out, err
		}
		if len(users) == 0 {
			if err := e.RemoveVolume(ctx, ent.Name()); err != nil && !errdefs.IsFailedPrecond(err) {
				return out, err
			}
			out = append(out, ent.Name())
		}
	}
	return out, nil
}

// nameVolumes adds anonymous volumes for the image's VOLUMEs that no
// mount covers and names every anonymous volume, before the container is
// recorded: a crash after that leaves a record naming them, and rm -v
// finds them.
func nameVolumes(cfg *Config, imageVolumes map[string]struct{}) error {
	for _, dst := range slices.Sorted(maps.Keys(imageVolumes)) {
		dst = filepath.Clean(dst)
		covered := slices.ContainsFunc(cfg.Volumes, func(v VolumeMount) bool { return filepath.Clean(v.Destination) == dst }) ||
			slices.ContainsFunc(cfg.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == dst })
		if !covered {
			cfg.Volumes = append(cfg.Volumes, VolumeMount{Destination: dst, Anonymous: true})
		}
	}
	for i, v := range cfg.Volumes {
		if !filepath.IsAbs(v.Destination) {
			return fmt.Errorf("volume %s: mount point %q is not absolute: %w", v.Name, v.Destination, errdefs.ErrInvalidArgument)
		}
		if v.Name == "" {
			cfg.Volumes[i].Name, cfg.Volumes[i].Anonymous = newID(), true
		} else if !ValidVolumeName(v.Name) {
			return fmt.Errorf("volume %q: a name is letters, digits, '_', '.' and '-': %w", v.Name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// makeVolumes makes the volumes cfg names that do not exist yet; it
// returns those it made.
func (e *Engine) makeVolumes(cfg Config) ([]string, error) {
	l, err := e.volumeLock()
	if err != nil {
		return nil, err
	}
	defer l.Unlock()
	var made []string
	for _, v := range cfg.Volumes {
		if _, err := e.GetVolume(v.Name); err == nil {
			continue
		}
		if _, err := e.createVolume(v.Name, nil, v.Anonymous); err != nil {
			return made, err
		}
		made = append(made, v.Name)
	}
	return made, nil
}

// volumeMounts are cfg's volumes as bind mounts; a volume still marked
// new gets the image's content at its mount point first.
func (e *Engine) volumeMounts(cfg Config, rootfs string) ([]specs.Mount, error) {
	var ms []specs.Mount
	for _, v := range cfg.Volumes {
		vol, err := e.GetVolume(v.Name)
		if err != nil {
			return nil, err
		}
		if err := e.copyUp(vol, rootfs, v.Destination); err != nil {
			return nil, err
		}
		opts := []string{"rbind", "rprivate"}
		if v.ReadOnly {
			opts = append(opts, "ro")
		}
		ms = append(ms, specs.Mount{Destination: v.Destination, Type: "bind", Source: vol.Mountpoint, Options: opts})
	}
	return ms, nil
}

// copyUp copies what the image has at dst into a new, empty volume, with
// owners, modes and links kept; dst is resolved inside rootfs, so an
// image's symlink cannot point the copy at the host's files.
func (e *Engine) copyUp(v Volume, rootfs, dst string) error {
	mark := filepath.Join(e.volumeDir(v.Name), "new")
	if _, err := os.Stat(mark); err != nil {
		return nil
	}
	src, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return err
	}
	ents, _ := os.ReadDir(v.Mountpoint)
	if fi, err := os.Lstat(src); err == nil && fi.IsDir() && len(ents) == 0 {
		if out, err := exec.Command("cp", "-a", "--", src+"/.", v.Mountpoint+"/").CombinedOutput(); err != nil {
			return fmt.Errorf("volume %s: copying the image's %s: %s: %w", v.Name, dst, strings.TrimSpace(string(out)), err)
		}
		os.Chmod(v.Mountpoint, fi.Mode().Perm())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			os.Lchown(v.Mountpoint, int(st.Uid), int(st.Gid))
		}
	}
	return os.Remove(mark)
}

// AnonymousVolumes are the volumes made for c alone.
func AnonymousVolumes(c metadata.Container) []string {
	cfg, _ := config(c)
	var out []string
	for _, v := range cfg.Volumes {
		if v.Anonymous {
			out = append(out, v.Name)
		}
	}
	return out
}

// ImageVolume is a stored image's files, read-only, at Destination in a
// container (the CRI's image volumes): its directory SubPath, or its root.
type ImageVolume struct {
	Image       string `json:"image"` // the image's ID
	Destination string `json:"destination"`
	SubPath     string `json:"subPath,omitempty"`
}

// imageVolumeDir is where c's image volume i is mounted on the host (a
// read-only view of the image, the store's "mount:" snapshot of this path).
func (e *Engine) imageVolumeDir(id string, i int) string {
	return filepath.Join(e.dir(id), "image-volumes", strconv.Itoa(i))
}

// imageVolumeMounts mounts cfg's image volumes on the host, unless they
// are mounted already (a restart), and binds them read-only, executables
// allowed. A sub-path is resolved inside the image, so that its symlinks
// cannot lead out of it.
func (e *Engine) imageVolumeMounts(ctx context.Context, c metadata.Container, cfg Config) ([]specs.Mount, error) {
	var ms []specs.Mount
	for i, v := range cfg.ImageVolumes {
		target := e.imageVolumeDir(c.ID, i)
		if ok, err := mountinfo.Mounted(target); err != nil || !ok {
			e.Images.Unmount(ctx, target) // a view left by a lost runroot (reboot), if any
			if _, err := e.Images.Mount(ctx, v.Image, target); err != nil {
				return nil, fmt.Errorf("image volume %s: %w", v.Destination, err)
			}
		}
		src := target
		if v.SubPath != "" {
			var err error
			if src, err = securejoin.SecureJoin(target, v.SubPath); err != nil {
				return nil, err
			}
			if _, err := os.Stat(src); err != nil {
				return nil, fmt.Errorf("image volume %s: sub-path %s is not in image %s: %w", v.Destination, v.SubPath, v.Image, errdefs.ErrInvalidArgument)
			}
		}
		ms = append(ms, specs.Mount{Destination: v.Destination, Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "ro"}})
	}
	return ms, nil
}

// releaseImageVolumes unmounts c's image volumes and drops their views.
func (e *Engine) releaseImageVolumes(ctx context.Context, c metadata.Container) error {
	cfg, err := config(c)
	if err != nil {
		return nil
	}
	var errs []error
	for i := range cfg.ImageVolumes {
		if err := e.Images.Unmount(ctx, e.imageVolumeDir(c.ID, i)); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// MountInfo is one of a container's mounts as `inspect` shows it, with
// docker's field names.
type MountInfo struct {
	Type        string `json:"Type"` // bind, volume, tmpfs or image
	Name        string `json:"Name,omitempty"`
	Source      string `json:"Source"`
	Destination string `json:"Destination"`
	RW          bool   `json:"RW"`
	SubPath     string `json:"SubPath,omitempty"`
}

// Mounts lists c's mounts from its record: binds and tmpfs, volumes (with
// their host directory), image mounts (the image's ID).
func (e *Engine) Mounts(c metadata.Container) []MountInfo {
	cfg, err := config(c)
	if err != nil {
		return nil
	}
	out := []MountInfo{}
	for _, m := range cfg.Mounts {
		out = append(out, MountInfo{Type: m.Type, Source: m.Source, Destination: m.Destination, RW: !slices.Contains(m.Options, "ro")})
	}
	for _, v := range cfg.Volumes {
		src := ""
		if vol, err := e.GetVolume(v.Name); err == nil {
			src = vol.Mountpoint
		}
		out = append(out, MountInfo{Type: "volume", Name: v.Name, Source: src, Destination: v.Destination, RW: !v.ReadOnly})
	}
	for _, v := range cfg.ImageVolumes {
		out = append(out, MountInfo{Type: "image", Source: v.Image, Destination: v.Destination, SubPath: v.SubPath})
	}
	return out
}
