package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/registry"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func loginCmd() *cobra.Command {
	var authfile, user, password string
	var stdin bool
	cmd := &cobra.Command{
		Use:   "login [flags] REGISTRY",
		Short: "Check and store credentials for a registry (podman's auth.json)",
		Args:  cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			reg := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(args[0], "https://"), "http://"), "/")
			in := bufio.NewReader(os.Stdin)
			if stdin {
				if password != "" {
					return fmt.Errorf("--password and --password-stdin: choose one: %w", errdefs.ErrInvalidArgument)
				}
				p, err := io.ReadAll(io.LimitReader(in, 64<<10))
				if err != nil {
					return err
				}
				password = strings.TrimRight(string(p), "\r\n")
			}
			var err error
			if user == "" {
				if user, err = prompt(in, "Username: ", true); err != nil {
					return err
				}
			}
			if password == "" {
				if password, err = prompt(in, "Password: ", false); err != nil {
					return err
				}
			}
			if user == "" || password == "" {
				return fmt.Errorf("login %s: a user name and a password are needed: %w", reg, errdefs.ErrInvalidArgument)
			}
			if err := s.svc.Registry.Login(ctx, authfile, reg, user, password); err != nil {
				return err
			}
			fmt.Println("Login Succeeded!")
			return nil
		}),
	}
	f := cmd.Flags()
	f.StringVar(&authfile, "authfile", "", "auth file to write (default $REGISTRY_AUTH_FILE, else ${XDG_RUNTIME_DIR}/containers/auth.json)")
	f.StringVarP(&user, "username", "u", "", "user name")
	f.StringVarP(&password, "password", "p", "", "password (visible to other users in ps: prefer --password-stdin)")
	f.BoolVar(&stdin, "password-stdin", false, "read the password from standard input")
	return cmd
}

func logoutCmd() *cobra.Command {
	var authfile string
	var all bool
	cmd := &cobra.Command{
		Use:   "logout [flags] REGISTRY",
		Short: "Remove stored credentials for a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) == 1) {
				return fmt.Errorf("give a registry or --all: %w", errdefs.ErrInvalidArgument)
			}
			reg := ""
			if len(args) == 1 {
				reg = args[0]
			}
			if err := registry.Logout(authfile, reg); err != nil {
				return err
			}
			if all {
				fmt.Println("Removed login credentials for all registries")
			} else {
				fmt.Printf("Removed login credentials for %s\n", reg)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&authfile, "authfile", "", "auth file to change (default as for login)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove the credentials of every registry")
	return cmd
}

// prompt reads a line from the terminal, without echo for a password. It
// refuses when standard input is not a terminal: scripts pass flags.
func prompt(in *bufio.Reader, label string, echo bool) (string, error) {
	fd := int(os.Stdin.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("%sstandard input is not a terminal: use --username and --password-stdin: %w",
			strings.ToLower(strings.TrimSuffix(label, ": "))+": ", errdefs.ErrInvalidArgument)
	}
	fmt.Fprint(os.Stderr, label)
	if !echo {
		t := *old
		t.Lflag &^= unix.ECHO
		t.Lflag |= unix.ICANON | unix.ISIG
		if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
			return "", err
		}
		defer func() {
			unix.IoctlSetTermios(fd, unix.TCSETS, old)
			fmt.Fprintln(os.Stderr)
		}()
	}
	line, err := in.ReadString('\n')
	if err != nil && line == "" {
		return "", err
	}
	return strings.TrimRight(line, "\r\n"), nil
}
