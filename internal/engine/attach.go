package engine

import (
	"context"
	"fmt"
	"net"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/monitor"
)

// Attach connects to the monitor of c, which must run: the connection
// gets c's output from now on, may send its stdin (if it was made with
// one), and ends with c's exit code. The config says whether c has a
// terminal and a stdin.
func (e *Engine) Attach(ctx context.Context, c metadata.Container) (*net.UnixConn, Config, error) {
	cfg, err := config(c)
	if err != nil {
		return nil, cfg, err
	}
	st, err := e.State(ctx, c)
	if err != nil {
		return nil, cfg, err
	}
	if st.Status != StatusRunning {
		return nil, cfg, fmt.Errorf("container %s is not running (%s): start it first, then attach: %w",
			c.Name, st.Status, errdefs.ErrFailedPrecond)
	}
	conn, err := monitor.DialAttach(e.dir(c.ID))
	if err != nil {
		return nil, cfg, fmt.Errorf("container %s: its monitor's attach socket: %v: %w", c.Name, err, errdefs.ErrUnavailable)
	}
	return conn, cfg, nil
}
