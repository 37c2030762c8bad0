package network

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
)

// ServeProxy publishes TCP ports of the network namespace at nsPath on
// the host, in user space: a listener per mapping in the caller's network
// namespace, each connection carried to 127.0.0.1:PORT inside nsPath. It
// is an unprivileged user's port mapping where slirp4netns cannot run (no
// usable /dev/net/tun): it needs no device and no privilege on the host,
// only the right to join the namespace. It returns when a listener fails.
func ServeProxy(nsPath string, ports []PortMapping) error {
	errc := make(chan error, len(ports))
	for _, p := range ports {
		if p.Protocol != "tcp" {
			return fmt.Errorf("port %d/%s: the user-space proxy forwards tcp: %w", p.ContainerPort, p.Protocol, errdefs.ErrInvalidArgument)
		}
		host := p.HostIP
		if host == "" {
			host = "0.0.0.0"
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p.HostPort)))
		if err != nil {
			return fmt.Errorf("port %d: %w", p.HostPort, err)
		}
		target := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ContainerPort))
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					errc <- err
					return
				}
				go forward(c, nsPath, target)
			}
		}()
	}
	return <-errc
}

// forward carries one connection into the namespace, half-closing each
// way when its side has sent all it will.
func forward(c net.Conn, nsPath, target string) {
	defer c.Close()
	d, err := DialInNetNS(nsPath, target, 10*time.Second)
	if err != nil {
		return
	}
	defer d.Close()
	done := make(chan struct{})
	go func() {
		io.Copy(d, c)
		if tc, ok := d.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		close(done)
	}()
	io.Copy(c, d)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
	<-done
}
