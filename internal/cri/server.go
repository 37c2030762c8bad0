// Package cri is berthd's Kubernetes Container Runtime Interface (v1):
// the RuntimeService and ImageService over internal/engine, on the store
// berth uses. See docs/cri.md.
package cri

import (
	"context"
	"errors"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/kubelet/pkg/cri/streaming"
)

// Version is berthd's version, set by the binary.
var Version = "dev"

// Config is what berthd.toml sets for the CRI.
type Config struct {
	// PauseImage is the sandbox (infra) container's image.
	PauseImage string
	// Network is the berth network pods join.
	Network string
	// Runtimes maps a RuntimeClass handler to an OCI runtime (name or
	// path); "" is the default handler.
	Runtimes map[string]string
	// CgroupParent is the cgroup pods go under when the kubelet names none.
	CgroupParent string
}

// Server implements the CRI.
type Server struct {
	runtime.UnimplementedRuntimeServiceServer
	runtime.UnimplementedImageServiceServer
	eng *engine.Engine
	cfg Config
	// stream serves Exec, Attach and PortForward (streaming.go); nil
	// until StartStreaming.
	stream streaming.Server
}

// New returns a Server over eng.
func New(eng *engine.Engine, cfg Config) *Server {
	if cfg.PauseImage == "" {
		cfg.PauseImage = "registry.k8s.io/pause:3.10"
	}
	if cfg.Network == "" {
		cfg.Network = "berth"
	}
	return &Server{eng: eng, cfg: cfg}
}

// Register adds both services to g, with errors mapped to gRPC codes.
func (s *Server) Register(g *grpc.Server) {
	runtime.RegisterRuntimeServiceServer(g, s)
	runtime.RegisterImageServiceServer(g, s)
}

// Interceptor maps the engine's error classes to gRPC codes: only here,
// at the CRI's edge.
func Interceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	return resp, grpcError(err)
}

func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errdefs.IsNotFound(err):
		code = codes.NotFound
	case errdefs.IsAlreadyExists(err):
		code = codes.AlreadyExists
	case errdefs.IsInvalidArgument(err):
		code = codes.InvalidArgument
	case errdefs.IsFailedPrecond(err):
		code = codes.FailedPrecondition
	case errdefs.IsNotImplemented(err):
		code = codes.Unimplemented
	case errdefs.IsUnavailable(err):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// Version reports the CRI version and berthd's.
func (s *Server) Version(ctx context.Context, req *runtime.VersionRequest) (*runtime.VersionResponse, error) {
	return &runtime.VersionResponse{Version: "0.1.0", RuntimeName: "berth", RuntimeVersion: Version, RuntimeApiVersion: "v1"}, nil
}

// Status reports the runtime and the network ready: both work whenever
// berthd answers (the network is checked on first use, when a pod needs it).
func (s *Server) Status(ctx context.Context, req *runtime.StatusRequest) (*runtime.StatusResponse, error) {
	ready := func(t string) *runtime.RuntimeCondition { return &runtime.RuntimeCondition{Type: t, Status: true} }
	resp := &runtime.StatusResponse{
		Status:          &runtime.RuntimeStatus{Conditions: []*runtime.RuntimeCondition{ready(runtime.RuntimeReady), ready(runtime.NetworkReady)}},
		RuntimeHandlers: s.handlers(),
		Features:        &runtime.RuntimeFeatures{SupplementalGroupsPolicy: false},
	}
	if req.Verbose {
		resp.Info = map[string]string{"config": jsonString(s.cfg)}
	}
	return resp, nil
}

func (s *Server) handlers() []*runtime.RuntimeHandler {
	// Recursive read-only mounts are the "rro" mount option, which
	// berth-runtime, runc 1.1 and crun know.
	features := func() *runtime.RuntimeHandlerFeatures {
		return &runtime.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: true}
	}
	out := []*runtime.RuntimeHandler{{Name: "", Features: features()}}
	for name := range s.cfg.Runtimes {
		if name != "" {
			out = append(out, &runtime.RuntimeHandler{Name: name, Features: features()})
		}
	}
	return out
}

// RuntimeConfig: pods' cgroups are cgroupfs paths.
func (s *Server) RuntimeConfig(ctx context.Context, req *runtime.RuntimeConfigRequest) (*runtime.RuntimeConfigResponse, error) {
	return &runtime.RuntimeConfigResponse{Linux: &runtime.LinuxRuntimeConfiguration{CgroupDriver: runtime.CgroupDriver_CGROUPFS}}, nil
}

// UpdateRuntimeConfig takes the pod CIDR the kubelet sends; berth's
// network has its own subnet, so there is nothing to change.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, req *runtime.UpdateRuntimeConfigRequest) (*runtime.UpdateRuntimeConfigResponse, error) {
	return &runtime.UpdateRuntimeConfigResponse{}, nil
}
