package cri

import (
	"context"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"google.golang.org/grpc"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// eventPoll is how often GetContainerEvents looks at the store: berthd
// keeps no state in memory (a monitor records each exit in its file), so
// events are the differences between two looks.
const eventPoll = 200 * time.Millisecond

// seen is what one look found of a container or pod.
type seen struct {
	state   runtime.ContainerEventType
	sandbox string // the pod of a container; "" for a pod's own entry
}

// GetContainerEvents streams the containers' and pods' life-cycle events
// (created, started, stopped, deleted) with the pod's status and its
// containers', as the kubelet's evented PLEG reads them, until the client
// goes away.
func (s *Server) GetContainerEvents(req *runtime.GetEventsRequest, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse]) error {
	ctx := stream.Context()
	last, err := s.look(ctx)
	if err != nil {
		return err
	}
	tick := time.NewTicker(eventPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		now, err := s.look(ctx)
		if err != nil {
			return err
		}
		for id, n := range now {
			if o, ok := last[id]; ok && o.state == n.state {
				continue
			}
			if err := s.sendEvent(ctx, stream, id, n); err != nil {
				return err
			}
		}
		for id, o := range last {
			if _, ok := now[id]; !ok {
				o.state = runtime.ContainerEventType_CONTAINER_DELETED_EVENT
				if err := s.sendEvent(ctx, stream, id, o); err != nil {
					return err
				}
			}
		}
		last = now
	}
}

// look reads every CRI container's and pod's state from the store.
func (s *Server) look(ctx context.Context) (map[string]seen, error) {
	all, err := s.eng.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]seen{}
	for _, c := range all {
		kind := c.Labels[labelKind]
		if kind != kindSandbox && kind != kindContainer {
			continue
		}
		st, err := s.eng.State(ctx, c)
		if err != nil {
			continue
		}
		ev := runtime.ContainerEventType_CONTAINER_CREATED_EVENT
		switch st.Status {
		case engine.StatusRunning:
			ev = runtime.ContainerEventType_CONTAINER_STARTED_EVENT
		case engine.StatusExited:
			ev = runtime.ContainerEventType_CONTAINER_STOPPED_EVENT
		}
		out[c.ID] = seen{state: ev, sandbox: c.Labels[labelSandbox]}
	}
	return out, nil
}

func (s *Server) sendEvent(ctx context.Context, stream grpc.ServerStreamingServer[runtime.ContainerEventResponse], id string, n seen) error {
	resp := &runtime.ContainerEventResponse{ContainerId: id, ContainerEventType: n.state, CreatedAt: time.Now().UnixNano()}
	pod := n.sandbox
	if pod == "" {
		pod = id
	}
	if ps, err := s.PodSandboxStatus(ctx, &runtime.PodSandboxStatusRequest{PodSandboxId: pod}); err == nil {
		resp.PodSandboxStatus = ps.Status
	}
	if cs, err := s.podContainers(ctx, pod); err == nil {
		for _, c := range cs {
			if st, err := s.ContainerStatus(ctx, &runtime.ContainerStatusRequest{ContainerId: c.ID}); err == nil {
				resp.ContainersStatuses = append(resp.ContainersStatuses, st.Status)
			}
		}
	}
	return stream.Send(resp)
}
