package engine

import (
	"github.com/berthdev/berth/internal/metadata"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Labels of the records of CRI pods (their infra containers) and of their
// containers: berthd sets them, berth ps shows them.
const (
	LabelKind    = "io.berth.cri.kind" // "sandbox" or "container"
	LabelSandbox = "io.berth.cri.sandbox"
)

// PodOf is the pod a record belongs to: its own ID for a pod's infra
// container, its pod's for a CRI container, "" for the others.
func PodOf(c metadata.Container) string {
	switch c.Labels[LabelKind] {
	case "container":
		return c.Labels[LabelSandbox]
	case "sandbox":
		return c.ID
	}
	return ""
}

// NetJoin is the network mode of a container that joins another's
// namespace (a CRI pod's): PodOptions.NetNS.
const NetJoin = "join"

// PodOptions are what a CRI pod's containers (and its infra container)
// are made with beyond a berth run's options. They are recorded with the
// container, so its bundle can be made again from the record.
type PodOptions struct {
	// NetNS is the namespace a NetJoin container joins.
	NetNS string `json:"netns,omitempty"`
	// IPC, UTS and PID: "" for its own, "host", or a namespace's path.
	IPC            string                `json:"ipc,omitempty"`
	UTS            string                `json:"uts,omitempty"`
	PID            string                `json:"pid,omitempty"`
	Devices        []specs.LinuxDevice   `json:"devices,omitempty"`
	Sysctls        map[string]string     `json:"sysctls,omitempty"`
	OOMScoreAdj    *int                  `json:"oomScoreAdj,omitempty"`
	AdditionalGIDs []uint32              `json:"additionalGids,omitempty"`
	MaskedPaths    *[]string             `json:"maskedPaths,omitempty"`
	ReadonlyPaths  *[]string             `json:"readonlyPaths,omitempty"`
	Resources      *specs.LinuxResources `json:"resources,omitempty"`
	Annotations    map[string]string     `json:"annotations,omitempty"`
	// RootfsPropagation is the root mount's propagation ("" for the runtime's).
	RootfsPropagation string `json:"rootfsPropagation,omitempty"`
	// Files are bound over the /etc files berth writes (a pod's
	// containers share its hosts, resolv.conf and hostname).
	Files map[string]string `json:"files,omitempty"`
}

// namespaces is the spec's namespaces to share.
func (p *PodOptions) namespaces() map[specs.LinuxNamespaceType]string {
	if p == nil {
		return nil
	}
	m := map[specs.LinuxNamespaceType]string{}
	for t, v := range map[specs.LinuxNamespaceType]string{specs.IPCNamespace: p.IPC, specs.UTSNamespace: p.UTS, specs.PIDNamespace: p.PID} {
		if v != "" {
			m[t] = v
		}
	}
	return m
}

// Dir is the container's directory (its bundle, the files berth writes
// for it): a pod's containers bind its infra container's /etc files.
func (e *Engine) Dir(id string) string { return e.dir(id) }
