package cri

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Prometheus metrics of berthd: each CRI call's count and duration by
// method and gRPC code, and the pods, containers and images of the store
// at scrape time.
var requestDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "berthd_cri_request_duration_seconds",
	Help:    "Duration of CRI calls, by method and gRPC code.",
	Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
}, []string{"method", "code"})

// MetricsInterceptor times each call.
func MetricsInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	requestDuration.WithLabelValues(methodName(info.FullMethod), status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

func methodName(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '/' {
			return full[i+1:]
		}
	}
	return full
}

// storeCollector counts the store's objects when scraped.
type storeCollector struct{ s *Server }

var (
	podsDesc       = prometheus.NewDesc("berthd_pods", "Pod sandboxes, by state.", []string{"state"}, nil)
	containersDesc = prometheus.NewDesc("berthd_containers", "CRI containers, by state.", []string{"state"}, nil)
	imagesDesc     = prometheus.NewDesc("berthd_images", "Image names in the store.", nil, nil)
)

func (c storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- podsDesc
	ch <- containersDesc
	ch <- imagesDesc
}

func (c storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx := context.Background()
	if pods, err := c.s.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{}); err == nil {
		counts := map[string]float64{}
		for _, p := range pods.Items {
			counts[p.State.String()]++
		}
		for state, n := range counts {
			ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, n, state)
		}
	}
	if ctrs, err := c.s.ListContainers(ctx, &runtime.ListContainersRequest{}); err == nil {
		counts := map[string]float64{}
		for _, ctr := range ctrs.Containers {
			counts[ctr.State.String()]++
		}
		for state, n := range counts {
			ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, n, state)
		}
	}
	if imgs, err := c.s.eng.Meta.ListImages(ctx, nil); err == nil {
		ch <- prometheus.MustNewConstMetric(imagesDesc, prometheus.GaugeValue, float64(len(imgs)))
	}
}

// ServeMetrics serves /metrics on addr until stop is called; it returns
// the address bound.
func (s *Server) ServeMetrics(addr string) (string, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(requestDuration, storeCollector{s}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return l.Addr().String(), func() { srv.Close() }, nil
}
