package network

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestServeProxy publishes a TCP and a UDP port of a new network
// namespace (servers on its loopback only) on the host's loopback: a TCP
// exchange with a half-close, datagrams of two host peers each answered
// to its own, and an unknown protocol refused.
func TestServeProxy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces")
	}
	ns := filepath.Join(t.TempDir(), "netns")
	if err := NewNetNS(ns); err != nil {
		t.Fatal(err)
	}
	defer RemoveNetNS(ns)
	var l net.Listener
	var pc net.PacketConn
	if err := InNetNS(ns, func() (err error) {
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	defer pc.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			got, _ := io.ReadAll(c) // until the client's half-close
			fmt.Fprintf(c, "tcp:%s", got)
			c.Close()
		}
	}()
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo([]byte("udp:"+string(b[:n])), from)
		}
	}()
	free := func(network string) int {
		if network == "udp" {
			c, _ := net.ListenPacket("udp", "127.0.0.1:0")
			defer c.Close()
			return c.LocalAddr().(*net.UDPAddr).Port
		}
		c, _ := net.Listen("tcp", "127.0.0.1:0")
		defer c.Close()
		return c.Addr().(*net.TCPAddr).Port
	}
	tcpPort, udpPort := free("tcp"), free("udp")
	go ServeProxy(ns, []PortMapping{
		{HostIP: "127.0.0.1", HostPort: tcpPort, ContainerPort: l.Addr().(*net.TCPAddr).Port, Protocol: "tcp"},
		{HostIP: "127.0.0.1", HostPort: udpPort, ContainerPort: pc.LocalAddr().(*net.UDPAddr).Port, Protocol: "udp"},
	})
	var c net.Conn
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tcpPort)); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprint(c, "hello")
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "tcp:hello" {
		t.Errorf("tcp through the proxy: %q", got)
	}
	c.Close()
	for _, peer := range []string{"one", "two"} {
		u, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", udpPort))
		if err != nil {
			t.Fatal(err)
		}
		defer u.Close()
		u.SetReadDeadline(time.Now().Add(5 * time.Second))
		for i := range 2 {
			fmt.Fprintf(u, "%s-%d", peer, i)
			b := make([]byte, 1500)
			n, err := u.Read(b)
			if got, want := string(b[:n]), fmt.Sprintf("udp:%s-%d", peer, i); got != want {
				t.Errorf("udp through the proxy, peer %s: %q (%v), want %q", peer, got, err, want)
			}
		}
	}
	if err := ServeProxy(ns, []PortMapping{{HostPort: free("tcp"), ContainerPort: 1, Protocol: "sctp"}}); err == nil || !strings.Contains(err.Error(), "tcp and udp") {
		t.Errorf("sctp: %v", err)
	}
}
