// Command berthd is the CRI server: a kubelet (or crictl) runs pods on
// berth through it, on the same store as the berth CLI. See docs/cri.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/berthdev/berth/internal/cri"
	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/network"
	"google.golang.org/grpc"
)

var version = "dev"

// config is berthd.toml; a missing file is the defaults, an unknown key
// an error.
type config struct {
	CRI struct {
		PauseImage   string            `toml:"pause_image"`
		Network      string            `toml:"network"`
		CgroupParent string            `toml:"cgroup_parent"`
		Runtimes     map[string]string `toml:"runtimes"`
		// The stream server (exec, attach, port-forward) listens here;
		// port 0 is a free one chosen at start.
		StreamAddress string `toml:"stream_address"`
		StreamPort    int    `toml:"stream_port"`
	} `toml:"cri"`
	Images struct {
		ParallelDownloads int `toml:"parallel_downloads"`
	} `toml:"images"`
	Network struct {
		CNIPluginDirs []string `toml:"cni_plugin_dirs"`
	} `toml:"network"`
	Metrics struct {
		// Address serves Prometheus metrics at /metrics ("": none).
		Address string `toml:"address"`
	} `toml:"metrics"`
}

func loadConfig(path string) (*config, error) {
	c := &config{}
	c.Images.ParallelDownloads = 3
	c.CRI.StreamAddress = "127.0.0.1"
	c.Network.CNIPluginDirs = network.DefaultPluginDirs
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("config %s: unknown keys %v", path, keys)
	}
	return c, nil
}

func main() {
	listen := flag.String("listen", "unix:///run/berth/berthd.sock", "CRI socket")
	confPath := flag.String("config", "/etc/berth/berthd.toml", "configuration file")
	root := flag.String("root", "/var/lib/berth", "store directory (shared with berth)")
	runroot := flag.String("runroot", "/run/berth", "state directory (shared with berth)")
	regConf := flag.String("registries-conf", "", "registries.conf (default /etc/berth/registries.conf, then /etc/containers/registries.conf)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	showVersion := flag.Bool("version", false, "print the version")
	flag.Parse()
	if *showVersion {
		fmt.Println("berthd", version)
		return
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "berthd: --log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	if err := run(*listen, *confPath, *root, *runroot, *regConf); err != nil {
		slog.Error("berthd", "error", err)
		os.Exit(1)
	}
}

func run(listen, confPath, root, runroot, regConf string) error {
	conf, err := loadConfig(confPath)
	if err != nil {
		return err
	}
	sock, ok := strings.CutPrefix(listen, "unix://")
	if !ok {
		return fmt.Errorf("--listen %q: want unix:///path", listen)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	eng, err := engine.Open(ctx, engine.StoreOptions{Root: root, RunRoot: runroot, RegistriesConf: regConf,
		ParallelDownloads: conf.Images.ParallelDownloads, CNIPluginDirs: conf.Network.CNIPluginDirs})
	if err != nil {
		return err
	}
	defer eng.Close()
	cri.Version = version
	srv := cri.New(eng, cri.Config{PauseImage: conf.CRI.PauseImage, Network: conf.CRI.Network,
		Runtimes: conf.CRI.Runtimes, CgroupParent: conf.CRI.CgroupParent})
	if err := os.MkdirAll(filepath.Dir(sock), 0o711); err != nil {
		return err
	}
	os.Remove(sock) // a socket left by a berthd that was killed
	l, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	os.Chmod(sock, 0o600)
	stream, stopStream, err := srv.StartStreaming(net.JoinHostPort(conf.CRI.StreamAddress, strconv.Itoa(conf.CRI.StreamPort)))
	if err != nil {
		return err
	}
	defer stopStream()
	if conf.Metrics.Address != "" {
		addr, stopMetrics, err := srv.ServeMetrics(conf.Metrics.Address)
		if err != nil {
			return fmt.Errorf("metrics on %s: %w", conf.Metrics.Address, err)
		}
		defer stopMetrics()
		slog.Info("berthd metrics", "address", "http://"+addr+"/metrics")
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(cri.MetricsInterceptor, cri.Interceptor))
	srv.Register(g)
	go func() {
		<-ctx.Done()
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			g.Stop()
		}
	}()
	slog.Info("berthd serving", "listen", listen, "stream", stream, "root", root, "runroot", runroot)
	return g.Serve(l)
}
