package network

import (
	"cmp"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
)

// ServeProxy publishes TCP and UDP ports of the network namespace at
// nsPath on the host, in user space, as podman's rootlessport does: a
// listener per mapping in the caller's network namespace, each connection
// (each UDP peer) carried to 127.0.0.1:PORT inside nsPath. It is an
// unprivileged user's port mapping: it needs no device and no privilege
// on the host, only the right to join the namespace. It returns when a
// listener fails.
func ServeProxy(nsPath string, ports []PortMapping) error {
	errc := make(chan error, len(ports))
	for _, p := range ports {
		addr := net.JoinHostPort(cmp.Or(p.HostIP, "0.0.0.0"), strconv.Itoa(p.HostPort))
		target := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.ContainerPort))
		switch p.Protocol {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("port %d/tcp: %w", p.HostPort, err)
			}
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
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return fmt.Errorf("port %d/udp: %w", p.HostPort, err)
			}
			go func() { errc <- relayUDP(pc, nsPath, target) }()
		default:
			return fmt.Errorf("port %d/%s: the user-space proxy forwards tcp and udp: %w", p.ContainerPort, p.Protocol, errdefs.ErrInvalidArgument)
		}
	}
	return <-errc
}

// udpIdle ends a UDP peer's flow after this long without a reply.
const udpIdle = 60 * time.Second

// relayUDP carries datagrams from each host peer through a socket of its
// own connected to target inside nsPath, and the replies back to the
// peer from the published port.
func relayUDP(pc net.PacketConn, nsPath, target string) error {
	var mu sync.Mutex
	flows := map[string]net.Conn{}
	buf := make([]byte, 64<<10)
	for {
		n, peer, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		mu.Lock()
		c := flows[peer.String()]
		mu.Unlock()
		if c == nil {
			if c, err = DialInNetNS(nsPath, "udp", target, 5*time.Second); err != nil {
				continue // dropped, as a datagram may be
			}
			mu.Lock()
			flows[peer.String()] = c
			mu.Unlock()
			go func() {
				b := make([]byte, 64<<10)
				for {
					c.SetReadDeadline(time.Now().Add(udpIdle))
					n, err := c.Read(b)
					if err != nil {
						break
					}
					pc.WriteTo(b[:n], peer)
				}
				mu.Lock()
				delete(flows, peer.String())
				mu.Unlock()
				c.Close()
			}()
		}
		c.Write(buf[:n])
	}
}

// forward carries one connection into the namespace, half-closing each
// way when its side has sent all it will.
func forward(c net.Conn, nsPath, target string) {
	defer c.Close()
	d, err := DialInNetNS(nsPath, "tcp", target, 10*time.Second)
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
