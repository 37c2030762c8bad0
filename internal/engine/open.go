package engine

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
	"github.com/berthdev/berth/internal/registries"
	"github.com/berthdev/berth/internal/registry"
	"github.com/berthdev/berth/internal/snapshot"
)

// StoreOptions say where a store is and how to reach registries; berth
// and berthd open one store with the same options.
type StoreOptions struct {
	Root, RunRoot string
	// RegistriesConf is registries.conf ("": the default places).
	RegistriesConf    string
	ParallelDownloads int
	CNIPluginDirs     []string
	// MountProgram mounts the snapshots' overlays in user space
	// (fuse-overlayfs); "" for the kernel's overlayfs.
	MountProgram string
}

// Open opens the store under o.Root, with the engine over it; Close
// closes it.
func Open(ctx context.Context, o StoreOptions) (*Engine, error) {
	cfg, _, err := registries.Find(o.RegistriesConf)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Root, 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", o.Root, err)
	}
	db, err := metadata.Open(ctx, filepath.Join(o.Root, "metadata.db"))
	if err != nil {
		return nil, err
	}
	cs, err := content.NewStore(filepath.Join(o.Root, "content"))
	if err != nil {
		db.Close()
		return nil, err
	}
	snaps, err := snapshot.NewOverlay(filepath.Join(o.Root, "snapshots"), db)
	if err != nil {
		db.Close()
		return nil, err
	}
	snaps.MountProgram = o.MountProgram
	svc := &imagesvc.Service{Root: o.Root, Registry: registry.New(cfg), Content: cs, Snapshots: snaps, Meta: db,
		Parallel: o.ParallelDownloads}
	nets := &network.Manager{ConfDir: filepath.Join(o.Root, "networks"), StateDir: filepath.Join(o.RunRoot, "networks"),
		PluginDirs: o.CNIPluginDirs}
	return &Engine{Images: svc, Meta: db, RunRoot: o.RunRoot, Monitor: MonitorPath(), Networks: nets}, nil
}

// Close closes the store.
func (e *Engine) Close() error { return e.Meta.Close() }

// MonitorPath is berth-monitor next to the running binary, else on $PATH.
func MonitorPath() string {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "berth-monitor")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("berth-monitor"); err == nil {
		return p
	}
	return "berth-monitor"
}
